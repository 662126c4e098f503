// SDK unit tests. browser.mjs serves this file into a page of the real castbridge and calls run()
// there, so they run in the same Chromium against the SDK exactly as castbridge serves it.
import { RtcUser, CastbridgeError, CastbridgeSDK } from '/sdk/castbridge.js';

const I = CastbridgeSDK.internals;
const tests = [];
const test = (name, fn) => tests.push({ name, fn });

function eq(a, b, what) {
  const sa = JSON.stringify(a);
  const sb = JSON.stringify(b);
  if (sa !== sb) throw new Error(`${what || 'value'}: got ${sa}, want ${sb}`);
}
function ok(v, what) {
  if (!v) throw new Error(what || 'expected true');
}
async function rejects(p, code) {
  try {
    await p;
  } catch (e) {
    eq(e.code, code, 'error code');
    ok(e instanceof CastbridgeError, 'a CastbridgeError');
    return e;
  }
  throw new Error(`expected a ${code} rejection`);
}
function throws(fn, code) {
  try {
    fn();
  } catch (e) {
    eq(e.code, code, 'error code');
    return e;
  }
  throw new Error(`expected ${code} to be thrown`);
}

// ---------------------------------------------------------------- emitter

test('emitter: on, once, off, wildcard, and a throwing handler does not stop the others', () => {
  const em = new I.Emitter();
  const got = [];
  const h = (e) => got.push('a:' + e.data.n);
  em.on('A', h);
  em.once('A', (e) => got.push('once:' + e.data.n));
  em.on('A', () => {
    throw new Error('boom');
  });
  em.on('*', (e) => got.push('*:' + e.name));
  const origError = console.error;
  console.error = () => {};
  try {
    em.emit('A', { n: 1 });
    em.emit('A', { n: 2 });
    em.off('A', h);
    em.emit('A', { n: 3 });
    em.off('A');
    em.emit('A', { n: 4 });
  } finally {
    console.error = origError;
  }
  eq(got, ['a:1', 'once:1', '*:A', 'a:2', '*:A', '*:A', '*:A']);
});

test('emitter: error events carry {code, message, status} at ev.error and ev.data.error', () => {
  const em = new I.Emitter();
  let ev;
  em.on('StartBroadcastError', (e) => (ev = e));
  em.emit('StartBroadcastError', {}, new CastbridgeError('INGEST_REJECTED', 'refused', 502));
  eq(ev.error, { code: 'INGEST_REJECTED', message: 'refused', status: 502 });
  eq(ev.data.error, ev.error);
  eq(ev.name, 'StartBroadcastError');
});

test('RtcUser is an emitter with the nanoStream method names', () => {
  const u = new RtcUser();
  for (const m of ['setConfig', 'setIceServers', 'checkSupport', 'checkServer', 'getDevices', 'startPreview', 'setVideoDevice', 'setAudioDevice', 'setOptionalConfig', 'startBroadcast', 'stopBroadcast', 'stopPreview', 'sendMetaData', 'enableStats', 'muteAudio', 'muteVideo', 'injectExternalMediaStream', 'isSignedIn', 'on', 'off']) {
    ok(typeof u[m] === 'function', m + ' is a method');
  }
  ok(typeof RtcUser.checkSupport === 'function', 'RtcUser.checkSupport');
  eq(RtcUser.checkSupport(), true, 'Chromium is supported');
  eq(u.isSignedIn(), false, 'not signed in before a session');
  u.destroy();
});

// ---------------------------------------------------------------- config

test('config: positional nanoStream arguments, object form, relative and trailing-slash servers', () => {
  const base = 'https://page.example/app/';
  eq(I.parseConfig(['https://cb.example:8443/', 'alice', 'room1', 'tok'], base), { server: 'https://cb.example:8443', userName: 'alice', room: 'room1', token: 'tok' });
  eq(I.parseConfig(['https://cb.example/castbridge/', 'bob', 'r', undefined, 'u', 'p', 'bintu'], base).token, 'bintu');
  eq(I.parseConfig([{ server: '/gw', name: 'n', apiKey: 'k' }], base), { server: 'https://page.example/gw', userName: 'n', room: '', token: 'k' });
  eq(I.parseConfig(['', 'x'], base).server, 'https://page.example');
  eq(I.normalizeServer('http://127.0.0.1:8080?x=1#y', ''), 'http://127.0.0.1:8080');
  throws(() => I.parseConfig(['ftp://cb.example'], base), 'INVALID_CONFIG');
  throws(() => I.normalizeServer('http://[bad', ''), 'INVALID_CONFIG');
  throws(() => I.normalizeServer('', ''), 'INVALID_CONFIG');
});

test('config: setConfig never hands the token back', () => {
  const u = new RtcUser();
  const c = u.setConfig(location.origin + '/', 'me', '', 'secret');
  eq(c.token, '****');
  eq(u.getConfig().server, location.origin);
  u.destroy();
});

test('broadcast config: transcodingTargets, targets, and what is missing', () => {
  const one = I.broadcastBody({ transcodingTargets: { output: 'rtmp://h/app', streamname: 'k', videobitrate: 500000 } });
  eq(one.body, { transcodingTargets: { output: 'rtmp://h/app', streamname: 'k', videobitrate: 500000 } });
  eq(one.first.videobitrate, 500000);
  const many = I.broadcastBody({ targets: [{ output: 'rtmp://a/b/c' }, { output: 'rtmps://d/e', streamname: 'f' }] });
  eq(many.body.targets.length, 2);
  eq(I.broadcastBody({ transcodingTargets: [{ output: 'rtmp://a/b/c' }] }).body, { targets: [{ output: 'rtmp://a/b/c' }] });
  throws(() => I.broadcastBody(), 'INVALID_REQUEST');
  throws(() => I.broadcastBody({}), 'INVALID_REQUEST');
  throws(() => I.broadcastBody({ transcodingTargets: { output: ' ' } }), 'INVALID_OUTPUT');
  throws(() => I.broadcastBody({ targets: [] }), 'INVALID_REQUEST');
});

test('metadata depth counts nesting like the API (at most 6)', () => {
  eq(I.depth({ a: 1 }), 1);
  eq(I.depth({ a: { b: [1, { c: 2 }] } }), 4);
  eq(I.depth('x'), 0);
});

// ---------------------------------------------------------------- errors

test('error mapping: API error bodies keep the API code and message', async () => {
  const body = JSON.stringify({ error: { code: 'INGEST_REJECTED', message: 'ingest rtmp://h/app/**** refused the publish' } });
  const e = await I.apiError(new Response(body, { status: 502, headers: { 'Content-Type': 'application/json' } }));
  eq([e.code, e.message, e.status], ['INGEST_REJECTED', 'ingest rtmp://h/app/**** refused the publish', 502]);
  const html = await I.apiError(new Response('<html>Bad Gateway</html>', { status: 502, statusText: 'Bad Gateway' }));
  eq(html.code, 'HTTP_502');
  ok(/502 Bad Gateway/.test(html.message), html.message);
  eq((await I.apiError(new Response('', { status: 401 }))).code, 'UNAUTHORIZED');
  eq((await I.apiError(new Response('', { status: 404 }))).code, 'NOT_FOUND');
});

test('error mapping: capture failures and network failures', () => {
  eq(I.mediaError(new DOMException('denied', 'NotAllowedError')).code, 'PERMISSION_DENIED');
  eq(I.mediaError(new DOMException('x', 'NotFoundError')).code, 'DEVICE_NOT_FOUND');
  eq(I.mediaError(new DOMException('x', 'NotReadableError')).code, 'DEVICE_BUSY');
  eq(I.mediaError({ name: 'OverconstrainedError', message: 'width' }).code, 'DEVICE_CONSTRAINTS');
  eq(I.mediaError(new Error('odd')).code, 'MEDIA_ERROR');
  eq(I.toError(new TypeError('Failed to fetch')).code, 'NETWORK_ERROR');
  eq(I.toError(new Error('x'), 'ICE_FAILED').code, 'ICE_FAILED');
  const c = new CastbridgeError('A', 'b', 400);
  eq(I.toError(c), c);
});

test('error mapping: a real API error reaches the error event with its code', async () => {
  const u = new RtcUser();
  u.setConfig(location.origin, 'unit', '', window.__apiKey || '');
  const e = await rejects(u._api('GET', '/v1/streams/st_doesnotexist'), 'NOT_FOUND');
  eq(e.status, 404);
  // A wrong key is UNAUTHORIZED when the server has one.
  if (window.__apiKey) {
    u.setConfig(location.origin, 'unit', '', 'wrong-key');
    await rejects(u._api('GET', '/v1/streams'), 'UNAUTHORIZED');
  }
  u.destroy();
});

test('methods fire Error events and reject quietly (no unhandled rejection)', async () => {
  let unhandled = 0;
  const onUnhandled = () => unhandled++;
  window.addEventListener('unhandledrejection', onUnhandled);
  const u = new RtcUser();
  u.setConfig(location.origin, 'unit', '', window.__apiKey || '');
  const evs = [];
  u.on('*', (e) => evs.push(e.name + (e.error ? ':' + e.error.code : '')));
  u.startBroadcast({ transcodingTargets: { output: 'rtmp://127.0.0.1/live/x' } }); // not awaited, no catch
  u.sendMetaData('onTextData', { a: 1 });
  u.stopPreview();
  await rejects(u.sendMetaData('onMetaData', { a: 1 }), 'NOT_BROADCASTING');
  await rejects(u.setVideoDevice('local', { device: 0 }), 'NOT_PREVIEWING');
  await new Promise((r) => setTimeout(r, 50));
  window.removeEventListener('unhandledrejection', onUnhandled);
  eq(evs, ['StartBroadcastError:NOT_PREVIEWING', 'MetaDataError:METADATA_INVALID', 'StopPreviewError:NOT_PREVIEWING', 'MetaDataError:NOT_BROADCASTING', 'SetVideoDeviceError:NOT_PREVIEWING']);
  eq(unhandled, 0, 'unhandled rejections');
  u.destroy();
});

test('checkServer: GET /readyz', async () => {
  const u = new RtcUser();
  let ev;
  u.on('CheckServerSuccess', (e) => (ev = e));
  const r = await u.checkServer();
  eq([r.ready, r.status, ev.data.server], [true, 'ready', location.origin]);
  await rejects(u.checkServer('http://127.0.0.1:9'), 'NETWORK_ERROR');
  u.destroy();
});

// ---------------------------------------------------------------- SSE

function collect() {
  const out = [];
  const p = new I.SSEParser((e) => out.push(e));
  return { p, out };
}

test('SSE: events, multi-line data, comments, ids, retry', () => {
  const { p, out } = collect();
  p.push(': castbridge events\n\nid: 1\nevent: TargetConnected\ndata: {"targetId":"tg_1"}\n\n');
  p.push('data: line1\ndata: line2\n\nretry: 3000\nevent: X\ndata\n\n');
  eq(out, [
    { event: 'TargetConnected', data: '{"targetId":"tg_1"}', id: '1' },
    { event: 'message', data: 'line1\nline2', id: '1' },
    { event: 'X', data: '', id: '1' },
  ]);
  eq(p.retry, 3000);
});

test('SSE: CRLF, CR, chunks split anywhere, BOM, no space after the colon', () => {
  const text = '\ufeffevent: A\r\ndata:x\r\n\r\nevent: B\rdata: y\r\rid: 7\ndata: z\n\n';
  for (let size = 1; size <= text.length; size++) {
    const { p, out } = collect();
    for (let i = 0; i < text.length; i += size) p.push(text.slice(i, i + size));
    eq(out, [
      { event: 'A', data: 'x', id: '' },
      { event: 'B', data: 'y', id: '' },
      { event: 'message', data: 'z', id: '7' },
    ], 'chunk size ' + size);
  }
});

test('SSE: an event without data is not dispatched, an unterminated one is dropped', () => {
  const { p, out } = collect();
  p.push('event: Empty\n\nevent: Cut\ndata: never');
  p.end();
  eq(out, []);
});

test('SSE: readSSE decodes UTF-8 split across network chunks', async () => {
  const bytes = new TextEncoder().encode('event: MetaDataSent\ndata: {"title":"Grüße 🎥"}\n\n');
  const stream = new ReadableStream({
    start(c) {
      for (let i = 0; i < bytes.length; i += 3) c.enqueue(bytes.slice(i, i + 3));
      c.close();
    },
  });
  const out = [];
  await I.readSSE(new Response(stream), (e) => out.push(e));
  eq(out.length, 1);
  eq(JSON.parse(out[0].data).title, 'Grüße 🎥');
});

// ---------------------------------------------------------------- SDP and codecs

test('codecs: H.264 packetization-mode 1, Constrained Baseline first', () => {
  const caps = RTCRtpReceiver.getCapabilities('video').codecs;
  const ordered = I.preferCodec(caps, 'H264');
  eq(ordered.length, caps.length, 'keeps every codec');
  eq(ordered[0].mimeType, 'video/H264');
  ok(/packetization-mode=1/.test(ordered[0].sdpFmtpLine) && /42e01f/.test(ordered[0].sdpFmtpLine), ordered[0].sdpFmtpLine);
  eq(I.preferCodec(caps, 'VP8')[0].mimeType, 'video/VP8');
});

const SDP = ['v=0', 'm=video 9 UDP/TLS/RTP/SAVPF 96 97 102 103', 'a=rtpmap:96 VP8/90000', 'a=rtpmap:97 rtx/90000', 'a=rtpmap:102 H264/90000', 'a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f', 'a=rtpmap:103 rtx/90000', 'a=fmtp:103 apt=102', ''].join('\r\n');

test('SDP: H.264 first on the m=video line, and the start bit rate', () => {
  ok(I.preferCodecInSDP(SDP, 'H264').includes('m=video 9 UDP/TLS/RTP/SAVPF 102 96 97 103'));
  const s = I.setStartBitrate(SDP, 800);
  ok(s.includes('a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f;x-google-start-bitrate=800'));
  ok(s.includes('a=fmtp:103 apt=102\r\n'), 'rtx untouched');
  eq(I.setStartBitrate(SDP, 0), SDP);
});

test('an offer from the SDK prefers H.264', async () => {
  const pc = new RTCPeerConnection();
  const t = pc.addTransceiver('video', { direction: 'sendonly' });
  t.setCodecPreferences(I.preferCodec(RTCRtpReceiver.getCapabilities('video').codecs, 'H264'));
  const offer = await pc.createOffer();
  pc.close();
  const m = /^m=video \S+ \S+ (\d+)/m.exec(offer.sdp);
  ok(new RegExp(`a=rtpmap:${m[1]} H264/90000`).test(offer.sdp), 'first payload type is H264');
});

// ---------------------------------------------------------------- runner

export async function run() {
  const results = [];
  for (const t of tests) {
    const t0 = performance.now();
    try {
      await t.fn();
      results.push({ name: t.name, ok: true, ms: Math.round(performance.now() - t0) });
    } catch (e) {
      results.push({ name: t.name, ok: false, error: String((e && e.stack) || e) });
    }
  }
  return results;
}
