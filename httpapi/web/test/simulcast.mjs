// Publishes a canvas from Debian's Chromium with three simulcast encodings (sendEncodings with
// rids q, h, f at 1/4, 1/2 and full size, H.264 preferred) to castbridge, which must answer with
// simulcast and the RID header extensions (else setRemoteDescription fails) and go live:
//
//   node httpapi/web/test/simulcast.mjs <apiURL> <rtmpOutput> <streamName>
//
// The offer and answer go through node (no CORS involved); the stream is created with its
// broadcast, which starts when media flows. Environment: BROWSER_OUT (where result.json goes),
// CHROMIUM (default /usr/bin/chromium), SIMULCAST_LIVE_MS (how long to stay live; default 6000).
// result.json has the stream views seen and the browser's outbound layers. Exit status 0 when
// every check here passed.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';

const [api, output, streamName] = process.argv.slice(2);
if (!api || !output || !streamName) {
  console.error('usage: node simulcast.mjs <apiURL> <rtmpOutput> <streamName>');
  process.exit(2);
}
const out = process.env.BROWSER_OUT || fs.mkdtempSync(path.join(os.tmpdir(), 'castbridge-simulcast-'));
const liveMs = Number(process.env.SIMULCAST_LIVE_MS || 6000);
const result = { checks: [] };
let failed = 0;
const log = (...a) => console.log('[simulcast]', ...a);
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
const view = async (id) => (await fetch(`${api}/v1/streams/${id}`)).json();

const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'castbridge-chromium-'));
const context = await chromium.launchPersistentContext(userDataDir, {
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const pageErrors = [];
let id;
try {
  const page = await context.newPage();
  page.on('pageerror', (e) => pageErrors.push(String(e)));
  await page.setContent('<canvas id="c" width="1280" height="720"></canvas>');
  const offer = await page.evaluate(async () => {
    const canvas = document.getElementById('c');
    const g = canvas.getContext('2d');
    let n = 0;
    setInterval(() => {
      n++;
      g.fillStyle = `hsl(${(n * 7) % 360} 70% 45%)`;
      g.fillRect(0, 0, canvas.width, canvas.height);
      g.fillStyle = '#fff';
      g.font = '120px sans-serif';
      g.fillText('frame ' + n, 100, 400);
    }, 1000 / 30);
    const video = canvas.captureStream(30).getVideoTracks()[0];
    const pc = (window.__pc = new RTCPeerConnection());
    const vt = pc.addTransceiver(video, {
      direction: 'sendonly',
      sendEncodings: [
        { rid: 'q', scaleResolutionDownBy: 4, maxBitrate: 200000 },
        { rid: 'h', scaleResolutionDownBy: 2, maxBitrate: 600000 },
        { rid: 'f', maxBitrate: 1500000 },
      ],
    });
    const codecs = RTCRtpSender.getCapabilities('video').codecs;
    const h264 = codecs.filter((c) => c.mimeType.toLowerCase() === 'video/h264' && /packetization-mode=1/.test(c.sdpFmtpLine || ''));
    if (!h264.length) throw new Error('this Chromium offers no H.264 (packetization-mode=1) encoder');
    vt.setCodecPreferences([...h264, ...codecs.filter((c) => !h264.includes(c))]);
    await pc.setLocalDescription(await pc.createOffer());
    await new Promise((r) => {
      if (pc.iceGatheringState === 'complete') return r();
      pc.onicegatheringstatechange = () => pc.iceGatheringState === 'complete' && r();
      setTimeout(r, 3000);
    });
    return pc.localDescription.sdp;
  });
  check('the offer has simulcast with three rids', /a=simulcast:send q;h;f/.test(offer));
  const res = await fetch(`${api}/v1/streams`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ sdp: offer, name: 'simulcast', broadcast: { transcodingTargets: { output, streamname: streamName } } }),
  });
  const created = await res.json();
  check('castbridge created the stream', res.status === 201, `${res.status} ${JSON.stringify(created).slice(0, 300)}`);
  if (res.status !== 201) throw new Error('no stream');
  id = created.id;
  result.answerSimulcast = (created.sdp.match(/a=simulcast:[^\r\n]*/) || [null])[0];
  const applied = await page.evaluate(async (sdp) => {
    try {
      await window.__pc.setRemoteDescription({ type: 'answer', sdp });
      return 'ok';
    } catch (e) {
      return String(e);
    }
  }, created.sdp);
  check('Chromium took the answer', applied === 'ok', applied);
  if (applied !== 'ok') throw new Error('answer refused');
  const live = await until('the stream to go live', async () => {
    const v = await view(id);
    return v.state === 'live' && v.video && v.video.layers && v.video.layers.some((l) => l.forwarded) && v;
  }, 20000);
  result.liveAt = Date.now();
  result.viewLive = live;
  await sleep(liveMs);
  result.viewEnd = await view(id);
  result.outbound = await page.evaluate(async () => {
    const o = [];
    for (const s of (await window.__pc.getStats()).values()) {
      if (s.type === 'outbound-rtp' && s.kind === 'video') o.push({ rid: s.rid, width: s.frameWidth || 0, height: s.frameHeight || 0, frames: s.framesEncoded || 0, encoder: s.encoderImplementation || '' });
    }
    return o;
  });
  log('outbound layers', JSON.stringify(result.outbound));
  log('castbridge layers', JSON.stringify(result.viewEnd.video && result.viewEnd.video.layers));
  result.stopAt = Date.now();
  const del = await fetch(`${api}/v1/streams/${id}/broadcast`, { method: 'DELETE' });
  check('the broadcast stopped', del.status === 200, del.status);
} catch (e) {
  check('browser run', false, (e && e.stack) || e);
} finally {
  check('no page errors', pageErrors.length === 0, pageErrors.join(' | '));
  await context.close().catch(() => {});
  fs.rmSync(userDataDir, { recursive: true, force: true });
  result.failed = failed;
  fs.writeFileSync(path.join(out, 'result.json'), JSON.stringify(result, null, 2));
  console.log(`simulcast: ${result.checks.length - failed} passed, ${failed} failed`);
  process.exit(failed ? 1 : 0);
}
