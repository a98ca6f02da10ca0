// The session of this browser tab: the user behind the token, logging in and out, and the
// password change a first login requires. State lives here (Pinia); calls go through the
// typed client.
import { defineStore } from 'pinia';
import { computed, ref } from 'vue';
import { api, sessionToken, setSessionToken } from './api/client';
import { type Problem, problemOf } from './api/problem';
import type { paths } from './api/schema';

type User =
  paths['/api/v1/me']['get']['responses']['200']['content']['application/json'];

/** What a call answered: nothing on success, or the API's problem. */
export type Outcome = Problem | null;

export const useAuth = defineStore('auth', () => {
  const user = ref<User | null>(null);
  const loggedIn = computed(() => user.value !== null);
  const mustChangePassword = computed(() => user.value?.must_change_password === true);
  const mustEnrollTotp = computed(() => user.value?.must_enroll_totp === true);

  async function login(login: string, password: string, totp?: string): Promise<Outcome> {
    try {
      const { data, error, response } = await api.POST('/api/v1/auth/login', {
        body: { login, password, totp: totp || null },
      });
      if (!data) return problemOf(error, response.status);
      setSessionToken(data.token);
      user.value = data.user;
      return null;
    } catch {
      return problemOf(undefined);
    }
  }

  /** The user behind the kept token (after a reload), or none when it has ended. */
  async function restore(): Promise<void> {
    if (!sessionToken() || user.value) return;
    try {
      const { data } = await api.GET('/api/v1/me');
      user.value = data ?? null;
      if (!data) setSessionToken(null);
    } catch {
      user.value = null;
    }
  }

  async function changePassword(oldPassword: string, newPassword: string): Promise<Outcome> {
    try {
      const { error, response } = await api.POST('/api/v1/auth/password', {
        body: { old_password: oldPassword, new_password: newPassword },
      });
      if (!response.ok) return problemOf(error, response.status);
      if (user.value) user.value = { ...user.value, must_change_password: false };
      return null;
    } catch {
      return problemOf(undefined);
    }
  }

  /** Starts enrolling a TOTP second factor: the secret and its otpauth URI. */
  async function totpSetup(): Promise<{ secret: string; uri: string } | Problem> {
    try {
      const { data, error, response } = await api.POST('/api/v1/auth/totp/setup');
      if (!data) return problemOf(error, response.status);
      return { secret: data.secret, uri: data.otpauth_uri };
    } catch {
      return problemOf(undefined);
    }
  }

  /** Confirms the second factor with a code from the app; it is required from now on. */
  async function totpConfirm(code: string): Promise<Outcome> {
    try {
      const { error, response } = await api.POST('/api/v1/auth/totp/confirm', {
        body: { code },
      });
      if (!response.ok) return problemOf(error, response.status);
      if (user.value) user.value = { ...user.value, must_enroll_totp: false, totp_enabled: true };
      return null;
    } catch {
      return problemOf(undefined);
    }
  }

  /** The session ended on the server (idle timeout): forget the user. */
  function ended(): void {
    user.value = null;
  }

  async function logout(): Promise<void> {
    try {
      await api.POST('/api/v1/auth/logout');
    } finally {
      setSessionToken(null);
      user.value = null;
    }
  }

  return {
    user,
    loggedIn,
    mustChangePassword,
    mustEnrollTotp,
    login,
    restore,
    changePassword,
    totpSetup,
    totpConfirm,
    ended,
    logout,
  };
});

