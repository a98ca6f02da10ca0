// Bench (driven by benches/src/bin/web.rs): cold loads in headless Chromium, each in a fresh
// browser context (empty cache), against the appliance at BASE:
//   - reference: GET /healthz, a plain text answer from the same server (the navigation floor);
//   - the login page until its form is interactive (the inputs enabled and focused-able);
//   - the worklist after login (a session token in the tab) until its rows are drawn.
// Prints one JSON line: each series' milliseconds, and the initial JavaScript of centre.html
// (its entry script and modulepreloads) in bytes, raw and gzip, read from DIST.
import { readFileSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import { chromium } from 'playwright-core';

const BASE = process.env.BASE;
const TOKEN = process.env.TOKEN;
const DIST = process.env.DIST;
const RUNS = Number(process.env.RUNS ?? 10);

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking'],
});

/** Milliseconds from navigation start until `ready` resolves, in a fresh context. */
async function cold(url, ready, setup) {
  const context = await browser.newContext({ viewport: { width: 1366, height: 768 } });
  if (setup) await context.addInitScript(setup.script, setup.arg);
  const page = await context.newPage();
  await page.goto(url, { waitUntil: 'commit' });
  await ready(page);
  const ms = await page.evaluate(() => performance.now());
  await context.close();
  return ms;
}

const series = { healthz: [], login: [], worklist: [] };
for (let i = 0; i < RUNS; i++) {
  series.healthz.push(await cold(`${BASE}/healthz`, (p) => p.waitForLoadState('load')));
  series.login.push(
    await cold(`${BASE}/centre/login`, (p) => p.locator('input[data-test=login]:enabled').waitFor()),
  );
  series.worklist.push(
    await cold(
      `${BASE}/centre/worklist`,
      (p) => p.locator('[data-test=worklist] tbody tr').first().waitFor(),
      { script: (t) => sessionStorage.setItem('appliance.token', t), arg: TOKEN },
    ),
  );
}
await browser.close();

const html = readFileSync(`${DIST}/centre.html`, 'utf8');
const scripts = [...html.matchAll(/(?:src|href)="(\/assets\/[^"]+\.js)"/g)].map((m) => m[1]);
let raw = 0;
let gzip = 0;
for (const s of new Set(scripts)) {
  const bytes = readFileSync(`${DIST}${s}`);
  raw += bytes.length;
  gzip += gzipSync(bytes, { level: 9 }).length;
}
console.log(JSON.stringify({ series, initial_js: { files: [...new Set(scripts)], raw, gzip } }));
