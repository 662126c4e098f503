package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/castbridge/castbridge/gateway"
	"github.com/castbridge/castbridge/gateway/gatewaytest"
	"github.com/castbridge/castbridge/httpapi"
)

// browserResult is what httpapi/web/test/browser.mjs writes to result.json.
type browserResult struct {
	Recording   string   `json:"recording"`
	LiveSeconds float64  `json:"liveSeconds"`
	Screenshots []string `json:"screenshots"`
	Metadata    string   `json:"metadata"` // "sent", or "absent" while the endpoint 404s
	Events      string   `json:"events"`   // "sse", or "absent" while the endpoint 404s
	Notes       []string `json:"notes"`
	Units       struct{ Passed, Failed int }
}

// needBrowser skips (fails under CI) when node, Chromium or playwright-core
// is missing; scripts/deps.sh and scripts/test.sh install them.
func needBrowser(t *testing.T, dir string) (node, chromium string) {
	t.Helper()
	fail := func(msg string) {
		if os.Getenv("CI") != "" {
			t.Fatalf("browser test: %s; CI is set, so this is an error", msg)
		}
		t.Skipf("browser test: skipping: %s", msg)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		fail("node not found in PATH")
	}
	chromium = os.Getenv("CHROMIUM")
	if chromium == "" {
		chromium = "/usr/bin/chromium"
	}
	if _, err := os.Stat(chromium); err != nil {
		fail(chromium + " missing (apt-get install chromium, or scripts/deps.sh)")
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "playwright-core")); err != nil {
		fail("playwright-core missing (cd httpapi/web/test && npm ci, or scripts/test.sh)")
	}
	return node, chromium
}

// browserRun is where one of httpapi/web/test's scripts runs: node,
// Chromium, the scripts' directory, the directory it leaves result.json
// in, and environment variables beyond those.
type browserRun struct {
	node, chromium, dir, out string
	env                      []string
}

// runBrowserScript runs script with args under node, logging its output as
// it comes, and reads the result.json it left into res (the test fails
// when there is none). It returns the script's own exit error.
func runBrowserScript(ctx context.Context, t *testing.T, r browserRun, res any, script string, args ...string) error {
	t.Helper()
	cmd := exec.CommandContext(ctx, r.node, append([]string{filepath.Join(r.dir, script)}, args...)...)
	cmd.Dir = r.dir
	cmd.Env = append(append(os.Environ(), "BROWSER_OUT="+r.out, "CHROMIUM="+r.chromium), r.env...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		t.Log(sc.Text())
	}
	runErr := cmd.Wait()
	raw, err := os.ReadFile(filepath.Join(r.out, "result.json"))
	if err == nil {
		err = json.Unmarshal(raw, res)
	}
	if err != nil {
		t.Fatalf("%s left no result (%v): %v", script, runErr, err)
	}
	return runErr
}

// TestBrowser opens the demo page in real Chromium (fake camera and
// microphone), goes live to nginx-rtmp through castbridge and reads the
// recording back; browser.mjs also runs the SDK's unit tests in that browser.
func TestBrowser(t *testing.T) {
	parallel(t, heavy)
	testDir, err := filepath.Abs(filepath.Join("..", "web", "test"))
	if err != nil {
		t.Fatal(err)
	}
	node, chromium := needBrowser(t, testDir)
	recordings := t.TempDir()
	nginx := gatewaytest.StartNginx(t, recordings)

	const apiKey = "browser-test-key"
	log := slog.New(slog.NewTextHandler(newTestWriter(t), &slog.HandlerOptions{Level: slog.LevelWarn}))
	m, err := gateway.NewManager(gateway.Config{
		ICEIPs:           []net.IP{net.IPv4(127, 0, 0, 1).To4()},
		KeyframeInterval: 2 * time.Second,
		PublishTimeout:   5 * time.Second,
		Logger:           log,
	})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	// CORS for any origin: browser.mjs serves the README's example from a port of its own.
	srv := &http.Server{Handler: httpapi.New(httpapi.Config{Manager: m, APIKey: apiKey, Logger: log, CORSOrigins: []string{"*"}}), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := m.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		_ = srv.Shutdown(ctx)
	})

	// Screenshots stay after the test for a person to look at.
	out, err := os.MkdirTemp("", "castbridge-browser-")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	var res browserResult
	runErr := runBrowserScript(ctx, t, browserRun{node: node, chromium: chromium, dir: testDir, out: out,
		env: []string{"CASTBRIDGE_API_KEY=" + apiKey}}, &res, "browser.mjs", "http://"+ln.Addr().String(), "rtmp://"+nginx+"/live")
	if runErr != nil {
		t.Errorf("browser.mjs failed: %v (see the FAIL lines above)", runErr)
	}
	t.Logf("SDK unit tests in Chromium: %d passed, %d failed", res.Units.Passed, res.Units.Failed)
	t.Logf("screenshots: %v", res.Screenshots)
	for _, n := range res.Notes {
		t.Log("note:", n)
	}
	if res.LiveSeconds == 0 {
		t.Fatal("the page never went live and stopped")
	}

	// What nginx recorded from the browser's broadcast.
	path := filepath.Join(recordings, res.Recording+".flv")
	waitFile(t, path)
	pr, err := gatewaytest.Probe(path)
	if err != nil {
		t.Fatalf("ffprobe %s: %v", path, err)
	}
	v := pr.Video()
	if v == nil || v.CodecName != "h264" || v.Width == 0 || v.Height == 0 {
		t.Fatalf("recording video: %+v", v)
	}
	// The recording starts at the first keyframe after Go live answered and
	// ends when Stop answered.
	if pr.Duration < res.LiveSeconds-2.5 || pr.Duration > res.LiveSeconds+1 || math.IsNaN(pr.Duration) {
		t.Errorf("recording lasts %.2f s, the page was live %.2f s", pr.Duration, res.LiveSeconds)
	}
	if v.NbReadFrames < int(pr.Duration*10) {
		t.Errorf("recording has %d frames in %.2f s", v.NbReadFrames, pr.Duration)
	}
	a := pr.Audio()
	if a == nil || a.CodecName != "aac" || a.SampleRate != 48000 || a.Channels != 2 {
		t.Fatalf("recording audio: %+v, want AAC 48 kHz stereo", a)
	}
	if math.Abs(a.Duration-v.Duration) > 0.25 {
		t.Errorf("audio lasts %.2f s, video %.2f s", a.Duration, v.Duration)
	}
	t.Logf("nginx recording: %s %dx%d, %d frames, %.2f s (live %.2f s); events %s, metadata %s",
		v.CodecName, v.Width, v.Height, v.NbReadFrames, pr.Duration, res.LiveSeconds, res.Events, res.Metadata)
}
