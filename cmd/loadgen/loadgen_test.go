package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/castbridge/castbridge/gateway"
	"github.com/castbridge/castbridge/gateway/gatewaytest"
	"github.com/castbridge/castbridge/httpapi"
	"github.com/castbridge/castbridge/transmux/rtmp/ingest"
)

// startGateway runs a real castbridge in process: the manager with ICE on
// loopback and the HTTP API on httptest.
func startGateway(t *testing.T) string {
	t.Helper()
	log := slog.New(slog.DiscardHandler)
	m, err := gateway.NewManager(gateway.Config{
		ICEUDPPort: 0,
		ICEIPs:     []net.IP{net.IPv4(127, 0, 0, 1).To4()},
		Logger:     log,
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(httpapi.New(httpapi.Config{Manager: m, Logger: log}))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := m.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		srv.Close()
	})
	return srv.URL
}

// TestLoadgenTwoStreams runs the command against an in-process castbridge
// with 2 streams for about 4 s and checks the report.
func TestLoadgenTwoStreams(t *testing.T) {
	if testing.Short() {
		t.Skip("publishes for several seconds")
	}
	base := startGateway(t)
	dir := t.TempDir()
	jsonFile, plotFile := filepath.Join(dir, "out.json"), filepath.Join(dir, "out.svg")
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), []string{
		"--target", base,
		"--streams", "2",
		"--ramp", "500ms",
		"--duration", "3s",
		"--sink-addr", "127.0.0.1:0",
		// the gateway is this process: its CPU and RSS include the
		// publishers', but the code path is the one used for real
		"--gateway-pid", strconv.Itoa(os.Getpid()),
		"--json", jsonFile,
		"--plot", plotFile,
	}, &stdout, &stderr)
	t.Log(stderr.String())
	t.Log(stdout.String())
	if err != nil {
		t.Fatal(err)
	}

	raw, err := os.ReadFile(jsonFile)
	if err != nil {
		t.Fatal(err)
	}
	var fields map[string]any
	if err := json.Unmarshal(raw, &fields); err != nil {
		t.Fatalf("json: %v\n%s", err, raw)
	}
	for _, k := range []string{"streams", "connected", "framesSent", "framesReceived", "latencyMs", "cpuPercentPerStream", "rssMBPerStream"} {
		if _, ok := fields[k]; !ok {
			t.Errorf("JSON lacks %q: %s", k, raw)
		}
	}
	lat, _ := fields["latencyMs"].(map[string]any)
	for _, k := range []string{"p50", "p95", "p99"} {
		if v, ok := lat[k].(float64); !ok || v <= 0 {
			t.Errorf("latencyMs.%s = %v, want > 0", k, lat[k])
		}
	}
	var r Result
	if err := json.Unmarshal(raw, &r); err != nil {
		t.Fatal(err)
	}
	if r.Streams != 2 || r.Connected != 2 || r.Live != 2 {
		t.Errorf("streams %d, connected %d, live %d; want 2, 2, 2", r.Streams, r.Connected, r.Live)
	}
	if r.FramesSentAfterKeyframe < 2*30*3 || r.FramesSent < r.FramesSentAfterKeyframe {
		t.Errorf("frames sent %d (after the first keyframe %d), want about 2 streams x 30 fps x 4 s",
			r.FramesSent, r.FramesSentAfterKeyframe)
	}
	if float64(r.FramesReceived) < 0.9*float64(r.FramesSentAfterKeyframe) {
		t.Errorf("frames received %d of %d sent after the first keyframe, want at least 90%%",
			r.FramesReceived, r.FramesSentAfterKeyframe)
	}
	if r.FramesUnmatched != 0 {
		t.Errorf("%d frames at the sink match no frame sent", r.FramesUnmatched)
	}
	if r.CPUPercentPerStream <= 0 || r.RSSMB <= 0 || r.LoadgenCPUPercent <= 0 {
		t.Errorf("cpu %v%%/stream, rss %v MB, loadgen cpu %v%%", r.CPUPercentPerStream, r.RSSMB, r.LoadgenCPUPercent)
	}
	if !strings.Contains(stdout.String(), "| streams |") || !strings.Contains(stdout.String(), "\n| 2 | 2 |") {
		t.Errorf("no Markdown table row for 2 streams:\n%s", stdout.String())
	}
	svg, err := os.ReadFile(plotFile)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(svg, []byte("<svg")) || !bytes.Contains(svg, []byte("<polyline")) || !bytes.HasSuffix(bytes.TrimSpace(svg), []byte("</svg>")) {
		t.Errorf("plot is not an SVG with lines:\n%s", svg)
	}
}

func TestPercentiles(t *testing.T) {
	var d []time.Duration
	for i := 100; i >= 1; i-- {
		d = append(d, time.Duration(i)*time.Millisecond)
	}
	l := percentiles(d)
	if l.P50 != 50 || l.P95 != 95 || l.P99 != 99 || l.Max != 100 || l.Samples != 100 {
		t.Errorf("percentiles %+v", l)
	}
	if (percentiles(nil) != Latency{}) {
		t.Error("empty percentiles")
	}
}

func TestParseFlags(t *testing.T) {
	var errOut bytes.Buffer
	cfg, counts, out, err := parseFlags([]string{"--sweep", "1, 10,50", "--whip-url", "http://h/whip/{n}", "--json", "x.json"}, &errOut)
	if err != nil {
		t.Fatal(err)
	}
	if len(counts) != 3 || counts[0] != 1 || counts[1] != 10 || counts[2] != 50 || !out.sweep || out.json != "x.json" {
		t.Errorf("counts %v, outputs %+v", counts, out)
	}
	if cfg.Target != "" {
		t.Errorf("--whip-url alone keeps the API target %q", cfg.Target)
	}
	for _, bad := range [][]string{{"--sweep", "1,x"}, {"--streams", "0"}, {"--duration", "0s"}, {"extra"}} {
		if _, _, _, err := parseFlags(bad, &errOut); err == nil {
			t.Errorf("%v: no error", bad)
		}
	}
}

func TestPlotSVG(t *testing.T) {
	svg := plotSVG([]Result{
		{Streams: 1, CPUPercentPerStream: 1.2, LatencyMs: Latency{P99: 3}},
		{Streams: 10, CPUPercentPerStream: 0.8, LatencyMs: Latency{P99: 4}},
		{Streams: 100, CPUPercentPerStream: 0.5, LatencyMs: Latency{P99: 12}},
	})
	for _, want := range []string{"<svg", "</svg>", "log scale", ">100<", "1.20%", "12.0 ms"} {
		if !strings.Contains(svg, want) {
			t.Errorf("plot lacks %q", want)
		}
	}
	if strings.Contains(svg, "NaN") || strings.Contains(svg, "Inf") {
		t.Error("plot has NaN or Inf coordinates")
	}
}

// TestMatchFrames: the first frame received is an IDR that the publisher
// had also sent half a second earlier, before the target was live; it is
// matched to the later send, so the frames in between are not counted as
// received or lost, and later frames follow in order, a dropped one left
// unmatched.
func TestMatchFrames(t *testing.T) {
	t0 := time.Unix(5000, 0)
	var sent []gatewaytest.SentFrame
	for i := range 40 {
		at := t0.Add(time.Duration(i) * 33 * time.Millisecond)
		// the material: IDR (digest 100) then P-frames 1..; it restarts at 20
		sent = append(sent, gatewaytest.SentFrame{Digest: uint64(100 + i%20), IDR: i%20 == 0,
			FirstPacketAt: at, LastPacketAt: at.Add(time.Millisecond)})
	}
	var recv []recvFrame
	for i := 20; i < 40; i++ {
		if i == 25 {
			continue // lost
		}
		// received 0.5 ms after the first packet: before the publisher
		// noted the last one written (LastPacketAt), which a descheduled
		// publisher goroutine can do late
		recv = append(recv, recvFrame{digest: sent[i].Digest, at: sent[i].FirstPacketAt.Add(500 * time.Microsecond)})
	}
	recv = append(recv, recvFrame{digest: 999, at: t0.Add(2 * time.Second)}) // never sent
	got := matchFrames(sent, recv)
	want := []int{20, 21, 22, 23, 24, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, -1}
	if !slices.Equal(got, want) {
		t.Fatalf("matched %v, want %v", got, want)
	}
}

// TestSinkTakesEveryStream: the sink holds more connections than the
// ingest server's default cap (one per stream of a 100-stream run); it
// used to refuse the 65th.
func TestSinkTakesEveryStream(t *testing.T) {
	s, err := startSink("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	const n = ingest.DefaultMaxConns + 36
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			_ = c.Close()
		}
	}()
	for range n {
		c, err := net.Dial("tcp", s.srv.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	// A refused connection is closed at once: read from the last one.
	_ = conns[n-1].SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if _, err := conns[n-1].Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("connection %d: %v, want it held open", n, err)
	}
	if r := s.srv.RefusedConns(); r != 0 {
		t.Errorf("%d of %d connections refused", r, n)
	}
}
