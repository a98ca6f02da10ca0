import { describe, expect, it } from 'vitest';
import { idBirthDate, validIdNumber, validPhone } from './idcard';

describe('identity card numbers', () => {
  it('accept a number whose check character matches, X in either case', () => {
    expect(validIdNumber('330102195603140019')).toBe(true);
    expect(validIdNumber('33010219620802002X')).toBe(true);
    expect(validIdNumber('33010219620802002x')).toBe(true);
  });
  it('refuse a wrong check character, a wrong length and letters', () => {
    expect(validIdNumber('330102195603140018')).toBe(false);
    expect(validIdNumber('33010219560314001')).toBe(false);
    expect(validIdNumber('3301021956031400A9')).toBe(false);
  });
  it('carry the birth date', () => {
    expect(idBirthDate('330102195603140019')).toBe('1956-03-14');
  });
});

describe('phone numbers', () => {
  it('are empty or 11 digits', () => {
    expect(validPhone('')).toBe(true);
    expect(validPhone('13800000001')).toBe(true);
    expect(validPhone('1380000000a')).toBe(false);
    expect(validPhone('1380000000')).toBe(false);
  });
});
