// The login journey in headless Chromium (playwright-core driving Debian's /usr/bin/chromium),
// against a real stack a Rust test started with `appliance demo-data`
// (tests/tests/web_centre.rs passes BASE, LOGIN, PASSWORD, NEW_PASSWORD, ADMIN_LOGIN,
// ADMIN_PASSWORD, LOCK_LOGIN and OUT):
// `/` opens the login page; a wrong password is refused at the form; the one-time password
// logs in and must be changed first (a mismatch is caught at the field); the worklist then
// shows the demo's consultation draft; English is complete; a session that ends on the server
// returns to login and, after login, to the page; logging out returns to login. An
// administrator changes the password, enrols TOTP from the QR page and then needs the code;
// repeated wrong passwords show the lockout.
// Every page is checked with axe-core (no serious or critical violation) and screenshotted
// into OUT at 1366x768 (and 1920x1080 once); no console error may appear where none is meant.
import { createHmac } from 'node:crypto';
import { env, expect, run } from './lib.mjs';

/** RFC 6238: the 6-digit code of a base32 secret, `offset` steps of 30 s from now. */
function totp(secret, offset = 0) {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  const bits = [...secret.replace(/=+$/, '').toUpperCase()]
    .map((c) => alphabet.indexOf(c).toString(2).padStart(5, '0'))
    .join('');
  const key = Buffer.from(bits.match(/.{8}/g).map((b) => parseInt(b, 2)));
  const msg = Buffer.alloc(8);
  msg.writeBigUInt64BE(BigInt(Math.floor(Date.now() / 30000) + offset));
  const h = createHmac('sha1', key).update(msg).digest();
  const o = h[h.length - 1] & 15;
  return String((h.readUInt32BE(o) & 0x7fffffff) % 1000000).padStart(6, '0');
}

await run(async (page, { base: BASE, consoleErrors, step, check }) => {
  step('/ opens the login page');
  await page.goto(`${BASE}/`);
  await page.waitForURL('**/centre/login**');
  await page.getByRole('heading', { name: '登录' }).waitFor();
  await check('01-login');

  step('a wrong password is refused at the form');
  await page.locator('input[data-test=login]').fill(env('LOGIN'));
  await page.locator('input[data-test=password]').fill('not-the-password');
  await page.locator('[data-test=submit]').click();
  await page.getByText('账号或口令错误').waitFor();
  // The refused login's 401 is the one console error meant to appear.
  consoleErrors.length = 0;

  step('the one-time password logs in and must be changed first');
  await page.locator('input[data-test=password]').fill(env('PASSWORD'));
  await page.locator('[data-test=submit]').click();
  await page.waitForURL('**/centre/password**');
  await page.getByRole('heading', { name: '修改口令' }).waitFor();
  await check('02-password');
  await page.locator('input[data-test=old]').fill(env('PASSWORD'));
  await page.locator('input[data-test=new]').fill(env('NEW_PASSWORD'));
  await page.locator('input[data-test=confirm]').fill(`${env('NEW_PASSWORD')}x`);
  await page.locator('[data-test=submit]').click();
  await page.getByText('两次输入的新口令不一致').waitFor();
  await page.locator('input[data-test=confirm]').fill(env('NEW_PASSWORD'));
  await page.locator('[data-test=submit]').click();

  step('the worklist shows the demo draft');
  await page.waitForURL('**/centre/worklist');
  const row = page.locator('[data-test=worklist] tbody tr').filter({ hasText: '突发言语不清' });
  await row.waitFor();
  expect((await row.locator('[data-test=state]').innerText()).trim() === '草稿', 'state 草稿');
  await check('03-worklist');
  await page.setViewportSize({ width: 1920, height: 1080 });
  await page.screenshot({ path: `${env('OUT')}/03-worklist-1920.png`, fullPage: true });
  await page.setViewportSize({ width: 1366, height: 768 });

  step('a reload keeps the session');
  await page.reload();
  await row.waitFor();

  step('English is complete');
  await page.locator('[data-test=language]').click();
  await page.getByRole('heading', { name: 'My consultations' }).waitFor();
  expect((await row.locator('[data-test=state]').innerText()).trim() === 'Draft', 'state Draft');
  const cjk = /[\u4e00-\u9fff]/;
  const chrome = await page.locator('.site, nav button, thead, h1').allInnerTexts();
  expect(!chrome.some((t) => cjk.test(t.replace(/中文/g, ''))), `no Chinese left in ${chrome}`);
  await check('04-worklist-en');
  await page.locator('[data-test=language]').click();

  step('a session that ends on the server returns to login, then to the page');
  await page.evaluate(async () => {
    const token = sessionStorage.getItem('appliance.token');
    await fetch('/api/v1/auth/logout', { method: 'POST', headers: { Authorization: `Bearer ${token}` } });
  });
  await page.locator('[data-test=refresh]').click();
  await page.waitForURL('**/centre/login?**');
  await page.locator('[data-test=ended]').waitFor();
  await check('05-session-ended');
  await page.locator('input[data-test=login]').fill(env('LOGIN'));
  await page.locator('input[data-test=password]').fill(env('NEW_PASSWORD'));
  await page.locator('[data-test=submit]').click();
  await page.waitForURL('**/centre/worklist');
  await row.waitFor();
  // The refresh that found the session ended answered 401: meant.
  consoleErrors.length = 0;

  step('log out returns to the login page, and the worklist needs a login again');
  await page.locator('[data-test=logout]').click();
  await page.waitForURL('**/centre/login**');
  await page.goto(`${BASE}/centre/worklist`);
  await page.waitForURL('**/centre/login?next=**');

  expect(consoleErrors.length === 0, `no console error, got ${consoleErrors.join(' | ')}`);

  step('an administrator changes the password and enrols TOTP from the QR page');
  await page.locator('input[data-test=login]').fill(env('ADMIN_LOGIN'));
  await page.locator('input[data-test=password]').fill(env('ADMIN_PASSWORD'));
  await page.locator('[data-test=submit]').click();
  await page.waitForURL('**/centre/password**');
  await page.locator('input[data-test=old]').fill(env('ADMIN_PASSWORD'));
  await page.locator('input[data-test=new]').fill(env('NEW_PASSWORD'));
  await page.locator('input[data-test=confirm]').fill(env('NEW_PASSWORD'));
  await page.locator('[data-test=submit]').click();
  await page.waitForURL('**/centre/totp**');
  await page.locator('[data-test=qr]').waitFor();
  const secret = (await page.locator('[data-test=secret]').innerText()).trim();
  expect(/^[A-Z2-7]+=*$/.test(secret), `a base32 secret, got ${secret}`);
  await check('06-totp');
  await page.locator('input[data-test=code]').fill('000000');
  await page.locator('[data-test=submit]').click();
  await page.locator('.el-form-item__error').waitFor();
  await page.locator('input[data-test=code]').fill(totp(secret));
  await page.locator('[data-test=submit]').click();
  await page.waitForURL((u) => !u.pathname.includes('/totp'));
  await page.locator('[data-test=logout]').click();
  await page.waitForURL('**/centre/login**');

  step('the administrator then needs the code');
  await page.locator('input[data-test=login]').fill(env('ADMIN_LOGIN'));
  await page.locator('input[data-test=password]').fill(env('NEW_PASSWORD'));
  await page.locator('[data-test=submit]').click();
  await page.locator('input[data-test=totp]').waitFor();
  await check('07-login-totp');
  await page.locator('input[data-test=totp]').fill(totp(secret, 1));
  await page.locator('[data-test=submit]').click();
  await page.waitForURL((u) => !u.pathname.includes('/login'));
  await page.locator('[data-test=user]').waitFor();
  await page.locator('[data-test=logout]').click();
  await page.waitForURL('**/centre/login**');

  step('repeated wrong passwords lock the account, and the page says so');
  await page.locator('input[data-test=login]').fill(env('LOCK_LOGIN'));
  for (let i = 0; i < 5; i += 1) {
    await page.locator('input[data-test=password]').fill(`wrong-${i}`);
    await page.locator('[data-test=submit]').click();
    await page.locator('[data-test=form-error]').waitFor();
  }
  await page.locator('input[data-test=password]').fill('wrong-again');
  await page.locator('[data-test=submit]').click();
  await page.getByText('账号已锁定').waitFor();
  await check('08-locked');
  // The administrator's worklist and the lockout answer 4xx on purpose.
  consoleErrors.length = 0;
});
