import { describe, expect, it } from 'vitest';
import { fieldErrors, problemOf } from './problem';

describe('problemOf', () => {
  it('reads the API error body', () => {
    const p = problemOf({ code: 'invalid', message: '口令太短', field: 'new_password' }, 422);
    expect(p).toEqual({ code: 'invalid', message: '口令太短', field: 'new_password', current: undefined });
  });

  it('names a failure without a body by its status, or the network', () => {
    expect(problemOf('<html>', 502).code).toBe('http_502');
    expect(problemOf(undefined).code).toBe('network');
  });
});

describe('fieldErrors', () => {
  it('puts the message at the field the API names, else on the form', () => {
    const p = problemOf({ code: 'invalid', message: 'bad', field: 'login' });
    expect(fieldErrors(p, ['login', 'password'])).toEqual({ login: 'bad' });
    expect(fieldErrors(p, ['password'])).toEqual({ _form: 'bad' });
  });
});
