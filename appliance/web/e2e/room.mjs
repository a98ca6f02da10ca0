// The consultation room in headless Chromium (fake camera and microphone), against a real
// stack with `appliance demo-data` (tests/tests/web_centre.rs passes BASE, OUT, NEW_PASSWORD
// and the one-time passwords): the stroke request is submitted, passes QC, is scheduled with
// 王主任 who checks in (through the API). He enters the room: the SFU's video room and
// imaging's viewer load in their frames, the records beside them. Quality control joins from a
// second browser as a follower: what the expert opens (the report; the patient's record and a
// lab trend in it) is shown there too. The follower's link drops; meanwhile the expert opens the studies; the follower's page says it is
// reconnecting, then is back in place on the studies. Two screens put the images in their own
// window, three screens the records and the images; one screen closes them again.
import { expect, env, run, underway } from './lib.mjs';

await run(async (page, { base, step, check, login, another }) => {
  const password = env('NEW_PASSWORD');

  step('the request is submitted, passes QC, is scheduled and the expert checks in (API)');
  const id = await underway(password);

  step('the expert enters the room: video, images and records on one screen');
  await page.goto(`${base}/centre/consultations/${id}`);
  await login('expert.wang', password);
  await page.locator('[data-test=enter-room]').click();
  await page.waitForURL(`**/centre/consultations/${id}/room`);
  await page.locator('[data-test=link]').getByText('已连接').waitFor();
  await page.locator('[data-test=role]').getByText('您可主持展示').waitFor();
  const video = page.frameLocator('[data-test=video]');
  await video.locator('#join').waitFor();
  const images = page.frameLocator('[data-test=images]');
  await images.locator('body').waitFor();
  const frames = page.frames().map((f) => f.url());
  expect(frames.some((u) => u.includes('/room?token=')), `the video room framed: ${frames}`);
  expect(frames.some((u) => u.includes('/view?token=')), `the viewer framed: ${frames}`);
  await check('81-room-single');

  step('quality control follows from another browser: the report the expert opens shows there');
  const follower = await another();
  let offline = false;
  let upstream = null;
  await follower.routeWebSocket(/\/focus\/ws/, (ws) => {
    if (offline) {
      ws.close();
      return;
    }
    upstream = ws.connectToServer();
  });
  await follower.goto(`${base}/centre/consultations/${id}/room`);
  await follower.locator('input[data-test=login]').fill('qc.wu');
  await follower.locator('input[data-test=password]').fill(password);
  await follower.locator('[data-test=submit]').click();
  await follower.waitForURL(`**/centre/consultations/${id}/room`);
  await follower.locator('[data-test=role]').getByText('跟随主持人展示').waitFor();
  await follower.locator('[data-test=application]').waitFor();
  await page.locator('[data-test=tabs] .el-radio-button', { hasText: '会诊报告' }).click();
  await follower.locator('[data-test=focus]').getByText('王主任 正在展示：会诊报告').waitFor();
  await follower.locator('[data-test=report]').waitFor();
  await check('82-room-follower', follower);

  step("the expert opens the patient's record and the glucose trend: the follower sees it too");
  await page.locator('[data-test=tabs] .el-radio-button', { hasText: '病历' }).click();
  await page.locator('[data-test=room-record] [data-test=panel-lab]').filter({ hasText: '葡萄糖' }).first().click();
  await page.locator('[data-test=room-record] [data-test=trend-chart] canvas').waitFor();
  await follower.locator('[data-test=focus]').getByText('王主任 正在展示：病历').waitFor();
  await follower.locator('[data-test=room-record] [data-test=trend]').getByText('葡萄糖 趋势').waitFor();
  await follower.locator('[data-test=room-record] [data-test=trend-chart] canvas').waitFor();
  await check('85-room-record-follower', follower);

  step("the follower's link drops; the expert opens the studies; the follower comes back there");
  offline = true;
  await upstream.close();
  await follower.locator('[data-test=link]').getByText('连接中断').waitFor();
  await page.locator('[data-test=tabs] .el-radio-button', { hasText: '影像检查' }).click();
  offline = false;
  await follower.locator('[data-test=link]').getByText('回到原位').waitFor({ timeout: 20_000 });
  await follower.locator('[data-test=studies]').waitFor();
  await follower.locator('[data-test=focus]').getByText('影像检查').waitFor();
  await follower.context().close();

  step('two screens: the images in their own window; three: records and images; one: back');
  const popup = () => page.context().waitForEvent('page');
  const [imagesWindow] = await Promise.all([popup(), page.locator('[data-test=screens] .el-radio-button', { hasText: '双屏' }).click()]);
  await imagesWindow.waitForURL(/panes=images/);
  await imagesWindow.frameLocator('[data-test=images]').locator('body').waitFor();
  expect(!(await page.locator('[data-test=images]').isVisible()), 'no images left in the main window');
  await page.locator('[data-test=records]').waitFor();
  await check('83-room-dual');
  await check('84-room-images-window', imagesWindow);
  const closed = imagesWindow.waitForEvent('close');
  const windows = [];
  page.context().on('page', (p) => windows.push(p));
  await page.locator('[data-test=screens] .el-radio-button', { hasText: '三屏' }).click();
  await closed;
  for (let i = 0; i < 50 && windows.length < 2; i++) await page.waitForTimeout(100);
  expect(windows.length === 2, `two windows, got ${windows.length}`);
  const urls = await Promise.all(windows.map(async (w) => (await w.waitForLoadState(), w.url())));
  expect(urls.some((u) => u.includes('panes=records')) && urls.some((u) => u.includes('panes=images')), `${urls}`);
  await windows.find((w) => w.url().includes('panes=records')).locator('[data-test=records]').waitFor();
  const gone = Promise.all(windows.map((w) => w.waitForEvent('close')));
  await page.locator('[data-test=screens] .el-radio-button', { hasText: '单屏' }).click();
  await gone;
  await page.locator('[data-test=images]').waitFor();
});
