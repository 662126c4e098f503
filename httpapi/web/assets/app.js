// The castbridge demo page: everything here goes through the public SDK (/sdk/castbridge.js).
import { RtcUser } from '/sdk/castbridge.js';

const $ = (id) => document.getElementById(id);
const rtc = new RtcUser();
window.rtc = rtc; // for the console (and the browser tests)

const ui = {
  state: 'idle', // idle | previewing | connecting | live
  liveSince: 0,
  targets: new Map(),
};

function setState(state) {
  ui.state = state;
  document.body.dataset.state = state;
  const previewing = state !== 'idle';
  $('preview-btn').textContent = previewing ? 'Stop preview' : 'Start preview';
  $('preview-btn').disabled = state === 'connecting';
  $('mute-audio').disabled = !previewing;
  $('mute-video').disabled = !previewing;
  $('go-live').disabled = state === 'live' || state === 'connecting';
  $('go-live').textContent = state === 'connecting' ? 'Connecting…' : 'Go live';
  $('stop').disabled = state !== 'live';
  $('meta-send').disabled = state !== 'live';
  $('live-badge').hidden = state !== 'live';
  $('placeholder').hidden = previewing;
}

// ------------------------------------------------------------ errors and the log

function showError(err) {
  const box = $('error');
  if (!err) {
    box.hidden = true;
    box.textContent = '';
    return;
  }
  box.hidden = false;
  box.replaceChildren();
  const code = document.createElement('strong');
  code.textContent = err.code || 'ERROR';
  box.append(code, ' ', err.message || String(err));
}

function short(v) {
  if (v === undefined || v === null) return '';
  let s;
  try {
    s = JSON.stringify(v, (k, x) => (x instanceof MediaStream || x instanceof MediaStreamTrack ? `[${x.constructor.name}]` : x));
  } catch {
    s = String(v);
  }
  return s.length > 160 ? s.slice(0, 157) + '…' : s;
}

function log(name, detail, kind) {
  const li = document.createElement('li');
  if (kind) li.className = kind;
  const t = document.createElement('time');
  t.textContent = new Date().toLocaleTimeString();
  const n = document.createElement('b');
  n.textContent = name;
  li.append(t, ' ', n, ' ', detail || '');
  const ol = $('log');
  ol.prepend(li);
  while (ol.children.length > 200) ol.lastChild.remove();
}

rtc.on('*', (ev) => {
  if (ev.name === 'ReceivedWebRTCStats' || ev.name === 'ServerEvent') return;
  if (ev.error) {
    log(ev.name, `${ev.error.code}: ${ev.error.message}`, 'bad');
    return;
  }
  const d = { ...ev.data };
  delete d.stream;
  if (ev.name === 'ReceivedDeviceList') {
    log(ev.name, `${d.devices.videodevices.length} cameras, ${d.devices.audiodevices.length} microphones`);
    return;
  }
  log(ev.name, short(d), /Success|Sent|Connected/.test(ev.name) ? 'good' : '');
});

// ------------------------------------------------------------ devices and preview

const source = () => document.querySelector('input[name="source"]:checked').value;
const videoConfig = () => ({ device: source() === 'screen' ? true : Number($('camera').value), source: source(), width: 1280, height: 720, framerate: 30 });
const audioConfig = () => ({ device: Number($('microphone').value) });

function fill(select, devices) {
  const keep = select.value;
  select.replaceChildren(
    ...devices.map((d) => {
      const o = document.createElement('option');
      o.value = String(d.index);
      o.textContent = d.name;
      return o;
    }),
  );
  if ([...select.options].some((o) => o.value === keep)) select.value = keep;
}

rtc.on('ReceivedDeviceList', (ev) => {
  fill($('camera'), ev.data.devices.videodevices);
  fill($('microphone'), ev.data.devices.audiodevices);
});

async function startPreview() {
  showError(null);
  await rtc.startPreview('local', videoConfig(), audioConfig(), 'preview');
  setState('previewing');
  rtc.getDevices(); // labels are known now
}

$('preview-btn').addEventListener('click', async () => {
  try {
    if (ui.state === 'idle') await startPreview();
    else {
      await rtc.stopPreview('local');
      wentOffline();
      setState('idle');
    }
  } catch (e) {
    showError(e);
  }
});

async function switchVideo() {
  if (ui.state === 'idle') return;
  try {
    await rtc.setVideoDevice('local', videoConfig());
  } catch (e) {
    showError(e);
  }
}
$('camera').addEventListener('change', () => {
  if (source() === 'camera') switchVideo();
});
document.querySelectorAll('input[name="source"]').forEach((r) => r.addEventListener('change', switchVideo));
$('microphone').addEventListener('change', async () => {
  if (ui.state === 'idle') return;
  try {
    await rtc.setAudioDevice('local', audioConfig());
  } catch (e) {
    showError(e);
  }
});
rtc.on('ScreenShareEnded', () => {
  document.querySelector('input[name="source"][value="camera"]').checked = true;
  switchVideo();
});

function toggle(btn, on, label) {
  btn.setAttribute('aria-pressed', String(on));
  btn.textContent = label;
}
$('mute-audio').addEventListener('click', async () => {
  const mute = $('mute-audio').getAttribute('aria-pressed') !== 'true';
  try {
    await rtc.muteAudio('local', mute);
    toggle($('mute-audio'), mute, mute ? 'Unmute mic' : 'Mute mic');
  } catch (e) {
    showError(e);
  }
});
$('mute-video').addEventListener('click', async () => {
  const mute = $('mute-video').getAttribute('aria-pressed') !== 'true';
  try {
    await rtc.muteVideo('local', mute);
    toggle($('mute-video'), mute, mute ? 'Show camera' : 'Hide camera');
  } catch (e) {
    showError(e);
  }
});

// ------------------------------------------------------------ going live

$('token').addEventListener('change', () => rtc.setConfig(location.origin, 'demo', '', $('token').value));

$('live-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  showError(null);
  const output = $('ingest').value.trim();
  const key = $('key').value.trim();
  const target = { output, videobitrate: Number($('bitrate').value), audiobitrate: 128000, framerate: 30 };
  if (key) target.streamname = key;
  const before = ui.state;
  try {
    if (ui.state === 'idle') await startPreview();
    setState('connecting');
    const res = await rtc.startBroadcast({ transcodingTargets: target });
    wentLive(res.broadcast);
  } catch (err) {
    showError(err);
    setState(before === 'idle' && !rtc.localStream ? 'idle' : 'previewing');
  }
});

$('stop').addEventListener('click', async () => {
  try {
    await rtc.stopBroadcast();
  } catch (e) {
    showError(e);
  }
  wentOffline();
  setState('previewing');
});

function wentLive(broadcast) {
  ui.liveSince = performance.now();
  ui.targets.clear();
  for (const t of broadcast.targets || []) ui.targets.set(t.id, { ...t });
  renderTargets();
  chartBitrate.clear();
  chartFps.clear();
  rtc.enableStats(true, 1000);
  setState('live');
  const failed = (broadcast.targets || []).filter((t) => t.state === 'failed');
  if (failed.length) showError(failed[0].error || { code: 'TARGET_FAILED', message: failed[0].output + ' failed' });
}

function wentOffline() {
  rtc.enableStats(false);
  for (const t of ui.targets.values()) if (t.state !== 'failed') t.state = 'stopped';
  renderTargets();
}

setInterval(() => {
  if (ui.state !== 'live') return;
  const s = Math.floor((performance.now() - ui.liveSince) / 1000);
  $('elapsed').textContent = `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`;
}, 500);

// ------------------------------------------------------------ targets

function renderTargets() {
  const ul = $('targets');
  if (!ui.targets.size) {
    const li = document.createElement('li');
    li.className = 'empty';
    li.textContent = 'Not live';
    ul.replaceChildren(li);
    return;
  }
  ul.replaceChildren(
    ...[...ui.targets.values()].map((t) => {
      const li = document.createElement('li');
      li.dataset.state = t.state;
      const badge = document.createElement('span');
      badge.className = 'badge';
      badge.textContent = t.state;
      const out = document.createElement('code');
      out.textContent = t.output || t.id;
      li.append(badge, ' ', out);
      if (t.bitrate) li.append(` ${(t.bitrate / 1e6).toFixed(2)} Mbit/s`);
      if (t.framesSent) li.append(`, ${t.framesSent} frames`);
      if (t.error) {
        const e = document.createElement('div');
        e.className = 'target-error';
        e.textContent = `${t.error.code}: ${t.error.message}`;
        li.append(e);
      }
      return li;
    }),
  );
}

for (const [name, state] of [['TargetConnected', 'live'], ['TargetReconnecting', 'reconnecting'], ['TargetFailed', 'failed']]) {
  rtc.on(name, (ev) => {
    const d = ev.data || {};
    const id = d.id || d.targetId || (d.target && d.target.id);
    const t = ui.targets.get(id);
    if (!t) return;
    t.state = state;
    if (ev.error) t.error = ev.error;
    renderTargets();
  });
}

// ------------------------------------------------------------ stats and charts

class Chart {
  constructor(canvas, unit, scale) {
    this.canvas = canvas;
    this.unit = unit;
    this.scale = scale;
    this.series = [[], []];
    this.max = 60;
    new ResizeObserver(() => this.draw()).observe(canvas);
  }
  clear() {
    this.series = [[], []];
    this.draw();
  }
  push(sent, recv) {
    for (const [i, v] of [sent, recv].entries()) {
      this.series[i].push(v === null || v === undefined ? null : v / this.scale);
      if (this.series[i].length > this.max) this.series[i].shift();
    }
    this.draw();
  }
  draw() {
    const c = this.canvas;
    const dpr = window.devicePixelRatio || 1;
    const w = Math.max(1, c.clientWidth);
    const h = Math.max(1, c.clientHeight);
    if (c.width !== Math.round(w * dpr) || c.height !== Math.round(h * dpr)) {
      c.width = Math.round(w * dpr);
      c.height = Math.round(h * dpr);
    }
    const g = c.getContext('2d');
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    g.clearRect(0, 0, w, h);
    const css = getComputedStyle(document.body);
    const colors = [css.getPropertyValue('--sent').trim(), css.getPropertyValue('--recv').trim()];
    const all = this.series.flat().filter((v) => v !== null);
    const top = niceCeil(Math.max(1, ...all) * 1.1);
    const pad = { l: 34, r: 6, t: 6, b: 6 };
    const pw = w - pad.l - pad.r;
    const ph = h - pad.t - pad.b;
    g.font = '10px system-ui, sans-serif';
    g.fillStyle = css.getPropertyValue('--muted').trim();
    g.strokeStyle = css.getPropertyValue('--grid').trim();
    g.lineWidth = 1;
    for (let i = 0; i <= 2; i++) {
      const y = pad.t + (ph * i) / 2;
      g.beginPath();
      g.moveTo(pad.l, Math.round(y) + 0.5);
      g.lineTo(w - pad.r, Math.round(y) + 0.5);
      g.stroke();
      g.fillText(String(+(top * (1 - i / 2)).toFixed(1)), 2, y + 3);
    }
    this.series.forEach((s, i) => {
      g.strokeStyle = colors[i];
      g.lineWidth = 2;
      g.beginPath();
      let pen = false;
      s.forEach((v, j) => {
        if (v === null) {
          pen = false;
          return;
        }
        const x = pad.l + (pw * (j + this.max - s.length)) / (this.max - 1);
        const y = pad.t + ph - (ph * v) / top;
        if (pen) g.lineTo(x, y);
        else g.moveTo(x, y);
        pen = true;
      });
      g.stroke();
    });
  }
}

function niceCeil(v) {
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

const chartBitrate = new Chart($('chart-bitrate'), 'kbit/s', 1000);
const chartFps = new Chart($('chart-fps'), 'fps', 1);

rtc.on('ReceivedWebRTCStats', (ev) => {
  const { local, server } = ev.data;
  const inV = server && server.inbound && server.inbound.video;
  const inA = server && server.inbound && server.inbound.audio;
  const sent = local ? local.videoBitrate + local.audioBitrate : null;
  const recv = inV || inA ? ((inV && inV.bitrate) || 0) + ((inA && inA.bitrate) || 0) : null;
  chartBitrate.push(sent, recv);
  chartFps.push(local ? local.framerate : null, inV ? inV.fps : null);
  $('bitrate-now').textContent = sent !== null ? `${Math.round(sent / 1000)} kbit/s` : '–';
  $('fps-now').textContent = local ? `${Math.round(local.framerate)} fps${local.width ? ` · ${local.width}×${local.height}` : ''}` : '–';
  for (const st of (server && server.targets) || []) {
    const t = ui.targets.get(st.id);
    if (t) Object.assign(t, { state: st.state, bitrate: st.bitrate, framesSent: st.framesSent });
  }
  renderTargets();
});

// ------------------------------------------------------------ metadata

$('meta-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  showError(null);
  let values;
  try {
    values = JSON.parse($('meta-values').value);
  } catch (err) {
    showError({ code: 'INVALID_JSON', message: `the metadata values are not JSON: ${err.message}` });
    return;
  }
  try {
    await rtc.sendMetaData($('meta-handler').value, values);
  } catch (err) {
    showError(err);
  }
});

$('log-clear').addEventListener('click', () => $('log').replaceChildren());

// ------------------------------------------------------------ start

rtc.setConfig(location.origin, 'demo', '');
setState('idle');
if (!RtcUser.checkSupport()) {
  const d = RtcUser.supportDetails();
  showError({ code: 'NOT_SUPPORTED', message: `this browser cannot publish: ${Object.keys(d).filter((k) => d[k] === false).join(', ')} missing` });
}
rtc
  .checkServer()
  .then((r) => {
    $('server').textContent = `server ${r.status}`;
    $('server').dataset.ok = 'true';
  })
  .catch((e) => {
    $('server').textContent = 'server unreachable';
    $('server').dataset.ok = 'false';
    $('server').title = e.message;
  });
rtc.getDevices();
