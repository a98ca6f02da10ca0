// The clinical record in headless Chromium, against a real stack with `appliance demo-data`
// (whose 王建国 has a week of record fed over HL7 by the clinic's HIS, LIS, RIS and EMR;
// tests/tests/web_centre.rs passes BASE, OUT, ZHAO_PASSWORD and NEW_PASSWORD): the doctor finds
// him and opens his record; the timeline holds the visit, lab panels, the CT report, the
// discharge summary, the diagnoses and his CT study with its server-rendered thumbnail; a high glucose is red with an up arrow and a low
// potassium blue with a down arrow, in the timeline and in the lab table; the glucose trend is
// drawn against its range; the lab report's PDF and the discharge summary open in the page;
// the page reads the same in English. Each page is checked with axe-core and screenshotted.
import { env, expect, run } from './lib.mjs';

await run(async (page, { base, step, check, firstLogin }) => {
  const password = env('NEW_PASSWORD');

  step('the doctor opens 王建国 record from the patients page');
  await page.goto(`${base}/centre/`);
  await firstLogin('doctor.zhao', env('ZHAO_PASSWORD'), password);
  await page.locator('[data-test=nav-patients]').click();
  await page.locator('input[data-test=query]').fill('王建国');
  await page.locator('[data-test=search]').click();
  const row = page.locator('[data-test=results] tbody tr').filter({ hasText: '王建国' });
  await row.locator('[data-test=record]').click();
  await page.waitForURL('**/centre/patients/*/record');
  await page.locator('[data-test=record-title]').getByText('王建国').waitFor();

  step('the timeline: visit, seven lab panels, the CT report, the discharge summary, diagnoses');
  const entries = page.locator('[data-test=entry]');
  await entries.first().waitFor();
  await page.locator('[data-test=entry][data-kind=study]').waitFor();
  const kinds = await entries.evaluateAll((els) => els.map((e) => e.getAttribute('data-kind')));
  const count = (k) => kinds.filter((x) => x === k).length;
  expect(count('panel') === 7, `7 lab panels, got ${kinds.join(',')}`);
  expect(count('report') === 2 && count('document') === 1, `the CT and lab reports and a document: ${kinds}`);
  expect(count('encounter') === 1 && count('diagnosis') === 2, `a visit and 2 diagnoses: ${kinds}`);
  expect(count('study') === 1, `his head CT among them: ${kinds}`);
  const thumb = page.locator('[data-test=study-thumb]');
  await thumb.waitFor();
  await page.waitForFunction(() => {
    const img = document.querySelector('[data-test=study-thumb]');
    return img instanceof HTMLImageElement && img.complete && img.naturalWidth > 0;
  });
  expect(kinds[0] === 'document', `newest first (the discharge summary), got ${kinds[0]}`);
  await page.getByText('左侧基底节区急性脑梗死可能').waitFor();

  step('abnormal values coloured: high red with ↑, low blue with ↓');
  const colour = (loc) => loc.evaluate((e) => getComputedStyle(e).color);
  const high = page.locator('[data-test=panel-lab][data-abnormal=H]').first();
  const low = page.locator('[data-test=panel-lab][data-abnormal=L]').first();
  expect((await high.innerText()).includes('↑'), 'an up arrow on a high value');
  expect((await low.innerText()).includes('↓'), 'a down arrow on a low value');
  expect((await colour(high)) === 'rgb(192, 57, 43)', `high in red, got ${await colour(high)}`);
  expect((await colour(low)) === 'rgb(29, 95, 168)', `low in blue, got ${await colour(low)}`);
  await check('91-record-timeline');

  step('the glucose trend against its reference range');
  await page.locator('[data-test=panel-lab]').filter({ hasText: '葡萄糖' }).first().click();
  await page.locator('[data-test=trend]').getByText('葡萄糖 趋势').waitFor();
  await page.locator('[data-test=trend-chart] canvas').waitFor();
  await page.locator('[data-test=trend]').getByText('3.9-6.1').waitFor();
  await check('92-record-trend');

  step('the lab table: the same colours');
  await page.getByRole('tab', { name: '检验结果' }).click();
  const cell = page.locator('[data-test=lab-value][data-abnormal=H]').first();
  await cell.waitFor();
  expect((await colour(cell)) === 'rgb(192, 57, 43)', 'high in red in the table');
  const lows = await page.locator('[data-test=lab-value][data-abnormal=L]').count();
  expect(lows === 2, `two low potassium values, got ${lows}`);
  await check('93-record-labs');
  await page.getByRole('tab', { name: '时间线' }).click();

  step('the lab report PDF and the discharge summary open in the page');
  await page.locator('[data-test=open-report]').click();
  const frame = page.locator('[data-test=document-frame]');
  await frame.waitFor();
  expect((await frame.getAttribute('src')).startsWith('blob:'), 'the PDF shown from memory');
  await page.keyboard.press('Escape');
  await frame.waitFor({ state: 'detached' });
  await page.locator('[data-test=open-document]').click();
  await page.locator('[data-test=document-text]').getByText('出院医嘱').waitFor();
  await check('94-record-document');
  await page.keyboard.press('Escape');

  step('the page in English');
  await page.locator('[data-test=language]').click();
  await page.getByText('Clinical record').first().waitFor();
  await page.getByRole('tab', { name: 'Lab results' }).waitFor();
  await check('95-record-en');
  await page.locator('[data-test=language]').click();
});
