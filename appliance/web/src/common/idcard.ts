// Checks a form can make before the API does, so the doctor hears it in their language at
// the field: the resident identity card number (GB 11643, ISO 7064 MOD 11-2 check digit, the
// birth date inside it) and an 11-digit mobile number — the same rules as the appliance's.

const WEIGHTS = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
const CHECK = '10X98765432';

/** Whether `id` is a valid 18-character identity card number (its last character checks). */
export function validIdNumber(id: string): boolean {
  if (!/^\d{17}[\dXx]$/.test(id)) return false;
  let sum = 0;
  for (let i = 0; i < 17; i++) sum += Number(id[i]) * (WEIGHTS[i] ?? 0);
  return id[17]?.toUpperCase() === CHECK[sum % 11];
}

/** The birth date (YYYY-MM-DD) an identity card number carries. */
export function idBirthDate(id: string): string {
  return `${id.slice(6, 10)}-${id.slice(10, 12)}-${id.slice(12, 14)}`;
}

/** Whether `phone` is empty or an 11-digit mobile number. */
export function validPhone(phone: string): boolean {
  return phone === '' || /^\d{11}$/.test(phone);
}
