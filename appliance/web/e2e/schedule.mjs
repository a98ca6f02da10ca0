// The centre coordinator's and the expert's journey in headless Chromium, against a real stack
// with `appliance demo-data` and an SMS gateway stub (tests/tests/web_centre.rs passes BASE,
// OUT, NEW_PASSWORD and the one-time passwords): both demo drafts are submitted and pass QC
// through the API; the coordinator sees them waiting on the board, schedules the first
// (expert 王主任, 会诊室1, in ten minutes) after the dry run has shown the notices as they will
// be sent; scheduling the second at nearly the same time with the same expert and room shows
// both conflicts, which go once another expert and room are chosen; the previewed SMS to its
// applicant is written to OUT/sms-preview.txt (the test checks the gateway receives exactly
// that); the week board shows both. The expert finds the first among today's consultations
// and checks in. Each page is checked with axe-core and screenshotted into OUT.
import { writeFileSync } from 'node:fs';
import { call, env, expect, run, session } from './lib.mjs';

await run(async (page, { base, step, check, firstLogin, logout }) => {
  const password = env('NEW_PASSWORD');

  step('both demo drafts are submitted and pass quality control (through the API)');
  const zhao = await session('doctor.zhao', env('ZHAO_PASSWORD'), password);
  const qian = await session('doctor.qian', env('QIAN_PASSWORD'), password);
  const qc = await session('qc.wu', env('QC_PASSWORD'), password);
  const mine = async (token) => (await call('GET', '/api/v1/consultations', token)).items[0].id;
  const [one, two] = [await mine(zhao), await mine(qian)];
  await call('POST', `/api/v1/consultations/${one}/actions`, zhao, { action: 'submit' });
  await call('POST', `/api/v1/consultations/${two}/actions`, qian, { action: 'submit' });
  for (const id of [one, two]) {
    await call('POST', `/api/v1/consultations/${id}/actions`, qc, { action: 'qc_pass' });
  }

  step('the coordinator sees both waiting on the board');
  await page.goto(`${base}/centre/`);
  await firstLogin('centre.zhou', env('CENTRE_PASSWORD'), password);
  await page.locator('[data-test=nav-board]').click();
  await page.waitForURL('**/centre/board');
  const waiting = page.locator('[data-test=to-schedule] li');
  await waiting.nth(1).waitFor();
  await check('31-board-to-schedule');

  // A datetime-local value `minutes` from now, in the page's (China) time.
  const inMinutes = (minutes) =>
    page.evaluate((m) => {
      const ms = Date.now() + m * 60_000;
      return new Date(ms - new Date(ms).getTimezoneOffset() * 60_000).toISOString().slice(0, 16);
    }, minutes);
  const chooseExpert = async (name) => {
    await page.locator('[data-test=experts]').click();
    await page.locator('.el-select-dropdown__item:visible', { hasText: name }).click();
    await page.keyboard.press('Escape');
  };

  step('the first: the dry run shows each notice as it will be sent, then it is scheduled');
  await page.goto(`${base}/centre/consultations/${one}`);
  await page.locator('[data-test=open-schedule]').click();
  await page.locator('input[data-test=room]').fill('会诊室1');
  await page.locator('input[data-test=at]').fill(await inMinutes(10));
  await chooseExpert('王主任');
  const messages = page.locator('[data-test=message]');
  await messages.first().waitFor();
  const texts = await messages.allInnerTexts();
  expect(
    texts.some((m) => m.includes(`会诊 ${one} 已安排：`) && m.includes('会诊室1')),
    `the schedule notice with time and room, got ${texts.join(' | ')}`,
  );
  expect(await page.locator('[data-test=conflict]').count() === 0, 'no conflict yet');
  await check('32-schedule-preview');
  await page.locator('[data-test=schedule-confirm]').click();
  await page.locator('[data-test=state]').getByText('已排期').waitFor();
  await page.locator('[data-test=experts]').getByText('王主任').waitFor();

  step('the second, at nearly the same time, same expert and room: both conflicts shown');
  await page.goto(`${base}/centre/consultations/${two}`);
  await page.locator('[data-test=open-schedule]').click();
  await page.locator('input[data-test=room]').fill('会诊室1');
  await page.locator('input[data-test=at]').fill(await inMinutes(20));
  await chooseExpert('王主任');
  const conflicts = page.locator('[data-test=conflict]');
  await conflicts.nth(1).waitFor();
  const said = (await conflicts.allInnerTexts()).join(' | ');
  expect(said.includes('王主任') && said.includes(`会诊 ${one}`) && said.includes('会诊室1'), `conflicts: ${said}`);
  await check('33-schedule-conflict');
  await page.locator('input[data-test=room]').fill('会诊室2');
  await page.locator('[data-test=experts] .el-tag__close').first().click();
  await chooseExpert('李主任');
  await page.waitForFunction(() => document.querySelectorAll('[data-test=conflict]').length === 0);
  await page.locator('[data-test=message]').getByText('会诊室2').first().waitFor();
  const rows = await page.locator('[data-test=messages] tbody tr').allInnerTexts();
  const toApplicant = rows.find((r) => r.includes('钱医生') && r.includes('短信'));
  expect(toApplicant !== undefined, `an SMS to the applicant, got ${rows.join(' | ')}`);
  const sms = (await page.locator('[data-test=messages] tbody tr', { hasText: '钱医生' }).locator('[data-test=message]').innerText()).trim();
  writeFileSync(`${env('OUT')}/sms-preview.txt`, sms);
  await page.locator('[data-test=schedule-confirm]').click();
  await page.locator('[data-test=state]').getByText('已排期').waitFor();

  step('the week board shows both');
  await page.locator('[data-test=nav-board]').click();
  await page.locator('[data-test=booked]').nth(1).waitFor();
  await check('34-board-week');
  await page.locator('[data-test=span] .el-radio-button', { hasText: '日' }).click();
  await page.locator('[data-test=booked]').first().waitFor();
  await logout();

  step("the expert finds it among today's consultations and checks in");
  await firstLogin('expert.wang', env('EXPERT_PASSWORD'), password);
  await page.waitForURL('**/centre/worklist');
  // Ten minutes from now is still today unless this runs just before midnight.
  const lateNight = await page.evaluate(() => new Date(Date.now() + 10 * 60_000).getDate() !== new Date().getDate());
  if (lateNight) await page.locator('.el-radio-button', { hasText: '待准备' }).click();
  const row = page.locator('[data-test=worklist] tbody tr').filter({ hasText: String(one) });
  await row.first().waitFor();
  await check('35-expert-today');
  await row.locator('[data-test=open]').click();
  await page.locator('[data-test=check-in]').click();
  await page.locator('[data-test=state]').getByText('会诊中').waitFor();
  await check('36-checked-in');
});
