/*!
 * castbridge browser SDK: publish a camera, a microphone or a screen from a web page to RTMP ingests
 * through castbridge. Modelled on nanoStream's RtcUser so code written against it moves over.
 *
 *   import { RtcUser } from 'https://castbridge.example/sdk/castbridge.js';   // ES module
 *   <script src="https://castbridge.example/sdk/castbridge.js"></script>       // sets window.RtcUser
 *
 *   const rtc = new RtcUser();
 *   rtc.setConfig('https://castbridge.example', 'studio-1', '', 'API-KEY-or-empty');
 *   rtc.on('StartBroadcastError', (e) => alert(e.error.code + ': ' + e.error.message));
 *   await rtc.startPreview('local', { device: 0 }, { device: 0 }, 'preview');
 *   await rtc.startBroadcast({ transcodingTargets: { output: 'rtmp://a.rtmp.youtube.com/live2', streamname: 'KEY' } });
 *
 * Every method that talks to the gateway or the devices fires a ...Success / ...Error event and
 * also returns a Promise (rejected with a CastbridgeError; rejections nobody awaits are not
 * reported as unhandled, so event-style code needs no .catch()). Handlers get one argument,
 * {name, data, error?}; error events carry error = {code, message, status} (the API's code and
 * message for API errors) and data.error the same.
 *
 * Events: StartPreviewSuccess/Error, StopPreviewSuccess/Error, StartBroadcastSuccess/Error,
 * StopBroadcastSuccess/Error, MetaDataSent/MetaDataError, ReceivedWebRTCStats, ReceivedDeviceList,
 * SetVideoDeviceSuccess/Error, SetAudioDeviceSuccess/Error, MuteAudioSuccess/Error,
 * MuteVideoSuccess/Error, InjectExternalMediaStreamSuccess/Error, CheckServerSuccess/Error,
 * ScreenShareEnded, ConnectionFailed, and the server's own events relayed as they come
 * (PublisherConnected, PublisherDisconnected, TargetConnected, TargetReconnecting, TargetFailed,
 * StreamClosed, ...). Every server event is also fired as ServerEvent {name, data}; '*' receives
 * everything.
 */
var CastbridgeSDK = (function (global) {
  'use strict';

  var VERSION = '1.0.0';
  var LOCAL = 'local';

  // ---------------------------------------------------------------- errors

  class CastbridgeError extends Error {
    constructor(code, message, status, cause) {
      super(message);
      this.name = 'CastbridgeError';
      this.code = code;
      this.status = status || 0;
      if (cause !== undefined) this.cause = cause;
    }
    toJSON() {
      return { code: this.code, message: this.message, status: this.status };
    }
  }

  // apiError turns a failed API response into a CastbridgeError with the API's code and message.
  async function apiError(res) {
    var text = '';
    try {
      text = await res.text();
    } catch (e) {
      /* the body is gone: fall back to the status */
    }
    var body = null;
    try {
      body = JSON.parse(text);
    } catch (e) {
      /* not JSON */
    }
    if (body && body.error && typeof body.error.code === 'string') {
      return new CastbridgeError(body.error.code, String(body.error.message || body.error.code), res.status);
    }
    var code = res.status === 401 ? 'UNAUTHORIZED' : res.status === 404 ? 'NOT_FOUND' : 'HTTP_' + res.status;
    var msg = 'castbridge answered ' + res.status + (res.statusText ? ' ' + res.statusText : '');
    if (text && text.length < 300) msg += ': ' + text.trim();
    return new CastbridgeError(code, msg, res.status);
  }

  var MEDIA_ERRORS = {
    NotAllowedError: ['PERMISSION_DENIED', 'the browser or the user refused access to the camera, microphone or screen'],
    SecurityError: ['PERMISSION_DENIED', 'capture is not allowed here (the page must be served over https or from localhost)'],
    NotFoundError: ['DEVICE_NOT_FOUND', 'no such camera or microphone'],
    NotReadableError: ['DEVICE_BUSY', 'the device is in use by another program or could not be started'],
    OverconstrainedError: ['DEVICE_CONSTRAINTS', 'the device cannot deliver the requested resolution or frame rate'],
    AbortError: ['MEDIA_ABORTED', 'capture was aborted'],
    TypeError: ['MEDIA_ERROR', 'invalid capture constraints'],
  };

  // mediaError maps getUserMedia/getDisplayMedia failures to stable codes.
  function mediaError(err) {
    if (err instanceof CastbridgeError) return err;
    var m = MEDIA_ERRORS[err && err.name];
    var detail = err && err.message ? ' (' + err.message + ')' : '';
    if (m) return new CastbridgeError(m[0], m[1] + detail, 0, err);
    return new CastbridgeError('MEDIA_ERROR', 'capture failed' + detail, 0, err);
  }

  // toError normalises anything thrown into a CastbridgeError.
  function toError(err, code) {
    if (err instanceof CastbridgeError) return err;
    if (err && err.name === 'AbortError') return new CastbridgeError('ABORTED', 'the request was aborted', 0, err);
    if (err instanceof TypeError && /fetch|network|load failed/i.test(String(err.message))) {
      return new CastbridgeError('NETWORK_ERROR', 'cannot reach castbridge: ' + err.message, 0, err);
    }
    return new CastbridgeError(code || 'INTERNAL', (err && err.message) || String(err), 0, err);
  }

  // ---------------------------------------------------------------- events

  class Emitter {
    constructor() {
      this._handlers = new Map();
    }
    on(name, handler) {
      if (typeof handler !== 'function') throw new TypeError('on(' + name + '): handler must be a function');
      if (!this._handlers.has(name)) this._handlers.set(name, new Set());
      this._handlers.get(name).add(handler);
      return this;
    }
    off(name, handler) {
      if (name === undefined) this._handlers.clear();
      else if (handler === undefined) this._handlers.delete(name);
      else if (this._handlers.has(name)) this._handlers.get(name).delete(handler);
      return this;
    }
    once(name, handler) {
      var self = this;
      var wrap = function (ev) {
        self.off(name, wrap);
        handler.call(self, ev);
      };
      return this.on(name, wrap);
    }
    // emit calls the name's handlers, then '*' handlers; a throwing handler does not stop the others.
    emit(name, data, error) {
      var ev = { name: name, data: data === undefined ? {} : data };
      if (error) {
        ev.error = error instanceof CastbridgeError ? error.toJSON() : error;
        if (ev.data && typeof ev.data === 'object' && !ev.data.error) ev.data.error = ev.error;
      }
      var lists = [this._handlers.get(name), name === '*' ? null : this._handlers.get('*')];
      for (var i = 0; i < lists.length; i++) {
        if (!lists[i]) continue;
        Array.from(lists[i]).forEach(function (h) {
          try {
            h.call(this, ev);
          } catch (e) {
            if (global.console) console.error('castbridge: a handler of ' + name + ' threw', e);
          }
        }, this);
      }
      return ev;
    }
  }

  // ---------------------------------------------------------------- Server-Sent Events

  // SSEParser implements the text/event-stream format (WHATWG HTML, 9.2.6) over chunks of text.
  class SSEParser {
    constructor(onEvent) {
      this.onEvent = onEvent;
      this.buf = '';
      this.skipLF = false;
      this.data = [];
      this.event = '';
      this.lastEventId = '';
      this.retry = null;
    }
    push(chunk) {
      if (this._first === undefined) {
        this._first = false;
        if (chunk.charCodeAt(0) === 0xfeff) chunk = chunk.slice(1);
      }
      var s = this.buf + chunk;
      var start = 0;
      for (var i = 0; i < s.length; i++) {
        var c = s.charCodeAt(i);
        if (c === 10 && this.skipLF && i === start) {
          this.skipLF = false;
          start = i + 1;
          continue;
        }
        this.skipLF = false;
        if (c === 13 || c === 10) {
          this._line(s.slice(start, i));
          if (c === 13) this.skipLF = true;
          start = i + 1;
        }
      }
      this.buf = s.slice(start);
    }
    // end drops an event that was not terminated by a blank line, as the spec says.
    end() {
      this.buf = '';
      this.data = [];
      this.event = '';
    }
    _line(line) {
      if (line === '') return this._dispatch();
      if (line[0] === ':') return;
      var i = line.indexOf(':');
      var field = i < 0 ? line : line.slice(0, i);
      var value = i < 0 ? '' : line.slice(line[i + 1] === ' ' ? i + 2 : i + 1);
      if (field === 'event') this.event = value;
      else if (field === 'data') this.data.push(value);
      else if (field === 'id') {
        if (value.indexOf('\0') < 0) this.lastEventId = value;
      } else if (field === 'retry') {
        if (/^\d+$/.test(value)) this.retry = parseInt(value, 10);
      }
    }
    _dispatch() {
      if (this.data.length === 0) {
        this.event = '';
        return;
      }
      var ev = { event: this.event || 'message', data: this.data.join('\n'), id: this.lastEventId };
      this.data = [];
      this.event = '';
      this.onEvent(ev);
    }
  }

  // readSSE feeds a fetch() Response body through an SSEParser until it ends.
  async function readSSE(res, onEvent, parser) {
    parser = parser || new SSEParser(onEvent);
    var reader = res.body.getReader();
    var dec = new TextDecoder('utf-8');
    for (;;) {
      var r = await reader.read();
      if (r.done) break;
      parser.push(dec.decode(r.value, { stream: true }));
    }
    parser.push(dec.decode());
    parser.end();
    return parser;
  }

  // ---------------------------------------------------------------- config

  function baseURL() {
    return global.location && /^https?:$/.test(global.location.protocol) ? global.location.origin : '';
  }

  // normalizeServer resolves the castbridge base URL (relative to the page), without a trailing slash.
  function normalizeServer(server, base) {
    if (base === undefined) base = baseURL();
    if (server === undefined || server === null || server === '') {
      if (!base) throw new CastbridgeError('INVALID_CONFIG', 'setConfig: give castbridge\'s URL, e.g. "https://castbridge.example"');
      server = new URL(base).origin;
    }
    var u;
    try {
      u = new URL(String(server), base || undefined);
    } catch (e) {
      throw new CastbridgeError('INVALID_CONFIG', 'setConfig: "' + server + '" is not a URL (want e.g. "https://castbridge.example")');
    }
    if (u.protocol !== 'http:' && u.protocol !== 'https:') {
      throw new CastbridgeError('INVALID_CONFIG', 'setConfig: castbridge\'s URL must be http(s), not ' + u.protocol);
    }
    return (u.origin + u.pathname).replace(/\/+$/, '');
  }

  // parseConfig accepts nanoStream's positional setConfig arguments or one object.
  function parseConfig(args, base) {
    var a = args[0];
    var c;
    if (a && typeof a === 'object' && !(a instanceof URL)) {
      c = {
        server: a.server,
        userName: a.userName || a.name || '',
        room: a.room || '',
        token: a.token || a.apiKey || '',
      };
    } else {
      c = { server: a, userName: args[1] || '', room: args[2] || '', token: args[3] || args[6] || '' };
    }
    c.server = normalizeServer(c.server, base);
    c.userName = String(c.userName);
    c.room = String(c.room);
    c.token = String(c.token);
    return c;
  }

  function streamLabel(cfg) {
    return [cfg.room, cfg.userName].filter(Boolean).join('/');
  }

  // broadcastBody checks a startBroadcast config and returns the body for POST /broadcast.
  function broadcastBody(config) {
    if (!config || typeof config !== 'object') {
      throw new CastbridgeError('INVALID_REQUEST', 'startBroadcast needs a config: {transcodingTargets: {output: "rtmp://host/app/key"}}');
    }
    var targets = config.targets !== undefined ? config.targets : config.transcodingTargets;
    if (targets === undefined || targets === null) {
      throw new CastbridgeError('INVALID_REQUEST', 'startBroadcast: give transcodingTargets: {output: "rtmp://host/app/key"} (or targets: [...])');
    }
    var list = Array.isArray(targets) ? targets : [targets];
    if (list.length === 0) throw new CastbridgeError('INVALID_REQUEST', 'startBroadcast: no targets');
    list.forEach(function (t, i) {
      if (!t || typeof t.output !== 'string' || t.output.trim() === '') {
        throw new CastbridgeError('INVALID_OUTPUT', 'startBroadcast: target ' + (i + 1) + ' has no output URL (want rtmp://host/app/key)');
      }
    });
    var body = {};
    if (Array.isArray(targets) || config.targets !== undefined) body.targets = list;
    else body.transcodingTargets = targets;
    return { body: body, first: list[0] };
  }

  function number(v) {
    var n = typeof v === 'string' ? parseFloat(v) : v;
    return typeof n === 'number' && isFinite(n) && n > 0 ? n : 0;
  }

  // depth returns how deeply a metadata value nests objects and arrays.
  function depth(v) {
    if (!v || typeof v !== 'object') return 0;
    var d = 0;
    Object.keys(v).forEach(function (k) {
      d = Math.max(d, depth(v[k]));
    });
    return d + 1;
  }

  // ---------------------------------------------------------------- SDP and codecs

  function h264Rank(c) {
    var f = c.sdpFmtpLine || '';
    var pm1 = /packetization-mode=1/.test(f) ? 0 : 10;
    var prof = /profile-level-id=42e0/i.test(f) ? 0 : /profile-level-id=4200/i.test(f) ? 1 : 2;
    return pm1 + prof;
  }

  // preferCodec orders capabilities with the wanted codec first (H.264: packetization-mode 1 and
  // Constrained Baseline first), keeping the others after it.
  function preferCodec(codecs, name) {
    var want = ('video/' + (name || 'H264')).toUpperCase();
    var first = codecs.filter(function (c) {
      return c.mimeType.toUpperCase() === want;
    });
    if (want === 'VIDEO/H264') {
      first.sort(function (a, b) {
        return h264Rank(a) - h264Rank(b);
      });
    }
    var rest = codecs.filter(function (c) {
      return first.indexOf(c) < 0;
    });
    return first.concat(rest);
  }

  // preferCodecInSDP reorders an m=video line's payload types (for browsers without setCodecPreferences).
  function preferCodecInSDP(sdp, name) {
    var lines = sdp.split('\r\n');
    var pts = [];
    lines.forEach(function (l) {
      var m = /^a=rtpmap:(\d+) ([^/]+)\//.exec(l);
      if (m && m[2].toUpperCase() === String(name).toUpperCase()) pts.push(m[1]);
    });
    if (!pts.length) return sdp;
    return lines
      .map(function (l) {
        if (!/^m=video /.test(l)) return l;
        var parts = l.split(' ');
        var head = parts.slice(0, 3);
        var fmts = parts.slice(3);
        return head.concat(pts.filter(function (p) { return fmts.indexOf(p) >= 0; }), fmts.filter(function (p) { return pts.indexOf(p) < 0; })).join(' ');
      })
      .join('\r\n');
  }

  // setStartBitrate adds x-google-start-bitrate (kbit/s) to the H.264 fmtp lines of an answer.
  function setStartBitrate(sdp, kbps) {
    if (!kbps) return sdp;
    var pts = [];
    var re = /^a=rtpmap:(\d+) H264\//gim;
    var m;
    while ((m = re.exec(sdp))) pts.push(m[1]);
    return sdp.replace(/^a=fmtp:(\d+) (.*)$/gm, function (line, pt, params) {
      if (pts.indexOf(pt) < 0 || /x-google-start-bitrate/.test(params)) return line;
      return 'a=fmtp:' + pt + ' ' + params + ';x-google-start-bitrate=' + Math.round(kbps);
    });
  }

  // ---------------------------------------------------------------- helpers

  function quiet(p) {
    p.catch(function () {});
    return p;
  }

  function sleep(ms) {
    return new Promise(function (r) {
      setTimeout(r, ms);
    });
  }

  function waitFor(target, event, done, ms) {
    return new Promise(function (resolve) {
      if (done()) return resolve(true);
      var t = setTimeout(finish, ms);
      function finish() {
        clearTimeout(t);
        target.removeEventListener(event, check);
        resolve(done());
      }
      function check() {
        if (done()) finish();
      }
      target.addEventListener(event, check);
    });
  }

  function stopTrack(t) {
    if (t) t.stop();
  }

  // ---------------------------------------------------------------- RtcUser

  class RtcUser extends Emitter {
    constructor() {
      super();
      this._config = { server: baseURL(), userName: '', room: '', token: '' };
      this._iceServers = [];
      this._optional = { codecs: { videoCodec: 'H264' }, bitrates: { videoSendInitialBitrate: 0, videoSendBitrate: 0 } };
      this._local = null; // {stream, video, audio, element, videoConfig, audioConfig}
      this._session = null; // {id, pc, video, audio, events, connected}
      this._broadcast = null;
      this._muted = { audio: false, video: false };
      this._stats = { enabled: false, interval: 1000, timer: null, prev: null };
      this._mixer = null;
      this._queue = Promise.resolve();
      var self = this;
      this._onPageHide = function () {
        self._teardown(true);
      };
      if (global.addEventListener) {
        global.addEventListener('pagehide', this._onPageHide);
        global.addEventListener('unload', this._onPageHide);
      }
    }

    static get version() {
      return VERSION;
    }

    // checkSupport tells whether this browser can publish to castbridge (WebRTC with H.264 and capture).
    static checkSupport() {
      return RtcUser.supportDetails().supported;
    }
    checkSupport() {
      return RtcUser.checkSupport();
    }

    static supportDetails() {
      var d = {
        webrtc: typeof global.RTCPeerConnection === 'function',
        getUserMedia: !!(global.navigator && navigator.mediaDevices && navigator.mediaDevices.getUserMedia),
        getDisplayMedia: !!(global.navigator && navigator.mediaDevices && navigator.mediaDevices.getDisplayMedia),
        setCodecPreferences: !!(global.RTCRtpTransceiver && RTCRtpTransceiver.prototype.setCodecPreferences),
        replaceTrack: !!(global.RTCRtpSender && RTCRtpSender.prototype.replaceTrack),
        h264: false,
        secureContext: global.isSecureContext !== false,
      };
      try {
        d.h264 = RTCRtpSender.getCapabilities('video').codecs.some(function (c) {
          return /h264/i.test(c.mimeType);
        });
      } catch (e) {
        /* no capabilities API */
      }
      d.supported = d.webrtc && d.getUserMedia && d.h264 && d.replaceTrack && d.secureContext;
      return d;
    }

    setConfig() {
      this._config = parseConfig(Array.prototype.slice.call(arguments));
      return Object.assign({}, this._config, { token: this._config.token ? '****' : '' });
    }

    getConfig() {
      return Object.assign({}, this._config, { token: this._config.token ? '****' : '' });
    }

    setIceServers(iceServers) {
      if (!Array.isArray(iceServers)) throw new CastbridgeError('INVALID_CONFIG', 'setIceServers needs an array of {urls, username?, credential?}');
      this._iceServers = iceServers.slice();
    }

    setOptionalConfig(config) {
      config = config || {};
      if (config.codecs) Object.assign(this._optional.codecs, config.codecs);
      if (config.bitrates) Object.assign(this._optional.bitrates, config.bitrates);
      if (this._session) quiet(this._applyEncoding());
    }

    // isSignedIn is true while a WebRTC session with castbridge is up (between the first
    // startBroadcast and stopPreview).
    isSignedIn() {
      return !!(this._session && this._session.connected);
    }

    get streamId() {
      return this._session ? this._session.id : null;
    }

    get localStream() {
      return this._local ? this._local.stream : null;
    }

    get broadcast() {
      return this._broadcast;
    }

    // checkServer asks castbridge whether it accepts publishers (GET /readyz).
    checkServer(server) {
      var self = this;
      return this._run('CheckServer', async function () {
        var base = server ? normalizeServer(server) : self._config.server;
        var res;
        try {
          res = await fetch(base + '/readyz', { cache: 'no-store' });
        } catch (e) {
          throw toError(e);
        }
        var body = await res.json().catch(function () {
          return {};
        });
        if (!res.ok) {
          throw new CastbridgeError('SERVER_NOT_READY', 'castbridge at ' + base + ' is not ready (' + (body.status || res.status) + ')', res.status);
        }
        return { server: base, ready: true, status: body.status || 'ready' };
      });
    }

    // getDevices lists cameras and microphones (labels appear once capture was allowed).
    getDevices() {
      var self = this;
      return quiet(
        (async function () {
          try {
            var all = await navigator.mediaDevices.enumerateDevices();
            var list = function (kind, what) {
              return all
                .filter(function (d) {
                  return d.kind === kind;
                })
                .map(function (d, i) {
                  return { index: i, id: d.deviceId, name: d.label || what + ' ' + (i + 1), label: d.label, groupId: d.groupId };
                });
            };
            var data = { devices: { videodevices: list('videoinput', 'Camera'), audiodevices: list('audioinput', 'Microphone') } };
            self.emit('ReceivedDeviceList', data);
            return data.devices;
          } catch (e) {
            var err = mediaError(e);
            self.emit('ReceivedDeviceListError', {}, err);
            throw err;
          }
        })()
      );
    }

    // startPreview captures the camera (or the screen with videoDeviceConfig.source = 'screen')
    // and the microphone, and shows them in the <video> with id elementId.
    startPreview(mediaIndexOrId, videoDeviceConfig, audioDeviceConfig, elementId) {
      var self = this;
      return this._run('StartPreview', async function () {
        var vc = videoDeviceConfig === undefined ? { device: true } : videoDeviceConfig;
        var ac = audioDeviceConfig === undefined ? { device: true } : audioDeviceConfig;
        vc = typeof vc === 'object' && vc !== null ? vc : { device: vc };
        ac = typeof ac === 'object' && ac !== null ? ac : { device: ac };
        if (vc.device === false && ac.device === false) {
          throw new CastbridgeError('INVALID_REQUEST', 'startPreview: video and audio are both off');
        }
        var video = vc.device === false ? null : await self._captureVideo(vc);
        var audio = null;
        try {
          audio = ac.device === false ? null : await self._captureAudio(ac);
        } catch (e) {
          stopTrack(video);
          throw e;
        }
        var old = self._local;
        var stream = new MediaStream([video, audio].filter(Boolean));
        var element = elementId ? self._element(elementId) : old && old.element;
        self._local = { mediaId: mediaIndexOrId === undefined ? LOCAL : mediaIndexOrId, stream: stream, video: video, audio: audio, element: element, videoConfig: vc, audioConfig: ac };
        self._applyMute();
        if (self._mixer) self._mixer.setMic(audio);
        if (self._session) {
          await self._replace('video', video);
          await self._replace('audio', self._outgoingAudio());
        }
        if (old) {
          stopTrack(old.video);
          stopTrack(old.audio);
        }
        self._attach();
        return { mediaId: self._local.mediaId, stream: stream, video: video ? video.getSettings() : null, audio: audio ? audio.getSettings() : null };
      });
    }

    // stopPreview ends the gateway session (and any broadcast) and stops the camera and microphone.
    stopPreview(mediaIndexOrId) {
      var self = this;
      return this._run('StopPreview', async function () {
        var id = self._session && self._session.id;
        if (!self._local && !self._session) throw new CastbridgeError('NOT_PREVIEWING', 'stopPreview: no preview is running');
        if (self._session) {
          var s = self._session;
          self._closeSession();
          try {
            await self._api('DELETE', '/v1/streams/' + s.id);
          } catch (e) {
            if (e.code !== 'NOT_FOUND') throw e;
          }
        }
        self._stopLocal();
        return { mediaId: mediaIndexOrId === undefined ? LOCAL : mediaIndexOrId, streamId: id };
      });
    }

    // setVideoDevice switches the camera (or to/from the screen) without renegotiation: the new
    // track replaces the old one in the running session.
    setVideoDevice(mediaIndexOrId, config) {
      var self = this;
      return this._run('SetVideoDevice', async function () {
        config = typeof config === 'object' && config !== null ? config : { device: config };
        if (!self._local) throw new CastbridgeError('NOT_PREVIEWING', 'setVideoDevice: start the preview first');
        var vc = Object.assign({}, self._local.videoConfig.source === 'screen' && !config.source ? {} : self._local.videoConfig, config);
        var track = vc.device === false ? null : await self._captureVideo(vc);
        var old = self._local.video;
        await self._replace('video', track);
        self._swapTrack(old, track);
        self._local.video = track;
        self._local.videoConfig = vc;
        self._applyMute();
        stopTrack(old);
        self._attach();
        return { device: vc.device, source: vc.source || 'camera', settings: track ? track.getSettings() : null };
      });
    }

    // setAudioDevice switches the microphone without renegotiation.
    setAudioDevice(mediaIndexOrId, config) {
      var self = this;
      return this._run('SetAudioDevice', async function () {
        config = typeof config === 'object' && config !== null ? config : { device: config };
        if (!self._local) throw new CastbridgeError('NOT_PREVIEWING', 'setAudioDevice: start the preview first');
        var ac = Object.assign({}, self._local.audioConfig, config);
        var track = ac.device === false ? null : await self._captureAudio(ac);
        var old = self._local.audio;
        self._swapTrack(old, track);
        self._local.audio = track;
        self._local.audioConfig = ac;
        if (self._mixer) self._mixer.setMic(track);
        self._applyMute();
        await self._replace('audio', self._outgoingAudio());
        stopTrack(old);
        return { device: ac.device, settings: track ? track.getSettings() : null };
      });
    }

    // startBroadcast connects to castbridge (once per preview) and starts pushing to the targets.
    startBroadcast(config) {
      var self = this;
      return this._run('StartBroadcast', async function () {
        var b = broadcastBody(config);
        if (!self._local) throw new CastbridgeError('NOT_PREVIEWING', 'startBroadcast: start the preview first (startPreview)');
        // Without a start bit rate Chrome begins at 300 kbit/s and climbs for many seconds: start
        // at the target's rate (at most 2.5 Mbit/s) unless setOptionalConfig says otherwise.
        var startKbps = number(self._optional.bitrates.videoSendInitialBitrate) || Math.min(2500, number(b.first.videobitrate) / 1000);
        await self._connect(startKbps);
        var view = await self._api('POST', '/v1/streams/' + self._session.id + '/broadcast', b.body);
        self._broadcast = view;
        self._target = { videobitrate: number(b.first.videobitrate), framerate: number(b.first.framerate) };
        await self._applyEncoding();
        return { streamId: self._session.id, broadcast: view };
      });
    }

    // stopBroadcast stops pushing (every ingest is told FCUnpublish/deleteStream); the session stays.
    stopBroadcast() {
      var self = this;
      return this._run('StopBroadcast', async function () {
        if (!self._session) throw new CastbridgeError('NOT_BROADCASTING', 'stopBroadcast: no broadcast is running');
        var view = await self._api('DELETE', '/v1/streams/' + self._session.id + '/broadcast');
        self._broadcast = view;
        return { streamId: self._session.id, broadcast: view };
      });
    }

    // sendMetaData writes an AMF0 data message into every running target.
    sendMetaData(handlerName, values) {
      var self = this;
      return this._run('MetaData', async function () {
        if (handlerName !== 'onMetaData' && handlerName !== 'onCuePoint') {
          throw new CastbridgeError('METADATA_INVALID', 'sendMetaData: the handler must be "onMetaData" or "onCuePoint", not ' + JSON.stringify(handlerName));
        }
        if (!values || typeof values !== 'object' || Array.isArray(values)) {
          throw new CastbridgeError('METADATA_INVALID', 'sendMetaData: values must be an object');
        }
        if (depth(values) > 6) throw new CastbridgeError('METADATA_INVALID', 'sendMetaData: values nest deeper than 6 levels');
        if (!self._session) throw new CastbridgeError('NOT_BROADCASTING', 'sendMetaData: no broadcast is running');
        await self._api('POST', '/v1/streams/' + self._session.id + '/metadata', { handlerName: handlerName, values: values });
        return { handlerName: handlerName, values: values };
      }, 'MetaDataSent', 'MetaDataError');
    }

    // enableStats fires ReceivedWebRTCStats every interval ms (minimum 250) with the gateway's
    // snapshot (data.server, GET /stats) and the browser's own sender stats (data.local).
    enableStats(enable, interval) {
      this._stats.enabled = enable !== false;
      this._stats.interval = Math.max(250, number(interval) || 1000);
      if (this._session) this._openEvents();
    }

    muteAudio(mediaIndexOrId, mute) {
      return this._mute('audio', typeof mediaIndexOrId === 'boolean' ? mediaIndexOrId : mute);
    }

    muteVideo(mediaIndexOrId, mute) {
      return this._mute('video', typeof mediaIndexOrId === 'boolean' ? mediaIndexOrId : mute);
    }

    // injectExternalMediaStream mixes the audio of another MediaStream (music, a video element's
    // captureStream(), ...) into the sent audio with WebAudio. {stream: null} removes it.
    injectExternalMediaStream(config) {
      var self = this;
      return this._run('InjectExternalMediaStream', async function () {
        config = config || {};
        var tracks = config.tracks || ['audio'];
        if (tracks.some(function (t) { return t !== 'audio'; })) {
          throw new CastbridgeError('INVALID_REQUEST', 'injectExternalMediaStream: only audio tracks can be injected');
        }
        if (!config.stream) {
          if (self._mixer) {
            self._mixer.close();
            self._mixer = null;
            await self._replace('audio', self._outgoingAudio());
            self._applyMute();
          }
          return { injected: false };
        }
        if (!config.stream.getAudioTracks().length) {
          throw new CastbridgeError('INVALID_REQUEST', 'injectExternalMediaStream: the stream has no audio track');
        }
        if (!self._mixer) self._mixer = new Mixer(self._local && self._local.audio);
        await self._mixer.setExternal(config.stream);
        self._applyMute();
        await self._replace('audio', self._outgoingAudio());
        return { injected: true, track: self._mixer.track };
      });
    }

    // ------------------------------------------------------------ internals

    // _run serialises an operation, fires its Success/Error event and returns a quiet promise.
    _run(op, fn, okName, errName) {
      var self = this;
      var p = this._queue.then(async function () {
        try {
          var data = await fn();
          self.emit(okName || op + 'Success', data);
          return data;
        } catch (e) {
          var err = toError(e);
          self.emit(errName || op + 'Error', {}, err);
          throw err;
        }
      });
      this._queue = p.catch(function () {});
      return quiet(p);
    }

    async _api(method, path, body, extra) {
      var headers = { Accept: 'application/json' };
      if (body !== undefined) headers['Content-Type'] = 'application/json';
      if (this._config.token) headers.Authorization = 'Bearer ' + this._config.token;
      if (!this._config.server) throw new CastbridgeError('INVALID_CONFIG', 'call setConfig(server, ...) first');
      var res;
      try {
        res = await fetch(this._config.server + path, Object.assign({ method: method, headers: headers, body: body === undefined ? undefined : JSON.stringify(body), cache: 'no-store' }, extra));
      } catch (e) {
        throw toError(e);
      }
      if (!res.ok) throw await apiError(res);
      if (res.status === 204) return null;
      var text = await res.text();
      return text ? JSON.parse(text) : null;
    }

    _element(id) {
      var el = typeof id === 'string' ? global.document && document.getElementById(id) : id;
      if (!el) throw new CastbridgeError('INVALID_REQUEST', 'startPreview: no element with id "' + id + '"');
      return el;
    }

    _attach() {
      var l = this._local;
      if (!l || !l.element) return;
      var el = l.element;
      var shown = new MediaStream(l.video ? [l.video] : []);
      el.muted = true; // never play the microphone back into the room
      el.playsInline = true;
      el.autoplay = true;
      el.srcObject = shown;
      var p = el.play && el.play();
      if (p && p.catch) p.catch(function () {});
    }

    _swapTrack(old, track) {
      var s = this._local.stream;
      if (old) s.removeTrack(old);
      if (track) s.addTrack(track);
    }

    async _resolveDevice(kind, device) {
      if (device === undefined || device === true || device === null) return undefined;
      if (typeof device === 'string') return device;
      if (typeof device === 'number') {
        var all = (await navigator.mediaDevices.enumerateDevices()).filter(function (d) {
          return d.kind === kind;
        });
        if (!all[device]) throw new CastbridgeError('DEVICE_NOT_FOUND', 'no ' + (kind === 'videoinput' ? 'camera' : 'microphone') + ' with index ' + device + ' (there are ' + all.length + ')');
        return all[device].deviceId || undefined;
      }
      throw new CastbridgeError('INVALID_REQUEST', 'device must be true, false, an index or a device id');
    }

    async _captureVideo(vc) {
      var c = {};
      if (number(vc.width)) c.width = { ideal: number(vc.width) };
      if (number(vc.height)) c.height = { ideal: number(vc.height) };
      if (number(vc.framerate)) c.frameRate = { ideal: number(vc.framerate) };
      var self = this;
      try {
        var stream;
        if (vc.source === 'screen') {
          if (!navigator.mediaDevices.getDisplayMedia) throw new CastbridgeError('NOT_SUPPORTED', 'this browser cannot share the screen');
          stream = await navigator.mediaDevices.getDisplayMedia({ video: Object.keys(c).length ? c : true, audio: false });
        } else {
          var id = await this._resolveDevice('videoinput', vc.device);
          if (id) c.deviceId = { exact: id };
          stream = await navigator.mediaDevices.getUserMedia({ video: Object.keys(c).length ? c : true });
        }
        var track = stream.getVideoTracks()[0];
        track.contentHint = vc.source === 'screen' ? 'detail' : 'motion';
        if (vc.source === 'screen') {
          track.addEventListener('ended', function () {
            if (self._local && self._local.video === track) self.emit('ScreenShareEnded', { mediaId: self._local.mediaId });
          });
        }
        return track;
      } catch (e) {
        throw mediaError(e);
      }
    }

    async _captureAudio(ac) {
      var c = { echoCancellation: ac.echoCancellation !== false, noiseSuppression: ac.noiseSuppression !== false, autoGainControl: ac.autoGainControl !== false };
      try {
        var id = await this._resolveDevice('audioinput', ac.device);
        if (id) c.deviceId = { exact: id };
        var stream = await navigator.mediaDevices.getUserMedia({ audio: c });
        return stream.getAudioTracks()[0];
      } catch (e) {
        throw mediaError(e);
      }
    }

    _outgoingAudio() {
      if (this._mixer) return this._mixer.track;
      return this._local ? this._local.audio : null;
    }

    _applyMute() {
      var m = this._muted;
      var l = this._local;
      if (l && l.video) l.video.enabled = !m.video;
      if (l && l.audio) l.audio.enabled = !m.audio;
      if (this._mixer) this._mixer.track.enabled = !m.audio;
    }

    _mute(kind, mute) {
      var self = this;
      var op = kind === 'audio' ? 'MuteAudio' : 'MuteVideo';
      return this._run(op, async function () {
        self._muted[kind] = mute !== false;
        self._applyMute();
        var body = {};
        body[kind + 'Muted'] = self._muted[kind];
        if (self._session) await self._api('PATCH', '/v1/streams/' + self._session.id, body);
        return { kind: kind, muted: self._muted[kind] };
      });
    }

    async _replace(kind, track) {
      var s = this._session;
      var sender = s && s[kind];
      if (!sender) return;
      if (track && sender.track === track) return;
      await sender.replaceTrack(track);
    }

    // _connect creates the gateway session: H.264 preferred, complete ICE gathering, one POST.
    async _connect(startKbps) {
      if (this._session && this._session.connected) return;
      if (this._session) this._closeSession();
      var l = this._local;
      var pc = new RTCPeerConnection({ iceServers: this._iceServers, bundlePolicy: 'max-bundle' });
      var s = { id: null, pc: pc, video: null, audio: null, connected: false, events: null, renegotiations: 0 };
      this._session = s;
      var streams = [l.stream];
      var videoCodec = this._optional.codecs.videoCodec || 'H264';
      var useMunge = false;
      if (l.video) {
        var tv = pc.addTransceiver(l.video, { direction: 'sendonly', streams: streams });
        s.video = tv.sender;
        try {
          var caps = RTCRtpReceiver.getCapabilities('video') || RTCRtpSender.getCapabilities('video');
          tv.setCodecPreferences(preferCodec(caps.codecs, videoCodec));
        } catch (e) {
          useMunge = true;
        }
      }
      var at = this._outgoingAudio();
      if (at) s.audio = pc.addTransceiver(at, { direction: 'sendonly', streams: streams }).sender;
      pc.addEventListener('negotiationneeded', function () {
        s.renegotiations++;
      });
      var self = this;
      try {
        var offer = await pc.createOffer();
        if (useMunge) offer = { type: 'offer', sdp: preferCodecInSDP(offer.sdp, videoCodec) };
        await pc.setLocalDescription(offer);
        await waitFor(pc, 'icegatheringstatechange', function () {
          return pc.iceGatheringState === 'complete';
        }, 5000);
        var body = { sdp: pc.localDescription.sdp };
        var label = streamLabel(this._config);
        if (label) body.name = label;
        var created = await this._api('POST', '/v1/streams', body);
        if (this._session !== s) throw new CastbridgeError('ABORTED', 'the session was stopped while connecting');
        s.id = created.id;
        var answer = setStartBitrate(created.sdp, startKbps);
        await pc.setRemoteDescription({ type: 'answer', sdp: answer });
        var ok = await waitFor(pc, 'connectionstatechange', function () {
          return pc.connectionState === 'connected' || pc.connectionState === 'failed' || pc.connectionState === 'closed';
        }, 15000);
        if (!ok || pc.connectionState !== 'connected') {
          throw new CastbridgeError('ICE_FAILED', 'could not reach castbridge\'s media port (ICE ' + pc.connectionState + '): check that UDP to the gateway is open and that --ice-ips names an address this browser can reach');
        }
      } catch (e) {
        if (this._session === s) {
          this._closeSession();
          if (s.id) quiet(this._api('DELETE', '/v1/streams/' + s.id));
        }
        throw e;
      }
      s.connected = true;
      pc.addEventListener('connectionstatechange', function () {
        if (pc.connectionState === 'failed' && self._session === s) {
          s.connected = false;
          self.emit('ConnectionFailed', { streamId: s.id }, new CastbridgeError('ICE_FAILED', 'the WebRTC connection to castbridge failed'));
        }
      });
      if (this._muted.audio || this._muted.video) {
        await this._api('PATCH', '/v1/streams/' + s.id, { audioMuted: this._muted.audio, videoMuted: this._muted.video });
      }
      this._openEvents();
    }

    async _applyEncoding() {
      var s = this._session;
      if (!s || !s.video) return;
      var p = s.video.getParameters();
      if (!p.encodings || !p.encodings.length) return;
      var caps = [number(this._optional.bitrates.videoSendBitrate) * 1000, this._target && this._target.videobitrate].filter(Boolean);
      var e = p.encodings[0];
      if (caps.length) e.maxBitrate = Math.min.apply(null, caps);
      if (this._target && this._target.framerate) e.maxFramerate = this._target.framerate;
      try {
        await s.video.setParameters(p);
      } catch (err) {
        /* an encoder that refuses the cap still works: castbridge caps it with REMB */
      }
    }

    // _openEvents (re)subscribes to GET /events (SSE over fetch, so the bearer token works).
    _openEvents() {
      var s = this._session;
      if (!s || !s.id) return;
      if (s.events) s.events.abort();
      clearInterval(this._stats.timer);
      this._stats.timer = null;
      var ctrl = new AbortController();
      s.events = ctrl;
      var self = this;
      var url = '/v1/streams/' + s.id + '/events' + (this._stats.enabled ? '?stats=' + this._stats.interval : '');
      (async function () {
        var backoff = 500;
        var parser = new SSEParser(function (ev) {
          if (self._session === s) self._serverEvent(ev);
        });
        while (!ctrl.signal.aborted && self._session === s) {
          try {
            var headers = { Accept: 'text/event-stream' };
            if (self._config.token) headers.Authorization = 'Bearer ' + self._config.token;
            if (parser.lastEventId) headers['Last-Event-ID'] = parser.lastEventId; // resume where it broke off
            var res = await fetch(self._config.server + url, { headers: headers, signal: ctrl.signal, cache: 'no-store' });
            if (res.status === 404) {
              // A gateway without the events endpoint: poll the stats snapshot instead.
              res.body && res.body.cancel();
              if (self._stats.enabled) self._pollStats(s, ctrl);
              return;
            }
            if (!res.ok) throw await apiError(res);
            backoff = 500;
            await readSSE(res, null, parser);
          } catch (e) {
            if (ctrl.signal.aborted) return;
          }
          parser.end();
          if (parser.retry) backoff = parser.retry;
          await sleep(backoff);
          backoff = Math.min(backoff * 2, 10000);
        }
      })();
    }

    _pollStats(s, ctrl) {
      var self = this;
      var tick = async function () {
        if (ctrl.signal.aborted || self._session !== s) return clearInterval(self._stats.timer);
        try {
          var snap = await self._api('GET', '/v1/streams/' + s.id + '/stats');
          self._emitStats(snap);
        } catch (e) {
          /* the next tick tries again */
        }
      };
      this._stats.timer = setInterval(tick, this._stats.interval);
    }

    _serverEvent(ev) {
      var data = null;
      try {
        data = ev.data ? JSON.parse(ev.data) : {};
      } catch (e) {
        data = { raw: ev.data };
      }
      var name = ev.event;
      this.emit('ServerEvent', { name: name, data: data });
      if (name === 'ReceivedWebRTCStats') return this._emitStats(data);
      this._trackTargets(name, data);
      // The SDK fires these itself from the calls it makes; the server's copies come as ServerEvent.
      if (/^(Start|Stop)Broadcast(Success|Error)$|^MetaDataSent$/.test(name)) return;
      var err = data && data.code && data.message && /Failed|Error|Disconnected|Closed/.test(name) ? new CastbridgeError(data.code, data.message) : null;
      this.emit(name, data, err);
      if (name === 'StreamClosed') {
        this._closeSession();
      }
    }

    _trackTargets(name, data) {
      var b = this._broadcast;
      if (!b || !data) return;
      if (name === 'StopBroadcastSuccess') b.state = 'stopped';
      var id = data.id || data.targetId || (data.target && data.target.id);
      if (!id || !b.targets) return;
      var t = b.targets.find(function (x) {
        return x.id === id;
      });
      var state = { TargetConnected: 'live', TargetReconnecting: 'reconnecting', TargetFailed: 'failed' }[name];
      if (t && state) t.state = state;
    }

    async _emitStats(server) {
      var local = await this._localStats();
      this.emit('ReceivedWebRTCStats', { streamId: this.streamId, at: new Date().toISOString(), server: server || null, local: local });
    }

    // _localStats summarises the browser's outbound RTP: bit rates since the last call, fps, size.
    async _localStats() {
      var s = this._session;
      if (!s) return null;
      var out = { videoBitrate: 0, audioBitrate: 0, framerate: 0, width: 0, height: 0, framesEncoded: 0, rttMs: null, audioLevel: null, qualityLimitationReason: null, codec: null };
      var report;
      try {
        report = await s.pc.getStats();
      } catch (e) {
        return null;
      }
      var now = performance.now();
      var prev = this._stats.prev;
      var bytes = { video: 0, audio: 0 };
      var codecs = {};
      report.forEach(function (r) {
        if (r.type === 'codec') codecs[r.id] = r.mimeType;
      });
      report.forEach(function (r) {
        if (r.type === 'outbound-rtp' && (r.kind === 'video' || r.kind === 'audio')) {
          bytes[r.kind] += r.bytesSent || 0;
          if (r.kind === 'video') {
            out.framerate = r.framesPerSecond || 0;
            out.width = r.frameWidth || 0;
            out.height = r.frameHeight || 0;
            out.framesEncoded = r.framesEncoded || 0;
            out.qualityLimitationReason = r.qualityLimitationReason || null;
            out.codec = codecs[r.codecId] || null;
          }
        } else if (r.type === 'candidate-pair' && r.nominated && r.currentRoundTripTime !== undefined) {
          out.rttMs = r.currentRoundTripTime * 1000;
        } else if (r.type === 'media-source' && r.kind === 'audio' && r.audioLevel !== undefined) {
          out.audioLevel = r.audioLevel;
        }
      });
      if (prev && prev.pc === s.pc && now > prev.t) {
        var dt = (now - prev.t) / 1000;
        out.videoBitrate = Math.max(0, Math.round(((bytes.video - prev.video) * 8) / dt));
        out.audioBitrate = Math.max(0, Math.round(((bytes.audio - prev.audio) * 8) / dt));
      }
      out.bytesSent = bytes.video + bytes.audio;
      this._stats.prev = { pc: s.pc, t: now, video: bytes.video, audio: bytes.audio };
      return out;
    }

    _closeSession() {
      var s = this._session;
      if (!s) return;
      this._session = null;
      if (s.events) s.events.abort();
      clearInterval(this._stats.timer);
      this._stats.timer = null;
      this._stats.prev = null;
      try {
        s.pc.close();
      } catch (e) {
        /* already closed */
      }
      if (this._broadcast && this._broadcast.state !== 'stopped') this._broadcast.state = 'stopped';
    }

    _stopLocal() {
      var l = this._local;
      this._local = null;
      if (this._mixer) {
        this._mixer.close();
        this._mixer = null;
      }
      if (!l) return;
      stopTrack(l.video);
      stopTrack(l.audio);
      if (l.element) l.element.srcObject = null;
    }

    // _teardown runs when the page goes away: end the session on the gateway (keepalive fetch, so
    // it outlives the page) and release the devices.
    _teardown() {
      var s = this._session;
      if (s && s.id) {
        var headers = {};
        if (this._config.token) headers.Authorization = 'Bearer ' + this._config.token;
        try {
          fetch(this._config.server + '/v1/streams/' + s.id, { method: 'DELETE', headers: headers, keepalive: true }).catch(function () {});
        } catch (e) {
          /* the page is going away */
        }
      }
      this._closeSession();
      this._stopLocal();
    }

    // destroy releases everything and removes the page listeners.
    destroy() {
      this._teardown();
      if (global.removeEventListener) {
        global.removeEventListener('pagehide', this._onPageHide);
        global.removeEventListener('unload', this._onPageHide);
      }
      this.off();
    }
  }

  // Mixer sums the microphone and an external stream's audio into one track with WebAudio.
  class Mixer {
    constructor(mic) {
      var AC = global.AudioContext || global.webkitAudioContext;
      if (!AC) throw new CastbridgeError('NOT_SUPPORTED', 'this browser has no WebAudio');
      this.ctx = new AC();
      this.dest = this.ctx.createMediaStreamDestination();
      this.track = this.dest.stream.getAudioTracks()[0];
      this.mic = null;
      this.ext = null;
      this.setMic(mic);
    }
    setMic(track) {
      if (this.mic) this.mic.disconnect();
      this.mic = track ? this.ctx.createMediaStreamSource(new MediaStream([track])) : null;
      if (this.mic) this.mic.connect(this.dest);
    }
    async setExternal(stream) {
      if (this.ext) this.ext.disconnect();
      this.ext = this.ctx.createMediaStreamSource(stream);
      this.ext.connect(this.dest);
      if (this.ctx.state === 'suspended') await this.ctx.resume().catch(function () {});
    }
    close() {
      if (this.mic) this.mic.disconnect();
      if (this.ext) this.ext.disconnect();
      this.track.stop();
      this.ctx.close().catch(function () {});
    }
  }

  return {
    RtcUser: RtcUser,
    CastbridgeError: CastbridgeError,
    VERSION: VERSION,
    internals: {
      Emitter: Emitter,
      SSEParser: SSEParser,
      readSSE: readSSE,
      apiError: apiError,
      mediaError: mediaError,
      toError: toError,
      normalizeServer: normalizeServer,
      parseConfig: parseConfig,
      broadcastBody: broadcastBody,
      preferCodec: preferCodec,
      preferCodecInSDP: preferCodecInSDP,
      setStartBitrate: setStartBitrate,
      depth: depth,
    },
  };
})(globalThis);
globalThis.RtcUser = globalThis.RtcUser || CastbridgeSDK.RtcUser;
var RtcUser = CastbridgeSDK.RtcUser;
var CastbridgeError = CastbridgeSDK.CastbridgeError;
// castbridge:module-exports (a classic <script> load gets the file without the lines below)
export { RtcUser, CastbridgeError, CastbridgeSDK };
export default RtcUser;
