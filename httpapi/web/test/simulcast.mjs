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
import { Run, launchChromium, sleep, until } from './run.mjs';

const [api, output, streamName] = process.argv.slice(2);
if (!api || !output || !streamName) {
  console.error('usage: node simulcast.mjs <apiURL> <rtmpOutput> <streamName>');
  process.exit(2);
}
const liveMs = Number(process.env.SIMULCAST_LIVE_MS || 6000);
const run = new Run('simulcast');
const { result } = run;
const check = run.check.bind(run);
const log = run.log.bind(run);
const view = async (id) => (await fetch(`${api}/v1/streams/${id}`)).json();

const browser = await launchChromium();
let id;
try {
  const page = await browser.context.newPage();
  // Only uncaught exceptions fail this run: the page is a bare canvas with no SDK to log errors.
  run.watch(page, () => false);
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
  await run.finish(browser);
}
