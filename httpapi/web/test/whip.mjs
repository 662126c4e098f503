// Publishes from Debian's Chromium with a WHIP client library from npm (whip-whep's whip.js, by
// the RFC's author, not by castbridge) with trickle ICE, then restarts ICE and stops:
//
//   node httpapi/web/test/whip.mjs <pageURL>
//
// <pageURL> is whip.html as httpapi/e2e/whip_browser_test.go serves it, with ?whip=...&token=...
// Environment: BROWSER_OUT (where result.json goes), CHROMIUM (default /usr/bin/chromium),
// WHIP_PHASE_MS (how long each phase, before and after the restart, stays live; default 6000).
// result.json has the page's requests and the phases' wall-clock times for the Go test to hold
// against what the ingest received. Exit status 0 when every check here passed.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';

const [pageURL] = process.argv.slice(2);
if (!pageURL) {
  console.error('usage: node whip.mjs <pageURL>');
  process.exit(2);
}
const out = process.env.BROWSER_OUT || fs.mkdtempSync(path.join(os.tmpdir(), 'castbridge-whip-'));
const phase = Number(process.env.WHIP_PHASE_MS || 6000);
const result = { checks: [] };
let failed = 0;
const log = (...a) => console.log('[whip]', ...a);
function check(name, cond, detail) {
  result.checks.push({ name, ok: !!cond, detail: detail === undefined ? undefined : String(detail) });
  if (!cond) failed++;
  log(cond ? 'ok  ' : 'FAIL', name, detail === undefined ? '' : `(${detail})`);
  return !!cond;
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
async function until(what, fn, ms = 15000) {
  const end = Date.now() + ms;
  let last;
  while (Date.now() < end) {
    last = await fn().catch((e) => e);
    if (last && !(last instanceof Error)) return last;
    await sleep(100);
  }
  throw new Error(`timed out after ${ms} ms waiting for ${what} (last: ${last})`);
}

const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'castbridge-chromium-'));
const context = await chromium.launchPersistentContext(userDataDir, {
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
    '--autoplay-policy=no-user-gesture-required'],
});
const pageErrors = [];
try {
  const page = await context.newPage();
  page.on('pageerror', (e) => pageErrors.push(String(e)));
  page.on('console', (m) => m.type() === 'error' && pageErrors.push('console.error: ' + m.text()));
  await page.goto(pageURL);
  const st = await until('the page to publish', () => page.evaluate(() => window.__whip.state !== 'starting' && window.__whip));
  check('whip-whep published', st.state === 'published', st.errors.join(' | '));
  if (st.state !== 'published') throw new Error('not published');
  check('the POST answer\'s ETag is readable across origins', /^"[0-9a-f]{24}"$/.test(st.etag || ''), st.etag);
  const before = await until('ICE and DTLS to connect', async () => {
    const t = await page.evaluate(() => window.__transport());
    return t.dtls === 'connected' && t;
  });
  result.liveAt = Date.now();
  result.ufragBefore = before.ufrag;
  result.codec = await until('an outbound video codec', () => page.evaluate(() => window.__codec()));
  check('the browser sends H.264', /^video\/H264$/i.test(result.codec), result.codec);
  await sleep(phase);

  result.restartAt = Date.now();
  await page.evaluate(() => window.__restart());
  const after = await until('ICE to come back on new credentials', async () => {
    const t = await page.evaluate(() => window.__transport());
    return t.ufrag && t.ufrag !== before.ufrag && t.ice === 'connected' && t;
  });
  result.restartedAt = Date.now();
  result.ufragAfter = after.ufrag;
  check('the restart gave the browser new ICE credentials', after.ufrag !== before.ufrag, `${before.ufrag} -> ${after.ufrag}`);
  await sleep(phase);

  result.stopAt = Date.now();
  await page.evaluate(() => window.__stop());
  await until('the DELETE', () => page.evaluate(() => window.__whip.requests.some((r) => r.method === 'DELETE')), 5000);
  const fin = await page.evaluate(() => window.__whip);
  result.requests = fin.requests;
  result.etag = fin.etag;
  result.etagAfterRestart = fin.etagAfterRestart || null;
} catch (e) {
  check('browser run', false, (e && e.stack) || e);
} finally {
  check('no page errors', pageErrors.length === 0, pageErrors.join(' | '));
  await context.close().catch(() => {});
  fs.rmSync(userDataDir, { recursive: true, force: true });
  result.failed = failed;
  fs.writeFileSync(path.join(out, 'result.json'), JSON.stringify(result, null, 2));
  console.log(`whip: ${result.checks.length - failed} passed, ${failed} failed`);
  process.exit(failed ? 1 : 0);
}
