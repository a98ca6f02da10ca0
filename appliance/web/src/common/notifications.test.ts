import { describe, expect, it } from 'vitest';
import { caseOf } from './notifications';

describe('a notification opens its case', () => {
  it('reads consultations and referrals by their Chinese label', () => {
    expect(caseOf('会诊 12')).toEqual({ kind: 'consultation', id: 12 });
    expect(caseOf(' 转诊 4 ')).toEqual({ kind: 'referral', id: 4 });
  });
  it('opens nothing for anything else', () => {
    expect(caseOf('用户 3')).toBeNull();
    expect(caseOf('会诊')).toBeNull();
  });
});
