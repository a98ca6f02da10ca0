// The referral journey in headless Chromium, against a real stack with `appliance demo-data`
// (tests/tests/web_centre.rs passes BASE, OUT, NEW_PASSWORD and the one-time passwords): the
// clinic doctor refers 王建国 up, proposing the hospital's neurology department (item 49) and
// sharing his CT for 72 hours; the referral centre passes the review and assigns it, the
// proposal preselected; the hospital's doctor accepts, sees how long the records stay shared,
// opens the admission slip (a PDF in a new tab) and records the arrival; the list filters by
// direction and state. Each page is checked with axe-core and screenshotted into OUT.
import { env, expect, run } from './lib.mjs';

await run(async (page, { base, step, check, firstLogin, logout }) => {
  const password = env('NEW_PASSWORD');
  const pick = async (select, option) => {
    await page.locator(select).click();
    await page.locator('.el-select-dropdown__item:visible', { hasText: new RegExp(`^\\s*${option}\\s*$`) }).click();
  };

  step('the clinic doctor refers 王建国 up, proposing neurology, sharing his CT');
  await page.goto(`${base}/centre/`);
  await firstLogin('doctor.zhao', env('ZHAO_PASSWORD'), password);
  await page.locator('[data-test=nav-patients]').click();
  await page.locator('input[data-test=query]').fill('王建国');
  await page.locator('[data-test=search]').click();
  await page.locator('[data-test=results] tbody tr').filter({ hasText: '王建国' }).locator('[data-test=refer]').click();
  await page.waitForURL('**/centre/referrals/new?patient=*');
  await page.locator('textarea[data-test=r-reason]').fill('急性脑梗死，需上级医院神经内科评估溶栓');
  await page.locator('input[data-test=diagnosis]').fill('I63');
  await page.locator('.el-autocomplete-suggestion li', { hasText: 'I63.9' }).click();
  await page.locator('.el-autocomplete-suggestion').waitFor({ state: 'hidden' });
  await pick('[data-test=r-institution]', '市第一人民医院');
  await pick('[data-test=r-department]', '神经内科');
  await page.locator('[data-test=study]').first().click();
  await page.locator('[data-test=r-submit]').click();
  await page.waitForURL(/\/centre\/referrals\/\d+$/);
  await page.locator('[data-test=state]').getByText('待审核').waitFor();
  await page.locator('[data-test=proposed]').getByText('市第一人民医院 · 神经内科').waitFor();
  const id = page.url().split('/').pop();
  await check('71-referral-submitted');
  await logout();

  step('the referral centre passes the review and assigns it, the proposal preselected');
  await firstLogin('referral.zheng', env('REFERRAL_PASSWORD'), password);
  await page.locator('[data-test=nav-referrals]').click();
  await page.locator('[data-test=direction-filter] .el-radio-button', { hasText: '上转' }).click();
  await page.locator('[data-test=referrals] tbody tr').filter({ hasText: '急性脑梗死' }).locator('[data-test=open]').click();
  await page.locator('[data-test=r-act-qc-pass]').click();
  await page.locator('[data-test=state]').getByText('待分配').waitFor();
  await page.locator('[data-test=r-act-assign]').click();
  // The proposal is preselected (the department once the hospital's list has come).
  const form = page.locator('[data-test=assign-form]');
  await form.getByText('市第一人民医院', { exact: true }).waitFor();
  await form.getByText('神经内科', { exact: true }).waitFor();
  await page.locator('[data-test=assign-confirm]').click();
  await page.locator('[data-test=state]').getByText('已分配').waitFor();
  await page.locator('[data-test=receiver]').getByText('神经内科').waitFor();
  await check('72-referral-assigned');
  await logout();

  step('the hospital doctor accepts, opens the admission slip and records the arrival');
  await firstLogin('doctor.sun', env('SUN_PASSWORD'), password);
  await page.goto(`${base}/centre/referrals/${id}`);
  await page.locator('[data-test=r-act-accept]').click();
  await page.locator('[data-test=state]').getByText('已接收').waitFor();
  const grant = await page.locator('[data-test=grant]').innerText();
  expect(/剩余约 7[12] 小时/.test(grant), `the grant with hours left, got ${grant}`);
  const [slip] = await Promise.all([
    page.context().waitForEvent('response', (r) => r.url().includes('/admission-slip.pdf?ticket=')),
    page.locator('[data-test=slip]').click(),
  ]);
  expect(slip.status() === 200 && slip.headers()['content-type'] === 'application/pdf', `the slip, got ${slip.status()}`);
  for (const p of page.context().pages()) if (p !== page) await p.close();
  await check('73-referral-accepted');
  await page.locator('[data-test=r-act-arrive]').click();
  await page.locator('[data-test=state]').getByText('已到院').waitFor();

  step('the list filters by state');
  await page.locator('[data-test=nav-referrals]').click();
  await page.locator('[data-test=state-filter] .el-radio-button', { hasText: '已到院' }).click();
  await page.locator('[data-test=referrals] tbody tr').filter({ hasText: '急性脑梗死' }).waitFor();
  await page.locator('[data-test=state-filter] .el-radio-button', { hasText: '已拒收' }).click();
  await page.getByText('暂无转诊记录').waitFor();
  await page.locator('[data-test=state-filter] .el-radio-button', { hasText: '已到院' }).click();
  await check('74-referrals-list');
});
