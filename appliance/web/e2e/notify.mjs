// The notification bell in headless Chromium, against a real stack with `appliance demo-data`
// (tests/tests/web_centre.rs passes BASE, OUT, NEW_PASSWORD and the one-time passwords): the
// clinic doctor is on the worklist with nothing unread; elsewhere (through the API) the request
// is submitted and quality control returns it; the bell's count rises without a reload (pushed
// over the WebSocket), the panel lists the notice, and choosing it opens the case and clears it.
import { call, env, expect, run, session } from './lib.mjs';

await run(async (page, { base, step, check, firstLogin }) => {
  const password = env('NEW_PASSWORD');

  step('the doctor is on the worklist with nothing unread');
  await page.goto(`${base}/centre/`);
  await firstLogin('doctor.zhao', env('ZHAO_PASSWORD'), password);
  await page.waitForURL('**/centre/worklist');
  const bell = page.locator('[data-test=bell]');
  await bell.waitFor();
  expect((await bell.getAttribute('aria-label'))?.includes('0 条未读'), 'nothing unread');

  step('quality control returns the request elsewhere: the count rises without a reload');
  const { token: zhao } = await call('POST', '/api/v1/auth/login', null, { login: 'doctor.zhao', password });
  const qc = await session('qc.wu', env('QC_PASSWORD'), password);
  const id = (await call('GET', '/api/v1/consultations', zhao)).items[0].id;
  await call('POST', `/api/v1/consultations/${id}/actions`, zhao, { action: 'submit' });
  await call('POST', `/api/v1/consultations/${id}/actions`, qc, {
    action: 'qc_reject',
    reasons: ['请补充既往病史'],
  });
  await page.waitForFunction(() =>
    document.querySelector('[data-test=bell]')?.getAttribute('aria-label')?.includes('1 条未读'),
  );
  await bell.click();
  const notice = page.locator('[data-test=notification]').first();
  await notice.getByText(`会诊 ${id} 未通过审核`).waitFor();
  await check('51-bell');

  step('choosing it opens the case and clears it');
  await notice.click();
  await page.waitForURL(`**/centre/consultations/${id}`);
  await page.locator('[data-test=state]').getByText('已退回').waitFor();
  await page.waitForFunction(() =>
    document.querySelector('[data-test=bell]')?.getAttribute('aria-label')?.includes('0 条未读'),
  );
  const left = await call('GET', '/api/v1/notifications', zhao);
  expect(left.unread.length === 0, `read on the server too, got ${JSON.stringify(left)}`);
  await check('52-bell-opened');
});
