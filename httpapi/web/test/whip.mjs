// Publishes from Debian's Chromium with a WHIP client library from npm (whip-whep's whip.js, by
// the RFC's author, not by castbridge) with trickle ICE, then restarts ICE and stops:
//
//   node httpapi/web/test/whip.mjs <pageURL>
//
// <pageURL> is whip.html as httpapi/e2e/whip_browser_test.go serves it, with ?whip=...&token=...
// Environment: BROWSER_OUT (where result.json goes), CHROMIUM (default /usr/bin/chromium),
// WHIP_PHASE_MS (how long each phase, before and after the restart, stays live; default 6000).
// result.json has the page's requests, the phases' wall-clock times and the browser's highest
// bandwidth estimate in the first phase, for the Go test to hold against what the ingest received
// and against castbridge's feedback. Exit status 0 when every check here passed.
import { Run, launchChromium, sleep, until } from './run.mjs';

const [pageURL] = process.argv.slice(2);
if (!pageURL) {
  console.error('usage: node whip.mjs <pageURL>');
  process.exit(2);
}
const phase = Number(process.env.WHIP_PHASE_MS || 6000);
const run = new Run('whip');
const { result } = run;
const check = run.check.bind(run);
const browser = await launchChromium(['--autoplay-policy=no-user-gesture-required']);
try {
  const page = await browser.context.newPage();
  run.watch(page);
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
  // The highest bandwidth estimate of the phase, sampled twice a second.
  result.estimateBps = 0;
  for (const end = Date.now() + phase; Date.now() < end; ) {
    await sleep(Math.min(500, Math.max(end - Date.now(), 0)));
    result.estimateBps = Math.max(result.estimateBps, await page.evaluate(() => window.__estimate()));
  }

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
  await run.finish(browser);
}
