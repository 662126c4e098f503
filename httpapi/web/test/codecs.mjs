// Publishes VP9 or AV1 from Debian's Chromium (fake camera) to castbridge with
// setCodecPreferences, in a stream created with its broadcast:
//
//   node httpapi/web/test/codecs.mjs <apiURL> <rtmpOutput> <vp9|av1>
//
// The page (served here, on 127.0.0.1, a secure context) makes the offer;
// this script POSTs it to <apiURL>/v1/streams with a target of videocodec
// <codec> and hands the answer back. After LIVE_MS (default 6000) of
// sending it reads the sender's stats and stops. Environment: BROWSER_OUT
// (where result.json goes), CHROMIUM (default /usr/bin/chromium).
// result.json: the stream id, the codec Chromium offered and sent, frames
// and key frames encoded, or unavailable when this Chromium cannot encode
// the codec. Exit status 0 when every check here passed.
import http from 'node:http';
import { Run, launchChromium, sleep } from './run.mjs';

const [apiURL, output, codec] = process.argv.slice(2);
if (!apiURL || !output || !['vp9', 'av1'].includes(codec)) {
  console.error('usage: node codecs.mjs <apiURL> <rtmpOutput> <vp9|av1>');
  process.exit(2);
}
const liveMs = Number(process.env.LIVE_MS || 6000);
const run = new Run(`codecs ${codec}`, { codec });
const { result } = run;
const check = run.check.bind(run);
const log = run.log.bind(run);

const server = http.createServer((_, res) => {
  res.writeHead(200, { 'Content-Type': 'text/html' });
  res.end('<!doctype html><title>castbridge codecs</title><p>publishing</p>');
});
await new Promise((r) => server.listen(0, '127.0.0.1', r));
const pageURL = `http://127.0.0.1:${server.address().port}/`;

const browser = await launchChromium(['--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream']);
try {
  const page = await browser.context.newPage();
  run.watch(page, () => false);
  await page.goto(pageURL);
  const offer = await page.evaluate(async (codec) => {
    const mime = { vp9: 'video/vp9', av1: 'video/av1' }[codec];
    const caps = RTCRtpSender.getCapabilities('video').codecs;
    // VP9 profile 0 and AV1 main profile: what castbridge registers.
    const prefs = caps.filter((c) => c.mimeType.toLowerCase() === mime &&
      !/profile-id=[1-9]|profile=[1-9]/.test(c.sdpFmtpLine || ''));
    if (!prefs.length) return { unavailable: caps.map((c) => c.mimeType).join(' ') };
    const stream = await navigator.mediaDevices.getUserMedia({ video: { width: 320, height: 180, frameRate: 30 } });
    const pc = new RTCPeerConnection({ bundlePolicy: 'max-bundle' });
    window.pc = pc;
    const tr = pc.addTransceiver(stream.getVideoTracks()[0], { direction: 'sendonly' });
    tr.setCodecPreferences(prefs);
    await pc.setLocalDescription(await pc.createOffer());
    await new Promise((r) => {
      if (pc.iceGatheringState === 'complete') return r();
      pc.onicegatheringstatechange = () => pc.iceGatheringState === 'complete' && r();
      setTimeout(r, 3000);
    });
    return { sdp: pc.localDescription.sdp };
  }, codec);
  if (offer.unavailable !== undefined) {
    result.unavailable = offer.unavailable;
    log(`this Chromium cannot send ${codec}: it has ${offer.unavailable}`);
  } else {
    const resp = await fetch(`${apiURL}/v1/streams`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ sdp: offer.sdp, broadcast: { transcodingTargets: { output, videocodec: codec } } }),
    });
    const body = await resp.json();
    check('POST /v1/streams with the broadcast', resp.status === 201, `${resp.status} ${body.id || JSON.stringify(body.error)}`);
    if (resp.status !== 201) throw new Error('not created');
    result.streamId = body.id;
    await page.evaluate((sdp) => window.pc.setRemoteDescription({ type: 'answer', sdp }), body.sdp);
    const end = Date.now() + 15000;
    while (Date.now() < end && await page.evaluate(() => window.pc.connectionState) !== 'connected') await sleep(100);
    check('connected', await page.evaluate(() => window.pc.connectionState) === 'connected');
    await sleep(liveMs);
    // The camera stops first, so that the encoder's count read next is
    // final: the Go test holds it against what the ingest received.
    await page.evaluate(() => window.pc.getSenders().forEach((s) => s.track && s.track.stop()));
    await sleep(300);
    const st = await page.evaluate(async () => {
      const stats = await window.pc.getStats();
      let o, c;
      stats.forEach((s) => { if (s.type === 'outbound-rtp' && s.kind === 'video') o = s; });
      if (o) stats.forEach((s) => { if (s.id === o.codecId) c = s; });
      return { mime: c && c.mimeType, frames: o && o.framesEncoded, keys: o && o.keyFramesEncoded,
        width: o && o.frameWidth, height: o && o.frameHeight, encoder: o && o.encoderImplementation };
    });
    Object.assign(result, st);
    check(`Chromium sends ${codec}`, (st.mime || '').toLowerCase() === { vp9: 'video/vp9', av1: 'video/av1' }[codec], st.mime);
    await page.evaluate(() => window.pc.close());
  }
} catch (e) {
  check('browser run', false, (e && e.stack) || e);
} finally {
  server.close();
  await run.finish(browser);
}
