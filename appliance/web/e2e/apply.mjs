// The clinic doctor's application journey in headless Chromium, against a real stack with
// `appliance demo-data` (tests/tests/web_centre.rs passes BASE, OUT, DOCTOR, DOCTOR_PASSWORD,
// ID_NUMBER and NEW_PASSWORD): find a patient by identity card number (masked in the list)
// and keep them as a favourite; register a new patient (a wrong identity card number is
// refused at its field, a valid one fills the birth date); write a request for the demo's
// 王建国: an expert's free slot on the calendar, reason, question, an ICD-10 diagnosis found by
// its Chinese name, urgency, his CT study picked by its server-rendered thumbnail and two
// items of his clinical record (the glucose series, the head CT report) to share; what
// was typed survives a reload before it is saved; a malformed diagnosis is shown at its field;
// the draft is saved and kept by the server; then the request is submitted and its page shows the patient, the
// state and the history. Each page is checked with axe-core and screenshotted into OUT.
import { env, expect, run } from './lib.mjs';

await run(async (page, { base, step, check, firstLogin }) => {
  const password = env('NEW_PASSWORD');

  step('the doctor finds a patient by identity card number and keeps him as a favourite');
  await page.goto(`${base}/centre/`);
  await firstLogin(env('DOCTOR'), env('DOCTOR_PASSWORD'), password);
  await page.locator('[data-test=nav-patients]').click();
  await page.waitForURL('**/centre/patients');
  await page.getByText('暂无收藏的患者').waitFor();
  await page.locator('input[data-test=query]').fill(env('ID_NUMBER'));
  await page.locator('[data-test=search]').click();
  const row = page.locator('[data-test=results] tbody tr').filter({ hasText: '王建国' });
  await row.waitFor();
  const text = await row.innerText();
  expect(text.includes('330102********0019'), `the identity card masked in ${text}`);
  expect(!text.includes(env('ID_NUMBER')), 'the whole number is not shown');
  await row.locator('[data-test=star]').click();
  await page.locator('[data-test=favourites]').getByText('王建国').waitFor();
  await check('21-patients');

  step('a new patient: a wrong identity card number is refused at its field');
  await page.locator('[data-test=new-patient]').click();
  await page.locator('input[data-test=p-name]').fill('周小红');
  await page.locator('input[data-test=p-id]').fill('330102199001010021');
  await page.locator('[data-test=p-save]').click();
  await page.getByText('身份证号无效').waitFor();
  await check('22-patient-form');
  await page.locator('input[data-test=p-id]').fill('330102199001010020');
  await page.locator('input[data-test=p-id]').blur();
  const birth = await page.locator('input[data-test=p-birth]').inputValue();
  expect(birth === '1990-01-01', `the birth date from the identity card, got ${birth}`);
  await page.locator('[data-test=p-save]').click();
  await page.waitForURL('**/centre/consultations/new?patient=*');
  await page.locator('[data-test=patient]').getByText('周小红').waitFor();

  step('a request for 王建国: a free slot, the diagnosis by name, his CT by its thumbnail');
  await page.locator('[data-test=nav-patients]').click();
  await page.locator('[data-test=favourites]').getByRole('button').first().click();
  await page.locator('[data-test=patient]').getByText('王建国').waitFor();
  await page.locator('[data-test=slot-expert]').click();
  await page.locator('.el-select-dropdown__item', { hasText: '李主任' }).click();
  await page.locator('[data-test=slot]').first().click();
  await page.locator('textarea[data-test=reason]').fill('右侧肢体无力 3 天，头颅 CT 示左侧基底节区低密度影');
  await page.locator('textarea[data-test=question]').fill('请协助明确诊断并制定治疗方案');
  await page.locator('.el-radio', { hasText: '加急' }).click();
  const study = page.locator('[data-test=study]').first();
  await study.waitFor();
  const drawn = await study.locator('img').evaluate(
    (img) => new Promise((ok) => (img.complete ? ok(img.naturalWidth) : (img.onload = () => ok(img.naturalWidth)))),
  );
  expect(drawn > 0, `a rendered thumbnail, got width ${drawn}`);
  await study.click();

  step('two items of his record shared: the glucose series and the head CT report');
  const picker = page.locator('[data-test=record-picker]');
  const shared = picker.locator('.el-checkbox.is-checked');
  await picker.locator('.el-checkbox', { hasText: '葡萄糖' }).first().click();
  await picker.locator('fieldset', { hasText: '检查报告' }).locator('.el-checkbox', { hasText: '头颅' }).click();
  expect((await shared.count()) === 2, `two items ticked, got ${await shared.count()}`);

  step('what was typed survives a reload before saving');
  await page.reload();
  await page.locator('[data-test=notice]').getByText('已恢复上次未保存的内容').waitFor();
  const reason = await page.locator('textarea[data-test=reason]').inputValue();
  expect(reason.startsWith('右侧肢体无力'), `the reason kept, got ${reason}`);
  expect(await page.locator('[data-test=study] input').first().isChecked(), 'the study still ticked');

  step('submitting with a malformed diagnosis shows the error at the field; saving keeps a draft');
  await page.locator('input[data-test=diagnosis]').fill('脑梗死');
  await page.locator('[data-test=submit]').click();
  await page.locator('.el-form-item.is-error').filter({ hasText: 'ICD-10 编码' }).waitFor();
  await page.locator('input[data-test=diagnosis]').fill('');
  await page.locator('[data-test=save]').click();
  await page.waitForURL('**/centre/consultations/*/edit');
  await page.locator('[data-test=notice]').getByText('草稿已保存').waitFor();
  // Saved: the page reloaded shows what the server keeps, the shared items among it.
  await page.reload();
  await picker.locator('.el-checkbox', { hasText: '葡萄糖' }).waitFor();
  await page.waitForFunction(
    () => document.querySelectorAll('[data-test=record-picker] .el-checkbox.is-checked').length === 2,
  );

  step('the diagnosis found by name; the request submitted');
  await page.locator('input[data-test=diagnosis]').fill('脑梗');
  await page.locator('.el-autocomplete-suggestion li', { hasText: 'I63.9' }).click();
  expect((await page.locator('input[data-test=diagnosis]').inputValue()) === 'I63.9', 'the code filled');
  await page.locator('.el-autocomplete-suggestion').waitFor({ state: 'hidden' });
  await check('23-apply');
  await page.locator('[data-test=submit]').click();
  await page.waitForURL((u) => /\/centre\/consultations\/\d+$/.test(u.pathname));
  await page.locator('[data-test=state]').getByText('待质控').waitFor();
  await page.locator('[data-test=patient]').getByText('王建国').waitFor();
  const history = await page.locator('[data-test=history]').innerText();
  expect(history.includes('提交'), `the history: ${history}`);
  await check('24-case-submitted');

  step('the same page in English');
  await page.locator('[data-test=language]').click();
  await page.locator('[data-test=state]').getByText('Awaiting QC').waitFor();
  await check('25-case-en');
  await page.locator('[data-test=language]').click();
});
