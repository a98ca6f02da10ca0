// The one way the web apps call the appliance: openapi-fetch typed by the schema generated
// from the API's OpenAPI document, with the session's bearer token on every request.
import createClient, { type Middleware } from 'openapi-fetch';
import type { paths } from './schema';

/** The session token, kept for this browser tab only. */
const TOKEN_KEY = 'appliance.token';

export function sessionToken(): string | null {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function setSessionToken(token: string | null): void {
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  else sessionStorage.removeItem(TOKEN_KEY);
}

const bearer: Middleware = {
  onRequest({ request }) {
    const token = sessionToken();
    if (token) request.headers.set('Authorization', `Bearer ${token}`);
    return request;
  },
};

/** Called when the API says the session has ended (401 on any call but login). */
let onSessionEnded: () => void = () => {};

export function whenSessionEnds(handler: () => void): void {
  onSessionEnded = handler;
}

const ended: Middleware = {
  onResponse({ request, response }) {
    if (response.status === 401 && !request.url.endsWith('/api/v1/auth/login') && sessionToken()) {
      setSessionToken(null);
      onSessionEnded();
    }
    return response;
  },
};

export const api = createClient<paths>({ baseUrl: '' });
api.use(bearer, ended);
