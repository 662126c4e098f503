package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"go.uber.org/goleak"

	"github.com/castbridge/castbridge/gateway/gatewaytest"
	"github.com/castbridge/castbridge/gateway/webhook"
	"github.com/castbridge/castbridge/httpapi/auth"
	"github.com/castbridge/castbridge/transmux/format/mediafile"
	"github.com/castbridge/castbridge/transmux/rtmp/ingest"
	"github.com/castbridge/castbridge/transmux/rtmp/rtmppush"
)

func TestOptionsFromFlagsAndEnvironment(t *testing.T) {
	env := map[string]string{
		"CASTBRIDGE_HTTP_ADDR":         ":9000",
		"CASTBRIDGE_KEYFRAME_INTERVAL": "3s",
		"CASTBRIDGE_API_KEY":           "from-env",
		"CASTBRIDGE_ICE_IPS":           "127.0.0.1",
	}
	o, err := parseOptions([]string{"--http-addr", ":7000", "--local-ingest="}, func(k string) string { return env[k] }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.httpAddr != ":7000" {
		t.Errorf("a flag must win over its variable: http-addr %q", o.httpAddr)
	}
	if o.keyframeInterval != 3*time.Second || o.apiKey != "from-env" || o.iceIPs != "127.0.0.1" {
		t.Errorf("variables not applied: %+v", o)
	}
	if o.localIngest != "" {
		t.Errorf("an empty --local-ingest must disable it, got %q", o.localIngest)
	}
	if o.iceUDPPort != 8189 || o.recordingsDir != "./recordings" {
		t.Errorf("defaults: %+v", o)
	}
	if _, err := parseOptions(nil, func(k string) string {
		if k == "CASTBRIDGE_KEYFRAME_INTERVAL" {
			return "soon"
		}
		return ""
	}, io.Discard); err == nil || !strings.Contains(err.Error(), "CASTBRIDGE_KEYFRAME_INTERVAL") {
		t.Errorf("a bad variable must be named in the error: %v", err)
	}
	if _, err := parseIPs("127.0.0.1, 10.0.0.x"); err == nil {
		t.Error("a bad --ice-ips entry must be an error")
	}
}

// --gc-percent: 50 by default, a flag or CASTBRIDGE_GC_PERCENT sets it, and
// GOGC in the environment is left to the runtime unless one of those is
// given; the gateway applies it.
// stopRun cancels a run started by the test and fails it unless run
// returns nil within 20 s.
func stopRun(t *testing.T, stop context.CancelFunc, done <-chan error) {
	t.Helper()
	stop()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("run did not return")
	}
}

// TestICEReadCoalesceOption: --ice-read-coalesce's default, flag and
// variable, and its bounds.
func TestICEReadCoalesceOption(t *testing.T) {
	for _, c := range []struct {
		args      []string
		env       map[string]string
		want      time.Duration
		wantError string
	}{
		{want: defaultReadCoalesce},
		{args: []string{"--ice-read-coalesce", "0"}, want: 0},
		{env: map[string]string{"CASTBRIDGE_ICE_READ_COALESCE": "2ms"}, want: 2 * time.Millisecond},
		{args: []string{"--ice-read-coalesce", "6ms"}, wantError: "--ice-read-coalesce: 6ms is outside 0 to 5ms"},
		{args: []string{"--ice-read-coalesce", "-1ms"}, wantError: "is outside"},
	} {
		o, err := parseOptions(c.args, func(k string) string { return c.env[k] }, io.Discard)
		if c.wantError != "" {
			if err == nil || !strings.Contains(err.Error(), c.wantError) {
				t.Errorf("%v %v: error %v, want %q", c.args, c.env, err, c.wantError)
			}
			continue
		}
		if err != nil || o.iceReadCoalesce != c.want {
			t.Errorf("%v %v: %v, %v; want %v", c.args, c.env, o.iceReadCoalesce, err, c.want)
		}
	}
}

func TestGCPercentOption(t *testing.T) {
	cases := []struct {
		args      []string
		env       map[string]string
		want      int
		fromGOGC  bool
		wantError string
	}{
		{want: defaultGCPercent},
		{args: []string{"--gc-percent", "80"}, want: 80},
		{env: map[string]string{"CASTBRIDGE_GC_PERCENT": "120"}, want: 120},
		{env: map[string]string{"GOGC": "200"}, want: defaultGCPercent, fromGOGC: true},
		{args: []string{"--gc-percent", "70"}, env: map[string]string{"GOGC": "200"}, want: 70},
		{env: map[string]string{"GOGC": "200", "CASTBRIDGE_GC_PERCENT": "90"}, want: 90},
		{args: []string{"--gc-percent", "0"}, wantError: "--gc-percent: 0 is outside 10 to 1000"},
		{env: map[string]string{"CASTBRIDGE_GC_PERCENT": "5000"}, wantError: "--gc-percent: 5000 is outside"},
	}
	for _, c := range cases {
		o, err := parseOptions(c.args, func(k string) string { return c.env[k] }, io.Discard)
		if c.wantError != "" {
			if err == nil || !strings.Contains(err.Error(), c.wantError) {
				t.Errorf("%v %v: error %v, want %q", c.args, c.env, err, c.wantError)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%v %v: %v", c.args, c.env, err)
		}
		if o.gcPercent != c.want || o.gcFromGOGC != c.fromGOGC {
			t.Errorf("%v %v: gc-percent %d (GOGC's: %v), want %d (%v)", c.args, c.env, o.gcPercent, o.gcFromGOGC, c.want, c.fromGOGC)
		}
	}

	// run applies it: the process's GC target is the flag's while the
	// gateway runs (it fails fast on --ice-tcp-port, after applying).
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	err := run(t.Context(), []string{"--gc-percent", "37", "--ice-tcp-port", "-1"}, func(string) string { return "" }, io.Discard)
	if err == nil {
		t.Fatal("run with --ice-tcp-port -1 did not fail")
	}
	if got := debug.SetGCPercent(100); got != 37 {
		t.Errorf("run left the GC target at %d, want --gc-percent's 37", got)
	}
}

func TestReachabilityOptions(t *testing.T) {
	env := map[string]string{"CASTBRIDGE_ICE_TCP_PORT": "8443", "CASTBRIDGE_ICE_IPS": "203.0.113.7, 2001:db8::7"}
	o, err := parseOptions(nil, func(k string) string { return env[k] }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.iceTCPPort != 8443 {
		t.Errorf("CASTBRIDGE_ICE_TCP_PORT: ice-tcp-port %d, want 8443", o.iceTCPPort)
	}
	if d, err := parseOptions(nil, func(string) string { return "" }, io.Discard); err != nil || d.iceTCPPort != 0 {
		t.Errorf("ICE-TCP must be off by default: %d, %v", d.iceTCPPort, err)
	}
	ips, err := parseIPs(o.iceIPs)
	if err != nil {
		t.Fatal(err)
	}
	if len(ips) != 2 || ips[0].String() != "203.0.113.7" || len(ips[0]) != net.IPv4len || ips[1].String() != "2001:db8::7" {
		t.Errorf("--ice-ips with IPv4 and IPv6: %v", ips)
	}
	if _, err := parseIPs("::"); err == nil {
		t.Error("an unspecified address cannot be advertised")
	}
	err = run(context.Background(), []string{"--ice-tcp-port", "-1", "--local-ingest="}, func(string) string { return "" }, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "--ice-tcp-port") {
		t.Errorf("a negative --ice-tcp-port: %v", err)
	}
	// --rtmps-ca is read at start: a file with no certificate stops it.
	bad := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(bad, []byte("no certificate here"), 0o600); err != nil {
		t.Fatal(err)
	}
	err = run(context.Background(), nil, func(k string) string {
		return map[string]string{"CASTBRIDGE_RTMPS_CA": bad}[k]
	}, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "--rtmps-ca") || !strings.Contains(err.Error(), "no PEM certificate") {
		t.Errorf("CASTBRIDGE_RTMPS_CA with no certificate: %v", err)
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestEmbeddedDefaults runs the binary's run() as a newcomer would use it:
// a WHIP publisher goes live to the built-in ingest, which records
// <recordings-dir>/<name>.flv; SIGTERM (ctx) stops the broadcast cleanly.
func TestEmbeddedDefaults(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	dir := t.TempDir()
	httpAddr, ingestAddr := freeAddr(t), freeAddr(t)
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"--http-addr", httpAddr, "--ice-udp-port", "0", "--ice-ips", "127.0.0.1",
			"--local-ingest", ingestAddr, "--recordings-dir", dir, "--log-level", "warn"}, func(string) string { return "" }, io.Discard)
	}()
	base := "http://" + httpAddr
	for i := 0; ; i++ {
		resp, err := http.Get(base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if i > 100 {
			t.Fatalf("not ready: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}

	pubCtx, pubStop := context.WithCancel(context.Background())
	defer pubStop()
	pub, err := gatewaytest.NewPublisher(gatewaytest.PublisherConfig{VideoFile: mediafile.TestdataPath("video.h264"),
		AudioFile: mediafile.TestdataPath("audio.ogg"), SeparateParameterSets: true, NoSenderReports: true, Loop: true})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	offer, err := pub.Offer(pubCtx)
	if err != nil {
		t.Fatal(err)
	}
	// WHIP, as OBS does it.
	resp, err := http.Post(base+"/whip", "application/sdp", strings.NewReader(offer))
	if err != nil {
		t.Fatal(err)
	}
	answer, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	loc := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusCreated || resp.Header.Get("Content-Type") != "application/sdp" || !strings.HasPrefix(loc, "/whip/") {
		t.Fatalf("whip: %d %q %q %s", resp.StatusCode, resp.Header.Get("Content-Type"), loc, answer)
	}
	if err := pub.SetAnswer(string(answer)); err != nil {
		t.Fatal(err)
	}
	pub.Start(pubCtx)
	id := strings.TrimPrefix(loc, "/whip/")

	body := `{"transcodingTargets": {"output": "rtmp://` + ingestAddr + `/live/demo"}}`
	var bv struct {
		State   string `json:"state"`
		Targets []struct{ State string }
	}
	for i := 0; ; i++ { // the WHIP session is a /v1 stream like any other
		resp, err = http.Post(base+"/v1/streams/"+id+"/broadcast", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusCreated {
			if err := json.Unmarshal(raw, &bv); err != nil || bv.State != "live" {
				t.Fatalf("broadcast: %s", raw)
			}
			break
		}
		if i > 20 {
			t.Fatalf("broadcast: %d %s", resp.StatusCode, raw)
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(3 * time.Second)
	stop() // as SIGTERM does
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("run did not return after shutdown")
	}
	pubStop()
	pub.Wait()

	path := filepath.Join(dir, "demo.flv")
	pr, err := gatewaytest.Probe(path)
	if err != nil {
		t.Fatal(err)
	}
	v := pr.Video()
	if v == nil || v.CodecName != "h264" || v.Width != 1280 || v.Height != 720 || v.NbReadFrames < 60 {
		t.Fatalf("recording: %+v", v)
	}
	if errs, err := gatewaytest.DecodeErrors(path); err != nil || errs != "" {
		t.Errorf("recording does not decode cleanly: %v %s", err, errs)
	}
	t.Logf("recorded %d frames, %.2f s", v.NbReadFrames, pr.Duration)
}

func TestLoadRelays(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "castbridge.yaml")
	if err := os.WriteFile(good, []byte(`relays:
  - key: obs-key
    targets:
      - output: rtmp://a.rtmp.youtube.com/live2
        streamname: YT-KEY
        videobitrate: 4500000
      - output: rtmp://live.twitch.tv/app/TW-KEY
        dropframes: "1"
        rtmpconnectinfo: {team: blue}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	relays, err := loadRelays(good)
	if err != nil {
		t.Fatal(err)
	}
	if len(relays) != 1 || relays[0].Key != "obs-key" || len(relays[0].Targets) != 2 {
		t.Fatalf("relays: %+v", relays)
	}
	yt, tw := relays[0].Targets[0], relays[0].Targets[1]
	if yt.StreamName != "YT-KEY" || yt.VideoBitrate != 4500000 || !tw.DropFrames || tw.ConnectInfo["team"] != "blue" {
		t.Errorf("targets: %+v %+v", yt, tw)
	}
	for name, body := range map[string]string{
		"bad-url.yaml":   "relays:\n  - key: k\n    targets:\n      - output: http://example.com/x\n",
		"no-key.yaml":    "relays:\n  - targets:\n      - output: rtmp://h/app/k\n",
		"dup.yaml":       "relays:\n  - key: k\n    targets: [{output: rtmp://h/app/a}]\n  - key: k\n    targets: [{output: rtmp://h/app/b}]\n",
		"not-yaml.yaml":  "relays: [",
		"no-target.yaml": "relays:\n  - key: k\n",
	} {
		p := filepath.Join(dir, name)
		_ = os.WriteFile(p, []byte(body), 0o600)
		if _, err := loadRelays(p); err == nil {
			t.Errorf("%s: loaded without error", name)
		} else if strings.Contains(err.Error(), "TW-KEY") {
			t.Errorf("%s: error leaks a key: %v", name, err)
		}
	}
}

func TestPprofListener(t *testing.T) {
	o, err := parseOptions(nil, func(string) string { return "" }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.pprofAddr != "" {
		t.Fatalf("pprof is on by default: %q", o.pprofAddr)
	}
	o, err = parseOptions([]string{"--pprof-addr", "127.0.0.1:0"}, func(string) string { return "" }, io.Discard)
	if err != nil || o.pprofAddr != "127.0.0.1:0" {
		t.Fatalf("--pprof-addr: %q, %v", o.pprofAddr, err)
	}
	srv, addr, err := servePprof(o.pprofAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	resp, err := http.Get("http://" + addr.String() + "/debug/pprof/heap?debug=1")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "heap profile") {
		t.Fatalf("heap profile: %d %.100s", resp.StatusCode, body)
	}
	// The command line carries --api-key: it is not served.
	resp, err = http.Get("http://" + addr.String() + "/debug/pprof/cmdline")
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode == http.StatusOK || strings.Contains(string(body), "castbridge") || strings.Contains(string(body), ".test") {
		t.Errorf("/debug/pprof/cmdline: %d %.100q", resp.StatusCode, body)
	}
	// Profiles have no authentication: only loopback listens.
	if psrv, _, err := servePprof("0.0.0.0:0"); err == nil {
		psrv.Close()
		t.Error("pprof listened on every interface")
	} else if !strings.Contains(err.Error(), "loopback") {
		t.Errorf("refusal: %v", err)
	}
}

func TestLocalIngestOptions(t *testing.T) {
	env := map[string]string{"CASTBRIDGE_LOCAL_INGEST_KEY": "k1", "CASTBRIDGE_RECORDINGS_MAX_BYTES": "1048576", "CASTBRIDGE_LOCAL_INGEST_MAX_CONNS": "8"}
	o, err := parseOptions(nil, func(k string) string { return env[k] }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.localIngestKey != "k1" || o.recordingsMax != 1<<20 || o.localIngestConns != 8 {
		t.Fatalf("options %+v", o)
	}
	o, err = parseOptions(nil, func(string) string { return "" }, io.Discard)
	if err != nil || o.localIngestConns != ingest.DefaultMaxConns || o.recordingsMax != 0 || o.localIngestKey != "" {
		t.Fatalf("defaults %+v %v", o, err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--local-ingest", "0.0.0.0:0"}, "--local-ingest-key"},
		{[]string{"--local-ingest", ":0"}, "--local-ingest-key"},
		{[]string{"--local-ingest", "127.0.0.1:0", "--local-ingest-max-conns", "0"}, "--local-ingest-max-conns"},
		{[]string{"--local-ingest", "127.0.0.1:0", "--recordings-max-bytes", "-1"}, "--recordings-max-bytes"},
	} {
		err := run(context.Background(), append(tc.args, "--recordings-dir", t.TempDir()), func(string) string { return "" }, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("run %v: %v, want an error naming %s", tc.args, err, tc.want)
		}
	}
	for addr, want := range map[string]bool{"127.0.0.1:1935": true, "[::1]:1935": true, "localhost:1935": true, "0.0.0.0:1935": false, ":1935": false, "[::]:1935": false, "10.0.0.1:1935": false} {
		if got := loopbackAddr(addr); got != want {
			t.Errorf("loopbackAddr(%q) = %v", addr, got)
		}
	}
}

// TestLocalIngestKey runs the binary with its ingest behind a key (on
// loopback here; a non-loopback address needs one): only a publish with
// ?key= gets in, and the key is never logged.
func TestLocalIngestKey(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	ingestAddr := freeAddr(t)
	_, portStr, _ := net.SplitHostPort(ingestAddr)
	port, _ := strconv.Atoi(portStr)
	dir := t.TempDir()
	httpAddr := freeAddr(t)
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	var logs gatewaytest.SyncBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"--http-addr", httpAddr, "--ice-udp-port", "0", "--ice-ips", "127.0.0.1",
			"--local-ingest", ingestAddr, "--local-ingest-key", "topsecret-7", "--recordings-dir", dir, "--log-level", "debug"},
			func(string) string { return "" }, &logs)
	}()
	dial := func(path string) error {
		ep, err := rtmppush.ParseEndpoint("rtmp://127.0.0.1:"+strconv.Itoa(port)+path, "")
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; ; i++ {
			p, err := rtmppush.Dial(context.Background(), rtmppush.Config{Endpoint: ep})
			var rej *rtmppush.RejectedError
			if err == nil || errors.As(err, &rej) || i > 100 {
				if p != nil {
					_ = p.Close()
				}
				return err
			}
			time.Sleep(50 * time.Millisecond) // not listening yet
		}
	}
	var rej *rtmppush.RejectedError
	if err := dial("/live/demo"); !errors.As(err, &rej) || rej.Code != "NetStream.Publish.BadName" {
		t.Fatalf("publish without the key: %v, want BadName", err)
	}
	if err := dial("/live/demo?key=topsecret-8"); !errors.As(err, &rej) || rej.Code != "NetStream.Publish.BadName" {
		t.Fatalf("publish with a wrong key: %v, want BadName", err)
	}
	if err := dial("/live/demo?key=topsecret-7"); err != nil {
		t.Fatalf("publish with the key: %v", err)
	}
	stopRun(t, stop, done)
	if _, err := os.Stat(filepath.Join(dir, "demo.flv")); err != nil {
		t.Fatalf("the keyed publish was not recorded: %v", err)
	}
	if strings.Contains(logs.String(), "topsecret") {
		t.Fatalf("the key is in the logs:\n%s", logs.String())
	}
}

// TestNoAuthWarning: a gateway with no --api-key says so loudly when its
// API listens beyond loopback, and not on loopback.
func TestNoAuthWarning(t *testing.T) {
	for _, tc := range []struct {
		host string
		warn bool
	}{{"0.0.0.0", true}, {"127.0.0.1", false}} {
		port := strings.TrimPrefix(freeAddr(t), "127.0.0.1:")
		var logs gatewaytest.SyncBuffer
		ctx, stop := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() {
			done <- run(ctx, []string{"--http-addr", tc.host + ":" + port, "--ice-udp-port", "0", "--ice-ips", "127.0.0.1",
				"--local-ingest", "", "--log-level", "warn"}, func(string) string { return "" }, &logs)
		}()
		for i := 0; ; i++ {
			resp, err := http.Get("http://127.0.0.1:" + port + "/readyz")
			if err == nil {
				resp.Body.Close()
				break
			}
			if i > 100 {
				t.Fatalf("%s: not ready: %v", tc.host, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
		stop()
		if err := <-done; err != nil {
			t.Fatalf("%s: run: %v", tc.host, err)
		}
		if got := strings.Contains(logs.String(), "NO AUTHENTICATION"); got != tc.warn {
			t.Errorf("listening on %s without a key: warned %v, want %v; logs:\n%s", tc.host, got, tc.warn, logs.String())
		}
	}
}

// TestWebhookOptions: --webhook repeats and takes comma lists, from flags
// or CASTBRIDGE_WEBHOOK; the secret is required, event names are checked,
// and no error or log line quotes a webhook URL's credentials.
func TestWebhookOptions(t *testing.T) {
	o, err := parseOptions([]string{"--webhook", "https://a.example/in?token=QTOKEN", "--webhook", "http://b.example/x, https://c.example/y",
		"--webhook-secret", "s3cret", "--webhook-events", "StreamClosed,PublisherConnected"}, func(string) string { return "" }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(o.webhooks, " ") != "https://a.example/in?token=QTOKEN http://b.example/x https://c.example/y" || o.webhookSecret != "s3cret" {
		t.Errorf("webhooks %q secret %q", o.webhooks, o.webhookSecret)
	}
	env := map[string]string{"CASTBRIDGE_WEBHOOK": "https://d.example/1,https://e.example/2", "CASTBRIDGE_WEBHOOK_SECRET": "env-secret",
		"CASTBRIDGE_WEBHOOK_EVENTS": "TargetFailed"}
	o, err = parseOptions(nil, func(k string) string { return env[k] }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if len(o.webhooks) != 2 || o.webhooks[1] != "https://e.example/2" || o.webhookSecret != "env-secret" || o.webhookEvents != "TargetFailed" {
		t.Errorf("from the environment: %q %q %q", o.webhooks, o.webhookSecret, o.webhookEvents)
	}
	var logs gatewaytest.SyncBuffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	hooks, err := newWebhooks(options{webhooks: listFlag{"https://user:PW@hooks.example/in/PATHTOKEN?token=QTOKEN"}, webhookSecret: "s"}, log)
	if err != nil {
		t.Fatal(err)
	}
	if err := hooks.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if out := logs.String(); !strings.Contains(out, "urls=https://hooks.example/****") || strings.ContainsAny(out, "@?") ||
		strings.Contains(out, "PW") || strings.Contains(out, "TOKEN") {
		t.Errorf("start log: %s", out)
	}
	if h, err := newWebhooks(options{}, log); h != nil || err != nil {
		t.Errorf("no --webhook: %v %v", h, err)
	}
	for _, c := range []struct {
		o    options
		want string
	}{
		{options{webhooks: listFlag{"https://h.example/?token=QTOKEN"}}, "--webhook needs --webhook-secret"},
		{options{webhookEvents: "StreamClosed"}, "--webhook-events without --webhook"},
		{options{webhooks: listFlag{"https://h.example/"}, webhookSecret: "s", webhookEvents: "StreamClosed,StreamOpened"}, `no event "StreamOpened"`},
		{options{webhooks: listFlag{"https://h.example/"}, webhookSecret: "s", webhookEvents: "ReceivedWebRTCStats"}, "webhooks never send it"},
		{options{webhooks: listFlag{"https://h.example/", "rtmp://h.example/app/QTOKEN"}, webhookSecret: "s"}, "--webhook 2: must be an http:// or https:// URL"},
	} {
		h, err := newWebhooks(c.o, log)
		if err == nil || !strings.Contains(err.Error(), c.want) || h != nil {
			t.Errorf("%+v: %v, want %q", c.o, err, c.want)
		} else if strings.Contains(err.Error(), "QTOKEN") {
			t.Errorf("the error quotes the URL: %v", err)
		}
	}
	if _, err := parseOptions([]string{"--webhook", " , "}, func(string) string { return "" }, io.Discard); err == nil {
		t.Error("an empty --webhook must be an error")
	}
}

// TestWebhooksAtShutdown: SIGTERM delivers the streams' last events to a
// slow webhook within --shutdown-timeout; a receiver that never answers
// costs no more than the deadline, and the loss is a warning, not an error.
func TestWebhooksAtShutdown(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	for _, hang := range []bool{false, true} {
		var mu sync.Mutex
		var events []string
		release := make(chan struct{})
		recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			raw, _ := io.ReadAll(r.Body)
			var b struct{ Event string }
			_ = json.Unmarshal(raw, &b)
			if webhook.Verify("hook-secret", r.Header.Get(webhook.SignatureHeader), raw) != nil {
				t.Errorf("bad signature on %s", raw)
			}
			if hang && b.Event == "StreamClosed" {
				select { // never answered before the shutdown deadline
				case <-release:
				case <-r.Context().Done():
				}
				return
			}
			time.Sleep(150 * time.Millisecond) // slow: the last events are still queued at SIGTERM
			mu.Lock()
			events = append(events, b.Event)
			mu.Unlock()
		}))
		httpAddr := freeAddr(t)
		var logs gatewaytest.SyncBuffer
		ctx, stop := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() {
			done <- run(ctx, []string{"--http-addr", httpAddr, "--ice-udp-port", "0", "--ice-ips", "127.0.0.1", "--local-ingest", "",
				"--log-level", "warn", "--shutdown-timeout", "2s", "--webhook", recv.URL + "/in?token=HOOKTOKEN"},
				func(k string) string { return map[string]string{"CASTBRIDGE_WEBHOOK_SECRET": "hook-secret"}[k] }, &logs)
		}()
		base := "http://" + httpAddr
		for i := 0; ; i++ {
			resp, err := http.Get(base + "/readyz")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					break
				}
			}
			if i > 100 {
				t.Fatalf("not ready: %v", err)
			}
			time.Sleep(50 * time.Millisecond)
		}
		pubCtx, pubStop := context.WithCancel(context.Background())
		pub, err := gatewaytest.NewPublisher(gatewaytest.PublisherConfig{VideoFile: mediafile.TestdataPath("video.h264"), Loop: true})
		if err != nil {
			t.Fatal(err)
		}
		offer, err := pub.Offer(pubCtx)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.Post(base+"/whip", "application/sdp", strings.NewReader(offer))
		if err != nil {
			t.Fatal(err)
		}
		answer, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err := pub.SetAnswer(string(answer)); err != nil {
			t.Fatal(err)
		}
		pub.Start(pubCtx)
		for i := 0; ; i++ { // wait for PublisherConnected to go out
			mu.Lock()
			n := len(events)
			mu.Unlock()
			if n > 0 {
				break
			}
			if i > 200 {
				t.Fatal("no webhook for the publisher")
			}
			time.Sleep(20 * time.Millisecond)
		}
		start := time.Now()
		stop()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("hang %v: run: %v", hang, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("run did not return")
		}
		took := time.Since(start)
		t.Logf("receiver hangs %v: shutdown took %v", hang, took)
		mu.Lock()
		got := strings.Join(events, ",")
		mu.Unlock()
		warned := strings.Contains(logs.String(), "1 events not delivered by the shutdown deadline")
		if hang {
			if got != "PublisherConnected" || !warned || took > 4*time.Second {
				t.Errorf("hanging receiver: got %s, warned %v, shutdown took %v (deadline 2 s)", got, warned, took)
			}
		} else if got != "PublisherConnected,StreamClosed" || warned {
			t.Errorf("slow receiver: got %s by the time run returned, warned %v; logs:\n%s", got, warned, logs.String())
		}
		if strings.Contains(logs.String(), "HOOKTOKEN") {
			t.Errorf("logs show the webhook's token:\n%s", logs.String())
		}
		pubStop()
		_ = pub.Close()
		pub.Wait()
		close(release)
		recv.Close()
	}
}

// TestSTUNOption: --stun (CASTBRIDGE_STUN) is checked at start, reaches
// the gateway, and what it learns is in the startup log and /metrics.
func TestSTUNOption(t *testing.T) {
	o, err := parseOptions(nil, func(k string) string {
		return map[string]string{"CASTBRIDGE_STUN": "stun.l.google.com:19302"}[k]
	}, io.Discard)
	if err != nil || o.stun != "stun.l.google.com:19302" {
		t.Errorf("CASTBRIDGE_STUN: %q, %v", o.stun, err)
	}
	if d, err := parseOptions(nil, func(string) string { return "" }, io.Discard); err != nil || d.stun != "" {
		t.Errorf("STUN must be off by default (never contacted unless set): %q, %v", d.stun, err)
	}
	for in, want := range map[string]string{
		"stun.l.google.com:19302":      "stun.l.google.com:19302",
		"stun:stun.l.google.com:19302": "stun.l.google.com:19302",
		"192.0.2.1:3478":               "192.0.2.1:3478",
		"[2001:db8::1]:3478":           "asked over IPv4",
		"":                             "",
		"stun.l.google.com":            "want host:port",
		"turn:turn.example.com:3478":   "TURN is for publishers",
		"stun.example.com:0":           "port from 1 to 65535",
		":3478":                        "port from 1 to 65535",
	} {
		got, err := parseSTUN(in)
		if err != nil {
			got = err.Error()
		}
		if !strings.Contains(got, want) || (want == "" && got != "") {
			t.Errorf("parseSTUN(%q) = %q, want %q", in, got, want)
		}
	}
	if err := run(context.Background(), []string{"--stun", "stun.example.com", "--local-ingest="}, func(string) string { return "" }, io.Discard); err == nil || !strings.Contains(err.Error(), "--stun") {
		t.Errorf("a bad --stun must stop the start naming it: %v", err)
	}

	responder, err := gatewaytest.StartSTUNResponder(&net.UDPAddr{IP: net.IPv4(203, 0, 113, 7), Port: 4242})
	if err != nil {
		t.Fatal(err)
	}
	defer responder.Close()
	srv := responder.Addr()
	httpAddr := freeAddr(t)
	var logs gatewaytest.SyncBuffer
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"--http-addr", httpAddr, "--ice-udp-port", "0", "--local-ingest", ""},
			func(k string) string { return map[string]string{"CASTBRIDGE_STUN": srv}[k] }, &logs)
	}()
	var metrics string
	for i := 0; ; i++ {
		resp, err := http.Get("http://" + httpAddr + "/metrics")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			metrics = string(b)
			break
		}
		if i > 100 {
			t.Fatalf("not serving: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	stop()
	if err := <-done; err != nil {
		t.Fatalf("run: %v", err)
	}
	for _, want := range []string{`castbridge_ice_public_address_info{address="203.0.113.7:4242"} 1`, "castbridge_ice_stun_up 1", "castbridge_ice_stun_failures_total 0"} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %q:\n%s", want, metrics)
		}
	}
	if l := logs.String(); !strings.Contains(l, "public_addr=203.0.113.7:4242") || !strings.Contains(l, "stun="+srv) {
		t.Errorf("the startup log does not say the public address learned from %s:\n%s", srv, l)
	}
}

// TestAccessFlags: --token-secret (from CASTBRIDGE_TOKEN_SECRET, API.md's name), --cors-origins
// and --auth-webhook reach the API of a running gateway.
func TestAccessFlags(t *testing.T) {
	const secret = "cmd-test-hmac-secret-of-32-bytes-or-more"
	var asked atomic.Int32
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		asked.Add(1)
		w.WriteHeader(http.StatusForbidden)
	}))
	defer hook.Close()
	httpAddr := freeAddr(t)
	env := map[string]string{"CASTBRIDGE_TOKEN_SECRET": secret, "CASTBRIDGE_AUTH_WEBHOOK": hook.URL}
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"--http-addr", httpAddr, "--ice-udp-port", "0", "--ice-ips", "127.0.0.1", "--local-ingest", "",
			"--log-level", "warn", "--cors-origins", "https://app.example", "--auth-webhook-timeout", "1s"}, func(k string) string { return env[k] }, io.Discard)
	}()
	base := "http://" + httpAddr
	for i := 0; ; i++ {
		resp, err := http.Get(base + "/readyz")
		if err == nil {
			resp.Body.Close()
			break
		}
		if i > 100 {
			t.Fatalf("not ready: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, auth.Claims{Stream: "alice",
		RegisteredClaims: jwt.RegisteredClaims{ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Hour))}}).SignedString([]byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	do := func(method, path, bearer, ctype, body string, hdr ...string) (int, http.Header, string) {
		t.Helper()
		req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
		if bearer != "" {
			req.Header.Set("Authorization", "Bearer "+bearer)
		}
		if ctype != "" {
			req.Header.Set("Content-Type", ctype)
		}
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header, string(raw)
	}
	if st, _, body := do("GET", "/v1/streams", "", "", ""); st != 401 {
		t.Errorf("no token: %d %s", st, body)
	}
	if st, _, body := do("GET", "/v1/streams", tok, "", ""); st != 200 {
		t.Errorf("publish token: %d %s", st, body)
	}
	if _, h, _ := do("OPTIONS", "/whip", "", "", "", "Origin", "https://app.example", "Access-Control-Request-Method", "POST"); h.Get("Access-Control-Allow-Origin") != "https://app.example" {
		t.Errorf("allowed origin: %v", h)
	}
	if _, h, _ := do("OPTIONS", "/whip", "", "", "", "Origin", "https://evil.example", "Access-Control-Request-Method", "POST"); h.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("other origin: %v", h)
	}
	if st, _, body := do("POST", "/whip", tok, "application/sdp", "v=0\r\n"); st != 403 || !strings.Contains(body, "FORBIDDEN") || asked.Load() != 1 {
		t.Errorf("WHIP with a refusing webhook: %d %s (asked %d)", st, body, asked.Load())
	}
	stop()
	if err := <-done; err != nil {
		t.Fatalf("run: %v", err)
	}
}

func TestAccessConfig(t *testing.T) {
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKIXPublicKey(&ec.PublicKey)
	path := filepath.Join(t.TempDir(), "token.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := accessConfig(options{tokenKey: path, tokenAudience: "castbridge"})
	if err != nil || cfg.Tokens == nil || cfg.Tokens.Alg() != "ES256" {
		t.Fatalf("PEM token key: %+v %v", cfg, err)
	}
	cfg, err = accessConfig(options{tokenSecret: strings.Repeat("s", 32)})
	if err != nil || cfg.Tokens == nil || cfg.Tokens.Alg() != "HS256" {
		t.Fatalf("HMAC token secret: %+v %v", cfg, err)
	}
	for _, o := range []options{
		{tokenSecret: "short"},
		{tokenKey: strings.Repeat("s", 32)}, // a secret is no key file
		{tokenKey: path, tokenSecret: strings.Repeat("s", 32)},
		{tokenAudience: "x"},
		{authWebhook: "ftp://backend"},
		{authWebhook: "http://backend", authWebhookTO: 0},
		{corsOrigins: "https://app.example/path"},
	} {
		if _, err := accessConfig(o); err == nil {
			t.Errorf("%+v: accepted", o)
		}
	}
	cfg, err = accessConfig(options{authWebhook: "http://backend:9000/auth", authWebhookTO: time.Second, corsOrigins: "*, https://a.example"})
	if err != nil || cfg.AuthWebhook == nil || len(cfg.CORSOrigins) != 2 || cfg.Tokens != nil {
		t.Errorf("webhook and origins: %+v %v", cfg, err)
	}
}

// TestGOMAXPROCSOption: --gomaxprocs is auto by default, 0 or a count
// otherwise, from the flag or CASTBRIDGE_GOMAXPROCS; GOMAXPROCS in the
// environment decides when neither is given; anything else is refused.
func TestGOMAXPROCSOption(t *testing.T) {
	cases := []struct {
		args      []string
		env       map[string]string
		want      int
		fromEnv   bool
		wantError string
	}{
		{want: -1},
		{args: []string{"--gomaxprocs", "auto"}, want: -1},
		{args: []string{"--gomaxprocs", "0"}, want: 0},
		{args: []string{"--gomaxprocs", "3"}, want: 3},
		{env: map[string]string{"CASTBRIDGE_GOMAXPROCS": "2"}, want: 2},
		{env: map[string]string{"GOMAXPROCS": "4"}, want: -1, fromEnv: true},
		{args: []string{"--gomaxprocs", "1"}, env: map[string]string{"GOMAXPROCS": "4"}, want: 1},
		{args: []string{"--gomaxprocs", "-2"}, wantError: "is not auto or a count"},
		{args: []string{"--gomaxprocs", "many"}, wantError: "is not auto or a count"},
	}
	for _, c := range cases {
		o, err := parseOptions(c.args, func(k string) string { return c.env[k] }, io.Discard)
		if c.wantError != "" {
			if err == nil || !strings.Contains(err.Error(), c.wantError) {
				t.Errorf("%v %v: error %v, want %q", c.args, c.env, err, c.wantError)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%v %v: %v", c.args, c.env, err)
		}
		if o.procs != c.want || o.procsFromEnv != c.fromEnv {
			t.Errorf("%v %v: procs %d (from GOMAXPROCS: %v), want %d (%v)", c.args, c.env, o.procs, o.procsFromEnv, c.want, c.fromEnv)
		}
	}

	// A count holds while the gateway runs and is undone after.
	def := runtime.GOMAXPROCS(0)
	stop := sizeScheduler(t.Context(), options{procs: 1}, slog.New(slog.DiscardHandler))
	if n := runtime.GOMAXPROCS(0); n != 1 {
		t.Errorf("--gomaxprocs 1: GOMAXPROCS %d", n)
	}
	stop()
	if n := runtime.GOMAXPROCS(0); n != def {
		t.Errorf("after the gateway: GOMAXPROCS %d, want the default %d", n, def)
	}
}
