// The application and quality-control journey in headless Chromium, against a real stack with
// `appliance demo-data` (tests/tests/web_centre.rs passes BASE, OUT, DOCTOR, DOCTOR_PASSWORD,
// QC, QC_PASSWORD and NEW_PASSWORD): the clinic doctor opens the demo draft and submits it; the
// QC reviewer finds it in the worklist (submitted first), returns it with a ticked reason and
// one written; the doctor sees the state and both reasons, and submits again; the reviewer,
// acting on a page someone else has already acted on, is shown the conflict and the current
// state (passed QC). Each page is checked with axe-core and screenshotted into OUT.
import { env, expect, run } from './lib.mjs';

await run(async (page, { base, step, check, firstLogin, login, logout, consoleErrors }) => {
  const password = env('NEW_PASSWORD');
  const draft = page.locator('[data-test=worklist] tbody tr').filter({ hasText: '突发言语不清' });
  const state = page.locator('[data-test=state]');

  step('the doctor opens the draft and submits it');
  await page.goto(`${base}/centre/`);
  await firstLogin(env('DOCTOR'), env('DOCTOR_PASSWORD'), password);
  await draft.locator('[data-test=open]').click();
  await page.waitForURL('**/centre/consultations/*');
  expect((await state.innerText()).trim() === '草稿', 'a draft');
  await check('11-case-draft');
  await page.locator('[data-test=submit]').click();
  await page.getByText('待质控').first().waitFor();
  await logout();

  step('quality control finds it among the submitted and returns it with reasons');
  await firstLogin(env('QC'), env('QC_PASSWORD'), password);
  await page.getByRole('radio', { name: '待质控' }).waitFor({ state: 'attached' });
  expect(await page.getByRole('radio', { name: '待质控' }).isChecked(), 'submitted first');
  await draft.waitFor();
  await check('12-qc-worklist');
  await draft.locator('[data-test=open]').click();
  await page.locator('[data-test=qc-reject]').click();
  // No reason: refused at the form.
  await page.locator('[data-test=reject-confirm]').click();
  await page.getByText('请至少选择或填写一项退回原因').waitFor();
  await page.locator('[data-test=reason-images]').click();
  await page.locator('[data-test=other] textarea, textarea[data-test=other]').first().fill('请补充既往病史');
  await check('13-qc-reject');
  await page.locator('[data-test=reject-confirm]').click();
  await page.getByText('已退回').first().waitFor();
  await logout();

  step('the doctor sees why, and submits again');
  await login(env('DOCTOR'), password);
  await page.waitForURL('**/centre/worklist');
  await page.locator('.el-radio-button', { hasText: '已退回' }).click();
  await draft.locator('[data-test=open]').click();
  const why = page.locator('[data-test=rejection]');
  await why.waitFor();
  const text = await why.innerText();
  expect(text.includes('缺少相关影像资料') && text.includes('请补充既往病史'), `both reasons in ${text}`);
  await check('14-case-rejected');
  await page.locator('[data-test=submit]').click();
  await page.getByText('待质控').first().waitFor();
  await logout();

  step('quality control acts on a stale page: the conflict and the current state are shown');
  await login(env('QC'), password);
  await page.waitForURL('**/centre/worklist');
  await draft.locator('[data-test=open]').click();
  await page.locator('[data-test=qc-pass]').waitFor();
  expect(consoleErrors.length === 0, `no console error so far, got ${consoleErrors.join(' | ')}`);
  // Someone else passes it meanwhile (the same API, another tab).
  const id = page.url().split('/').pop();
  const status = await page.evaluate(async (id) => {
    const token = sessionStorage.getItem('appliance.token');
    const r = await fetch(`/api/v1/consultations/${id}/actions`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ action: 'qc_pass' }),
    });
    return r.status;
  }, id);
  expect(status === 200, `the other tab's pass, got ${status}`);
  await page.locator('[data-test=qc-pass]').click();
  await page.locator('[data-test=notice]').getByText('已被他人处理').waitFor();
  await page.getByText('待排期').first().waitFor();
  expect(!(await page.locator('[data-test=qc-pass]').isVisible()), 'no pass button any more');
  const history = await page.locator('[data-test=history]').innerText();
  expect(history.includes('质控退回') && history.includes('质控通过'), `the history: ${history}`);
  await check('15-case-conflict');
  // The conflict's 409 is meant.
  consoleErrors.length = 0;
});
