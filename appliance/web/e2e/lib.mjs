// What the browser journeys share: their settings from the environment (set by
// tests/tests/web_centre.rs), Chromium started as this machine allows (playwright-core and
// Debian's /usr/bin/chromium), a page that records console errors and requests leaving the
// appliance, an axe-core check with a screenshot per page, and logging in through the form.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { chromium } from 'playwright-core';

const require = createRequire(import.meta.url);
const AXE = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');

export function env(name) {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set (tests/tests/web_centre.rs sets it)`);
  return v;
}

export function expect(ok, what) {
  if (!ok) throw new Error(`expected ${what}`);
}

/** Calls the API as `token` from Node (for a journey's setup); the answer's JSON. */
export async function call(method, path, token, body) {
  const r = await fetch(env('BASE') + path, {
    method,
    headers: {
      'Content-Type': 'application/json',
      ...(token ? { Authorization: `Bearer ${token}` } : {}),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await r.text();
  expect(r.ok, `${method} ${path} to succeed, got ${r.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

/** A session for `login` made through the API, its one-time password changed: the token. */
export async function session(login, oneTime, password) {
  const { token } = await call('POST', '/api/v1/auth/login', null, { login, password: oneTime });
  await call('POST', '/api/v1/auth/password', token, { old_password: oneTime, new_password: password });
  return token;
}

/**
 * Brings doctor.zhao's demo request under way through the API: his patient's whole record
 * shared, submitted, passed by QC,
 * scheduled with 王主任 in 5 minutes in 会诊室1, and 王主任 checked in. Every account's one-time
 * password (ZHAO_, QC_, CENTRE_, EXPERT_PASSWORD) becomes `password`; the request's id.
 */
export async function underway(password) {
  const zhao = await session('doctor.zhao', env('ZHAO_PASSWORD'), password);
  const qc = await session('qc.wu', env('QC_PASSWORD'), password);
  const centre = await session('centre.zhou', env('CENTRE_PASSWORD'), password);
  const wang = await session('expert.wang', env('EXPERT_PASSWORD'), password);
  const id = (await call('GET', '/api/v1/consultations', zhao)).items[0].id;
  const expert = (await call('GET', '/api/v1/experts', zhao)).items.find((e) => e.name === '王主任').id;
  // 赵医生 shares 王建国's whole record with the experts, item by item (each analyte, report,
  // document, diagnosis, visit and order), as the application form lets him.
  const patient = (await call('GET', `/api/v1/consultations/${id}`, zhao)).patient;
  const record = await call('GET', `/api/v1/patients/${patient}/record`, zhao);
  const records = [
    ...new Set(record.labs.map((l) => `lab:${l.code}`)),
    ...record.exam_reports.map((x) => `exam_report:${x.id}`),
    ...record.documents.map((x) => `document:${x.id}`),
    ...record.diagnoses.map((x) => `diagnosis:${x.id}`),
    ...record.encounters.map((x) => `encounter:${x.id}`),
    ...record.orders.map((x) => `order:${x.id}`),
  ];
  await call('PUT', `/api/v1/consultations/${id}`, zhao, { records });
  const act = (token, body) => call('POST', `/api/v1/consultations/${id}/actions`, token, body);
  await act(zhao, { action: 'submit' });
  await act(qc, { action: 'qc_pass' });
  await act(centre, { action: 'schedule', at: Date.now() + 5 * 60_000, experts: [expert], room: '会诊室1' });
  await act(wang, { action: 'check_in' });
  return id;
}

/**
 * Runs `journey(page, tools)` in a fresh headless Chromium at 1366x768 and exits 0 when it
 * passes, 1 (with the last step and the error) when it does not.
 */
export async function run(journey) {
  const BASE = env('BASE');
  const OUT = env('OUT');
  const steps = [];
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      // The video room asks for camera and microphone: a fake pair, granted.
      '--use-fake-ui-for-media-stream',
      '--use-fake-device-for-media-stream',
    ],
  });
  let failed = false;
  let page = null;
  try {
    // The hospital's clocks: slot and consultation times read in China time.
    const settings = {
      viewport: { width: 1366, height: 768 },
      timezoneId: 'Asia/Shanghai',
      locale: 'zh-CN',
      reducedMotion: 'reduce',
    };
    const consoleErrors = [];
    // Requests must stay on the appliance's host (imaging's thumbnails come from its own
    // port there); anything else would need a network the hospital does not have.
    const offline = [];
    const host = new URL(BASE).hostname;
    // Every page of a context (popup windows too) reports its errors and its requests.
    const watch = (context) =>
      context.on('page', (p) => {
        p.on('console', (m) => m.type() === 'error' && consoleErrors.push(m.text()));
        p.on('pageerror', (e) => consoleErrors.push(String(e)));
        p.on('request', (r) => {
          const u = new URL(r.url());
          // Only the network counts: the browser's own pages (its PDF viewer) are not requests
          // to anywhere.
          const network = ['http:', 'https:', 'ws:', 'wss:'].includes(u.protocol);
          if (network && u.hostname !== host) offline.push(r.url());
        });
      });
    const context = await browser.newContext(settings);
    watch(context);
    page = await context.newPage();
    const tools = {
      base: BASE,
      consoleErrors,
      step(what) {
        steps.push(what);
        console.log(`step: ${what}`);
      },
      /** A page in a second browser (another person), watched like the first. */
      async another() {
        const other = await browser.newContext(settings);
        watch(other);
        return other.newPage();
      },
      /** axe-core finds no serious or critical violation on `on` (default: the journey's
       *  page); then a screenshot `name`.png. */
      async check(name, on = page) {
        // Evaluated, not added as a script tag: the pages' content security policy allows no
        // inline script, and the check must not loosen it.
        await on.evaluate(AXE);
        const found = await on.evaluate(async () => {
          const r = await axe.run(document, { resultTypes: ['violations'] });
          return r.violations
            .filter((v) => v.impact === 'serious' || v.impact === 'critical')
            .map((v) => `${v.id} (${v.impact}): ${v.nodes.map((n) => n.target.join(' ')).join(', ')}`);
        });
        expect(found.length === 0, `no serious axe violation on ${name}, got ${found.join('; ')}`);
        await on.screenshot({ path: `${OUT}/${name}.png`, fullPage: true });
      },
      /** Logs in through the form (the login page must be open). */
      async login(login, password) {
        await page.locator('input[data-test=login]').fill(login);
        await page.locator('input[data-test=password]').fill(password);
        await page.locator('[data-test=submit]').click();
      },
      /** Logs in with a one-time password and changes it to `password`. */
      async firstLogin(login, oneTime, password) {
        await tools.login(login, oneTime);
        await page.waitForURL('**/centre/password**');
        await page.locator('input[data-test=old]').fill(oneTime);
        await page.locator('input[data-test=new]').fill(password);
        await page.locator('input[data-test=confirm]').fill(password);
        await page.locator('[data-test=submit]').click();
        await page.waitForURL((u) => !u.pathname.includes('/password'));
      },
      async logout() {
        await page.locator('[data-test=logout]').click();
        await page.waitForURL('**/centre/login**');
      },
    };
    await journey(page, tools);
    expect(consoleErrors.length === 0, `no console error, got ${consoleErrors.join(' | ')}`);
    expect(offline.length === 0, `no request outside the appliance, got ${offline.join(', ')}`);
    console.log(`ok: ${steps.length} steps, screenshots in ${OUT}`);
  } catch (e) {
    failed = true;
    console.error(`failed after: ${steps.at(-1) ?? 'start'}\n${e?.stack ?? e}`);
    // What the page showed when it failed, for whoever reads the artifacts.
    await page?.screenshot({ path: `${OUT}/failure.png`, fullPage: true }).catch(() => {});
    console.error(`at ${page?.url()}; the page is in ${OUT}/failure.png`);
  } finally {
    await browser.close();
  }
  process.exit(failed ? 1 : 0);
}

/** A small PNG (width x height, 8-bit grey) with a dark diagonal stroke: a signature image. */
export async function signaturePng(width = 240, height = 80) {
  const { crc32, deflateSync } = await import('node:zlib');
  const chunk = (type, data) => {
    const body = Buffer.concat([Buffer.from(type, 'ascii'), data]);
    const out = Buffer.alloc(12 + data.length);
    out.writeUInt32BE(data.length, 0);
    body.copy(out, 4);
    out.writeUInt32BE(crc32(body), 8 + data.length);
    return out;
  };
  const header = Buffer.alloc(13);
  header.writeUInt32BE(width, 0);
  header.writeUInt32BE(height, 4);
  header[8] = 8; // bit depth
  header[9] = 0; // greyscale
  const rows = Buffer.alloc((width + 1) * height, 255);
  for (let y = 0; y < height; y++) {
    rows[y * (width + 1)] = 0; // no filter
    const x = Math.round((y / height) * width);
    for (let dx = -3; dx <= 3; dx++) {
      if (x + dx >= 0 && x + dx < width) rows[y * (width + 1) + 1 + x + dx] = 20;
    }
  }
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', header),
    chunk('IDAT', deflateSync(rows)),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}
