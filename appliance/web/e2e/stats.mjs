// Statistics for centre staff in headless Chromium, against a real stack with `appliance
// demo-data` (tests/tests/web_centre.rs passes BASE, OUT, NEW_PASSWORD and the one-time
// passwords): one demo request is submitted (through the API) so the two differ; the
// coordinator counts this year's consultations by month (a chart and a table), by institution
// and by state, and exports the counts as CSV (UTF-8 with a BOM, one row per group) and XLSX
// (a zip); the page reads the same in English.
import { readFileSync } from 'node:fs';
import { call, env, expect, run, session } from './lib.mjs';

await run(async (page, { base, step, check, firstLogin }) => {
  const password = env('NEW_PASSWORD');

  step('one demo request is submitted (API); the coordinator opens statistics');
  const zhao = await session('doctor.zhao', env('ZHAO_PASSWORD'), password);
  const id = (await call('GET', '/api/v1/consultations', zhao)).items[0].id;
  await call('POST', `/api/v1/consultations/${id}/actions`, zhao, { action: 'submit' });
  await page.goto(`${base}/centre/`);
  await firstLogin('centre.zhou', env('CENTRE_PASSWORD'), password);
  await page.locator('[data-test=nav-statistics]').click();
  await page.waitForURL('**/centre/statistics');
  await page.locator('[data-test=total]').getByText('共 2 条记录').waitFor();
  const rows = page.locator('[data-test=stats-table] tbody tr');
  const month = await page.evaluate(() => new Date().toISOString().slice(0, 7));
  const count = (await rows.filter({ hasText: month }).locator('td').nth(1).innerText()).trim();
  expect(count === '2', `2 this month, got ${count}`);
  expect((await page.locator('[data-test=chart] canvas').count()) === 1, 'a chart drawn');
  await check('61-statistics');

  step('by institution, then by state');
  const by = async (name) => {
    await page.locator('[data-test=by]').click();
    await page.locator('.el-select-dropdown__item:visible', { hasText: name }).click();
  };
  await by('申请机构');
  await rows.filter({ hasText: '城东社区卫生服务中心' }).waitFor();
  await rows.filter({ hasText: '城西乡镇卫生院' }).waitFor();
  await by('状态');
  await rows.filter({ hasText: '待质控' }).waitFor();
  await rows.filter({ hasText: '草稿' }).waitFor();

  step('the counts exported as CSV and XLSX');
  const saved = async (button) => {
    const [download] = await Promise.all([page.waitForEvent('download'), page.locator(button).click()]);
    return readFileSync(await download.path());
  };
  const csv = await saved('[data-test=csv]');
  const text = csv.toString('utf8');
  expect(text.startsWith('\ufeff'), 'a byte order mark for Excel');
  const lines = text.slice(1).trim().split(/\r?\n/);
  expect(lines[0] === 'outcome,count', `the header, got ${lines[0]}`);
  expect(lines.includes('draft,1') && lines.includes('submitted,1'), `the rows, got ${lines.join(' | ')}`);
  const xlsx = await saved('[data-test=xlsx]');
  expect(xlsx.subarray(0, 2).toString() === 'PK', 'an XLSX (zip) file');

  step('the page in English');
  await page.locator('[data-test=language]').click();
  await rows.filter({ hasText: 'Awaiting QC' }).waitFor();
  await check('62-statistics-en');
  await page.locator('[data-test=language]').click();
});
