// The API's errors (`{code, message, field}`, and `current` on a conflict) as the pages show
// them: a message for the form, or one at the field it names.

export interface Problem {
  code: string;
  message: string;
  field?: string | null;
  current?: unknown;
}

/** The problem in an error body, or a generic one for anything else (a network failure). */
export function problemOf(body: unknown, status?: number): Problem {
  if (body && typeof body === 'object' && 'code' in body && 'message' in body) {
    const b = body as Record<string, unknown>;
    return {
      code: String(b.code),
      message: String(b.message),
      field: typeof b.field === 'string' ? b.field : null,
      current: b.current,
    };
  }
  return { code: status ? `http_${status}` : 'network', message: '' };
}

/** Field errors for a form: the problem's message at its field, or under `_form`. */
export function fieldErrors(p: Problem, fields: readonly string[]): Record<string, string> {
  const at = p.field && fields.includes(p.field) ? p.field : '_form';
  return { [at]: p.message };
}
