// The report journey in headless Chromium, against a real stack with `appliance demo-data`
// (tests/tests/web_centre.rs passes BASE, OUT, NEW_PASSWORD and the one-time passwords): the
// demo's stroke request is submitted, passes QC, is scheduled with 王主任 and he checks in
// (through the API). In the browser he writes the report from the imaging template, saves a
// draft, signs (first uploading his signature image when asked), verifies the seal and prints
// it (the PDF opens in a new tab through a ticket); amends it into version 2 and signs again,
// and reads version 1 back, still intact. The applicant then reads and prints the signed
// report. Tickets open only their own document, only while valid. Each page is checked with
// axe-core and screenshotted into OUT.
import { env, expect, run, signaturePng, underway } from './lib.mjs';

await run(async (page, { base, step, check, login, logout, consoleErrors }) => {
  const password = env('NEW_PASSWORD');

  step('the request is submitted, passes QC, is scheduled and the expert checks in (API)');
  const id = await underway(password);

  step('the expert writes the report from the imaging template and saves a draft');
  await page.goto(`${base}/centre/consultations/${id}`);
  await login('expert.wang', password);
  await page.waitForURL(`**/centre/consultations/${id}`);
  await page.locator('[data-test=state]').getByText('会诊中').waitFor();
  await page.locator('[data-test=template]').click();
  await page.locator('.el-select-dropdown__item:visible', { hasText: '远程影像会诊报告' }).click();
  await page.locator('textarea[data-test=section-findings]').fill('左侧基底节区见斑片状低密度影，边界欠清，中线结构居中。');
  await page.locator('[data-test=report-save]').click();
  await page.locator('[data-test=report-notice]').getByText('报告草稿已保存').waitFor();
  await page.locator('[data-test=state]').getByText('报告待签').waitFor();
  await check('41-report-draft');

  step('signing asks for the signature image first, then signs');
  await page.locator('textarea[data-test=section-impression]').fill('左侧基底节区急性脑梗死可能。');
  await page.locator('textarea[data-test=section-advice]').fill('建议完善头颅 MRI（DWI）检查，评估溶栓指征。');
  await page.locator('[data-test=report-sign]').click();
  await page.locator('[data-test=report-error]').getByText('请先上传本人签名图片').waitFor();
  // That refusal's 422 is meant; nothing else may have failed.
  expect(consoleErrors.every((e) => e.includes('422')), `only the 422, got ${consoleErrors.join(' | ')}`);
  consoleErrors.length = 0;
  await page.locator('[data-test=signature-file]').setInputFiles({
    name: 'signature.png',
    mimeType: 'image/png',
    buffer: await signaturePng(),
  });
  await page.locator('[data-test=report-notice]').getByText('签名图片已保存').waitFor();
  await page.locator('[data-test=report-sign]').click();
  await page.locator('[data-test=state]').getByText('报告已签').waitFor();
  await page.locator('[data-test=signed]').getByText('王主任').waitFor();

  step('the seal verifies and the PDF opens in a new tab');
  await page.locator('[data-test=verify]').click();
  await page.locator('[data-test=verified]').getByText('签章验证通过').waitFor();
  await check('42-report-signed');
  const printed = async () => {
    const [response] = await Promise.all([
      page.context().waitForEvent('response', (r) => r.url().includes('/report.pdf?ticket=')),
      page.locator('[data-test=print]').click(),
    ]);
    const type = response.headers()['content-type'];
    expect(response.status() === 200 && type === 'application/pdf', `a PDF, got ${response.status()} ${type}`);
    // The same link fetched again (within its minute) gives the document's bytes.
    const bytes = Buffer.from(await (await fetch(response.url())).arrayBuffer());
    expect(bytes.subarray(0, 5).toString() === '%PDF-', `PDF bytes, got ${bytes.subarray(0, 16)}`);
    for (const p of page.context().pages()) if (p !== page) await p.close();
    return response.url();
  };
  const url = await printed();

  step('a ticket opens its own document only, and only with a valid signature');
  const ticket = new URL(url).searchParams.get('ticket');
  const status = async (path) => (await fetch(`${base}${path}`)).status;
  expect((await status(`/api/v1/consultations/${id}/report.pdf`)) === 401, 'no ticket: 401');
  expect((await status(`/api/v1/referrals/1/admission-slip.pdf?ticket=${ticket}`)) === 401, 'another path: 401');
  expect((await status(`/api/v1/consultations/${id}/report.pdf?ticket=${ticket}x`)) === 401, 'a forged ticket: 401');
  expect((await status(`/api/v1/consultations/${id}/report.pdf?ticket=${ticket}`)) === 200, 'its own path: 200');

  step('amended into version 2, signed again; version 1 still verifies');
  await page.locator('[data-test=amend]').click();
  await page.locator('input[data-test=amend-reason]').fill('补充 MRI 检查时限');
  await page.locator('[data-test=amend-confirm]').click();
  await page.locator('[data-test=state]').getByText('报告待签').waitFor();
  // The amended draft holds version 1's text before it is edited.
  const advice = page.locator('textarea[data-test=section-advice]');
  await page.waitForFunction(
    () => document.querySelector('textarea[data-test=section-advice]')?.value === '建议完善头颅 MRI（DWI）检查，评估溶栓指征。',
  );
  await advice.fill('建议 24 小时内完善头颅 MRI（DWI）检查，评估溶栓及取栓指征。');
  await page.locator('[data-test=report-sign]').click();
  await page.locator('[data-test=state]').getByText('报告已签').waitFor();
  await page.locator('[data-test=versions]').getByText('第 2 版').waitFor();
  await page.locator('[data-test=versions] .el-radio-button', { hasText: '第 1 版' }).click();
  await page.locator('[data-test=section-text]').getByText('建议完善头颅 MRI（DWI）检查，评估溶栓指征。').waitFor();
  await page.locator('[data-test=verify]').click();
  await page.locator('[data-test=verified]').getByText('签章验证通过').waitFor();
  await check('43-report-versions');
  await logout();

  step('the applicant reads and prints the signed report');
  await login('doctor.zhao', password);
  await page.waitForURL('**/centre/worklist');
  await page.goto(`${base}/centre/consultations/${id}`);
  await page.locator('[data-test=section-text]').getByText('24 小时内').waitFor();
  expect(!(await page.locator('[data-test=report-sign]').isVisible()), 'the applicant does not sign');
  await printed();
  await check('44-report-applicant');
});
