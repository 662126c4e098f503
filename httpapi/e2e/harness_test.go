package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/castbridge/castbridge/gateway"
	"github.com/castbridge/castbridge/gateway/events"
	"github.com/castbridge/castbridge/gateway/gatewaytest"
	"github.com/castbridge/castbridge/gateway/rtmpout"
	"github.com/castbridge/castbridge/httpapi"
	"github.com/castbridge/castbridge/httpapi/auth"
	"github.com/castbridge/castbridge/transmux/format/mediafile"
	"github.com/castbridge/castbridge/transmux/rtmp/ingest"
)

// harness runs a real gateway (ICE on loopback UDP), its HTTP API and an
// in-process go-rtmp ingest that records everything it is sent.
type harness struct {
	t      *testing.T
	m      *gateway.Manager
	srv    *httptest.Server
	ingest *ingest.Server
	rtmpIn *ingest.Server // RTMP in (harnessOptions.rtmpIn), nil without
	rec    *recorder
	logs   *gatewaytest.SyncBuffer
	log    *slog.Logger
}

type harnessOptions struct {
	keyframeInterval               time.Duration
	apiKey                         string
	mediaTimeout                   time.Duration
	reconnect                      rtmpout.ReconnectPolicy
	relays                         func(ingestURL string) []gateway.Relay
	iceTCP                         bool     // passive ICE-TCP on a free port
	iceIPs                         []net.IP // advertised addresses; nil means 127.0.0.1
	rtmpsRootCAs                   *x509.CertPool
	denyPrivate                    bool          // --deny-private-outputs
	allowOutputs                   []string      // --allow-outputs
	maxStreams, maxTargets, maxSSE int           // 0: the gateway's defaults
	iceDisconnected                time.Duration // ICE's disconnected timeout; 0: pion's
	noSRTPFastPath                 bool          // --srtp-fast-path=false
	tokenKey                       []byte        // --token-secret (an HMAC secret): publish tokens
	eventSink                      events.Sink   // every stream's events (webhooks); nil: none
	iceUDPPort                     int           // 0: a free one
	stun                           string        // --stun; the host's addresses are advertised (no iceIPs)
	stunTimeout                    time.Duration // 0: the gateway's
	videoCodecs                    []string      // --video-codecs; nil: h264
	rtmpIn                         bool          // a built-in ingest routing relay keys to the gateway (RTMP in)
	rtmpResume                     time.Duration // --rtmp-resume; 0: the gateway's
	rtmpInTLS                      *tls.Config   // RTMP in over TLS (RTMPS)
}

func newHarness(t *testing.T, o harnessOptions) *harness {
	t.Helper()
	if o.keyframeInterval == 0 {
		o.keyframeInterval = 2 * time.Second
	}
	logs := &gatewaytest.SyncBuffer{}
	log := slog.New(slog.NewTextHandler(io.MultiWriter(newTestWriter(t), logs), &slog.HandlerOptions{Level: slog.LevelDebug}))
	ing, rec := startIngest(t, "127.0.0.1:0", log)
	var relays []gateway.Relay
	if o.relays != nil {
		relays = o.relays("rtmp://" + ing.Addr().String() + "/live")
	}
	if o.iceIPs == nil && o.stun == "" {
		o.iceIPs = []net.IP{net.IPv4(127, 0, 0, 1).To4()}
	}
	tcpPort := 0
	if o.iceTCP {
		tcpPort = -1
	}
	m, err := gateway.NewManager(gateway.Config{
		ICEUDPPort:             o.iceUDPPort,
		ICETCPPort:             tcpPort,
		ICEIPs:                 o.iceIPs,
		STUNServer:             o.stun,
		STUNTimeout:            o.stunTimeout,
		KeyframeInterval:       o.keyframeInterval,
		PublishTimeout:         5 * time.Second,
		MediaTimeout:           o.mediaTimeout,
		Reconnect:              o.reconnect,
		RTMPSRootCAs:           o.rtmpsRootCAs,
		Relays:                 relays,
		DenyPrivateOutputs:     o.denyPrivate,
		AllowOutputs:           o.allowOutputs,
		MaxStreams:             o.maxStreams,
		MaxTargets:             o.maxTargets,
		MaxEventSubscribers:    o.maxSSE,
		ICEDisconnectedTimeout: o.iceDisconnected,
		NoSRTPFastPath:         o.noSRTPFastPath,
		EventSink:              o.eventSink,
		VideoCodecs:            o.videoCodecs,
		RTMPResume:             o.rtmpResume,
		Logger:                 log,
	})
	if err != nil {
		t.Fatal(err)
	}
	var tokens *auth.Verifier
	if o.tokenKey != nil {
		if tokens, err = auth.NewVerifier(auth.VerifierConfig{Key: o.tokenKey}); err != nil {
			t.Fatal(err)
		}
	}
	// CORS for any origin: the browser WHIP test publishes from a page on another origin.
	srv := httptest.NewServer(httpapi.New(httpapi.Config{Manager: m, APIKey: o.apiKey, Tokens: tokens, Logger: log, KeepAlive: 200 * time.Millisecond,
		CORSOrigins: []string{"*"}}))
	m.AddOwnPort(srv.Listener.Addr().(*net.TCPAddr).Port)
	h := &harness{t: t, m: m, srv: srv, ingest: ing, rec: rec, logs: logs, log: log}
	t.Cleanup(func() {
		sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer scancel()
		if err := m.Shutdown(sctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		srv.Close()
	})
	if o.rtmpIn {
		h.rtmpIn = startRTMPIn(t, m, o.rtmpInTLS, log)
	}
	return h
}

// serveIngest serves ing until the test ends, then closes it and waits
// for Serve to return.
func serveIngest(t *testing.T, ing *ingest.Server) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = ing.Serve(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		_ = ing.Close()
		<-done
	})
}

// startRTMPIn runs the gateway's built-in ingest as cmd/castbridge does:
// publishes with a relay key become streams (Manager.RouteRTMP). It closes
// before the manager shuts down (cleanups run last first).
func startRTMPIn(t *testing.T, m *gateway.Manager, tlsCfg *tls.Config, log *slog.Logger) *ingest.Server {
	t.Helper()
	ing, err := ingest.Listen(ingest.Config{Addr: "127.0.0.1:0", Route: m.RouteRTMP, TLS: tlsCfg,
		Logger: log.With("component", "rtmp-in")})
	if err != nil {
		t.Fatal(err)
	}
	serveIngest(t, ing)
	return ing
}

// rtmpInURL is the RTMP-in application URL ("rtmps://" with rtmpInTLS).
func (h *harness) rtmpInURL(tls bool) string {
	scheme := "rtmp"
	if tls {
		scheme = "rtmps"
	}
	return scheme + "://" + h.rtmpIn.Addr().String() + "/live"
}

// startIngest runs an in-process ingest with a recorder until the test ends.
func startIngest(t *testing.T, addr string, log *slog.Logger) (*ingest.Server, *recorder) {
	t.Helper()
	rec := newRecorder()
	ing, err := ingest.Listen(ingest.Config{
		Addr:      addr,
		OnPublish: rec.onPublish,
		OnMessage: rec.onMessage,
		OnCommand: rec.onCommand,
		Logger:    log.With("component", "ingest", "addr", addr),
	})
	if err != nil {
		t.Fatal(err)
	}
	serveIngest(t, ing)
	return ing, rec
}

// ingestURL is the in-process ingest's application URL.
func (h *harness) ingestURL() string { return "rtmp://" + h.ingest.Addr().String() + "/live" }

// testWriter sends log lines to t.Log until the test ends. pion runs some
// callbacks (ICE state changes) on goroutines of its own that may still
// log a moment after a stream closed; t.Log then would panic.
type testWriter struct {
	t    *testing.T
	mu   sync.Mutex
	done bool
}

func newTestWriter(t *testing.T) *testWriter {
	w := &testWriter{t: t}
	t.Cleanup(func() {
		w.mu.Lock()
		w.done = true
		w.mu.Unlock()
	})
	return w
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

// call makes an API request with a JSON body (nil for none) and decodes the
// JSON answer into out (may be nil). It returns the status and raw body.
func (h *harness) call(method, path string, body any, out any) (int, []byte) {
	h.t.Helper()
	var rd io.Reader
	if body != nil {
		if s, ok := body.(string); ok {
			rd = strings.NewReader(s)
		} else {
			b, err := json.Marshal(body)
			if err != nil {
				h.t.Fatal(err)
			}
			rd = bytes.NewReader(b)
		}
	}
	req, err := http.NewRequest(method, h.srv.URL+path, rd)
	if err != nil {
		h.t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if out != nil && len(raw) > 0 {
		if err := json.Unmarshal(raw, out); err != nil {
			h.t.Fatalf("%s %s: decode %q: %v", method, path, raw, err)
		}
	}
	return resp.StatusCode, raw
}

type apiError struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// expectError asserts an error answer with the given status and code.
func (h *harness) expectError(method, path string, body any, status int, code string) apiError {
	h.t.Helper()
	var e apiError
	got, raw := h.call(method, path, body, &e)
	if got != status || e.Error.Code != code {
		h.t.Errorf("%s %s: got %d %s, want %d %s (%s)", method, path, got, e.Error.Code, status, code, raw)
	}
	return e
}

type streamView struct {
	ID     string `json:"id"`
	Name   string `json:"name"`
	SDP    string `json:"sdp"`
	State  string `json:"state"`
	Source string `json:"source"`
	Video  *struct {
		Codec   string  `json:"codec"`
		Profile string  `json:"profile"`
		Width   int     `json:"width"`
		Height  int     `json:"height"`
		FPS     float64 `json:"fps"`
	} `json:"video"`
	Broadcast *broadcastView `json:"broadcast"`
}

type broadcastView struct {
	State   string `json:"state"`
	Targets []struct {
		ID     string                          `json:"id"`
		Output string                          `json:"output"`
		State  string                          `json:"state"`
		Error  *struct{ Code, Message string } `json:"error"`
	} `json:"targets"`
}

// publish starts a test publisher and a stream for it, and waits until the
// gateway sees its media.
func (h *harness) publish(ctx context.Context, cfg gatewaytest.PublisherConfig) (*gatewaytest.Publisher, string) {
	h.t.Helper()
	pub, err := gatewaytest.NewPublisher(cfg)
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { _ = pub.Close() })
	offer, err := pub.Offer(ctx)
	if err != nil {
		h.t.Fatal(err)
	}
	var sv streamView
	if st, raw := h.call("POST", "/v1/streams", map[string]any{"sdp": offer, "name": "test"}, &sv); st != http.StatusCreated {
		h.t.Fatalf("create stream: %d %s", st, raw)
	}
	if err := pub.SetAnswer(sv.SDP); err != nil {
		h.t.Fatal(err)
	}
	pub.Start(ctx)
	h.waitState(sv.ID, "connected", 10*time.Second)
	return pub, sv.ID
}

func (h *harness) waitState(id, state string, timeout time.Duration) streamView {
	h.t.Helper()
	deadline := time.Now().Add(timeout)
	var sv streamView
	for time.Now().Before(deadline) {
		h.call("GET", "/v1/streams/"+id, nil, &sv)
		if sv.State == state {
			return sv
		}
		time.Sleep(50 * time.Millisecond)
	}
	h.t.Fatalf("stream %s: state %q, want %q", id, sv.State, state)
	return sv
}

// recorder keeps what the in-process ingest received, per stream name.
type recorder struct {
	mu       sync.Mutex
	publish  map[string]ingest.PublishInfo
	messages map[string][]received
	reject   map[string]string // stream name -> onStatus code to refuse with
	commands map[string][]string
	changed  chan struct{}
}

type received struct {
	msg ingest.Message
	at  time.Time
}

func newRecorder() *recorder {
	return &recorder{publish: map[string]ingest.PublishInfo{}, messages: map[string][]received{}, reject: map[string]string{}, commands: map[string][]string{}, changed: make(chan struct{}, 1)}
}

func (r *recorder) onPublish(p ingest.PublishInfo) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if code, ok := r.reject[p.Name]; ok {
		return &ingest.Reject{Code: code, Description: "refused by the test"}
	}
	r.publish[p.Name] = p
	return nil
}

func (r *recorder) onMessage(stream string, m ingest.Message) {
	now := time.Now()
	r.mu.Lock()
	r.messages[stream] = append(r.messages[stream], received{msg: m, at: now})
	r.mu.Unlock()
}

func (r *recorder) onCommand(stream, command string) {
	r.mu.Lock()
	r.commands[stream] = append(r.commands[stream], command)
	r.mu.Unlock()
}

func (r *recorder) commandsOf(stream string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.commands[stream]...)
}

func (r *recorder) rejectName(name, code string) {
	r.mu.Lock()
	r.reject[name] = code
	r.mu.Unlock()
}

func (r *recorder) get(stream string) (ingest.PublishInfo, []received) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.publish[stream], append([]received(nil), r.messages[stream]...)
}

func testdata(name string) string { return mediafile.TestdataPath(name) }

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return !errors.Is(err, os.ErrNotExist)
}

type statsView struct {
	NACKs, PLIs          uint64
	VideoJitterMs, RTTMs float64
	AudioLost            uint64
	AudioJitterMs        float64
}

func (h *harness) streamStats(id string) statsView {
	h.t.Helper()
	var st struct {
		Inbound struct {
			Video struct {
				NACKs    uint64  `json:"nacksSent"`
				PLIs     uint64  `json:"plisSent"`
				JitterMs float64 `json:"jitterMs"`
			} `json:"video"`
			Audio struct {
				Lost     uint64  `json:"packetsLost"`
				JitterMs float64 `json:"jitterMs"`
			} `json:"audio"`
			RTTMs float64 `json:"rttMs"`
		} `json:"inbound"`
	}
	if code, raw := h.call("GET", "/v1/streams/"+id+"/stats", nil, &st); code != http.StatusOK {
		h.t.Fatalf("stats: %d %s", code, raw)
	}
	return statsView{NACKs: st.Inbound.Video.NACKs, PLIs: st.Inbound.Video.PLIs, VideoJitterMs: st.Inbound.Video.JitterMs,
		RTTMs: st.Inbound.RTTMs, AudioLost: st.Inbound.Audio.Lost, AudioJitterMs: st.Inbound.Audio.JitterMs}
}

func toJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// offerWithBroadcast creates a test publisher (video and audio, looping) and
// a stream for it whose broadcast goes to output; the answer is not applied
// yet, so the caller can route it (through a relay, say) and listen first.
func (h *harness) offerWithBroadcast(ctx context.Context, target map[string]any) (*gatewaytest.Publisher, streamView) {
	h.t.Helper()
	pub, err := gatewaytest.NewPublisher(gatewaytest.PublisherConfig{VideoFile: testdata("video.h264"), AudioFile: testdata("audio.ogg"), Loop: true})
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { _ = pub.Close() })
	offer, err := pub.Offer(ctx)
	if err != nil {
		h.t.Fatal(err)
	}
	var sv streamView
	if st, raw := h.call("POST", "/v1/streams", map[string]any{"sdp": offer, "broadcast": map[string]any{"transcodingTargets": target}}, &sv); st != http.StatusCreated {
		h.t.Fatalf("create: %d %s", st, raw)
	}
	return pub, sv
}

// checkFastPath: the SRTP fast path decrypted at least min packets of the
// gateway's publishers (which proves it read their DTLS and SRTP: other
// stacks' handshakes, profiles and packets) and none failed to
// authenticate; the socket reader handed at least minInline of them to
// their pipelines itself.
func (h *harness) checkFastPath(min, minInline uint64) {
	h.t.Helper()
	mt := h.m.Metrics()
	h.t.Logf("SRTP fast path: %d packets decrypted (%d handled on the socket reader), %d failed to authenticate", mt.FastPathPackets, mt.FastPathInline, mt.FastPathAuthFailures)
	if mt.FastPathPackets < min || mt.FastPathAuthFailures != 0 {
		h.t.Errorf("SRTP fast path: %d packets decrypted (want at least %d), %d failed to authenticate", mt.FastPathPackets, min, mt.FastPathAuthFailures)
	}
	if mt.FastPathInline < minInline {
		h.t.Errorf("SRTP fast path: %d packets handled on the socket reader, want at least %d", mt.FastPathInline, minInline)
	}
}
