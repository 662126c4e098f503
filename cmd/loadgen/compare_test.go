package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseRunName(t *testing.T) {
	k, ok := parseRunName("pair_video_50_2_mediamtx.json")
	if !ok || k != (runKey{kind: "pair", job: "video", streams: 50, rep: 2, server: "mediamtx"}) {
		t.Errorf("got %+v %v", k, ok)
	}
	for _, bad := range []string{"pair_video_50_2_mediamtx.md", "x_video_50_2_m.json", "pair_video_0_1_m.json",
		"pair_video_5_x_m.json", "pair__5_1_m.json", "pair_video_5_1_.json", "pair_video_5_1.json", "pair_a_b_5_1_m.json"} {
		if _, ok := parseRunName(bad); ok {
			t.Errorf("%s parsed", bad)
		}
	}
}

func writeResult(t *testing.T, dir, name string, r Result) {
	t.Helper()
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestCompare: two pairs of a job give per-pair ratios and their range, a
// castbridge-only job its own table, and the saturation search the last
// count each server carried.
func TestCompare(t *testing.T) {
	dir := t.TempDir()
	ok := func(n int, cpu, p99 float64) Result {
		return Result{Streams: n, Connected: n, Live: n, CPUPercentPerStream: cpu, LatencyMs: Latency{P50: 1, P99: p99},
			RSSMBPerStream: 1, GatewayNsPerPacket: cpu * 1000, FramesSentAfterKeyframe: 100 * n, LoadAvgBefore: 1.5, LoadAvgAfter: 2.25}
	}
	writeResult(t, dir, "pair_video_50_1_castbridge.json", ok(50, 0.4, 5))
	writeResult(t, dir, "pair_video_50_1_mediamtx.json", ok(50, 0.8, 20))
	writeResult(t, dir, "pair_video_50_2_castbridge.json", ok(50, 0.3, 6))
	writeResult(t, dir, "pair_video_50_2_mediamtx.json", ok(50, 1.0, 30))
	writeResult(t, dir, "pair_aac_10_1_castbridge.json", ok(10, 2, 9))
	writeResult(t, dir, "sat_video_100_1_castbridge.json", ok(100, 0.4, 8))
	writeResult(t, dir, "sat_video_100_1_mediamtx.json", ok(100, 0.7, 60))
	lost := ok(150, 0.5, 9)
	lost.FramesLost = 3
	writeResult(t, dir, "sat_video_150_1_castbridge.json", lost)
	if err := os.WriteFile(filepath.Join(dir, "pair_video_50_1_castbridge.md"), []byte("not a result"), 0o644); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	runs, err := compare(&out, dir, "castbridge", 400)
	if err != nil {
		t.Fatal(err)
	}
	if len(runs) != 8 {
		t.Errorf("%d runs read, want 8", len(runs))
	}
	s := out.String()
	for _, want := range []string{
		"| video | 50 | 1 | castbridge | 0.400 | 0.50 | 400 (1.0×) | 1.00 / 5.00 | 0.25 |",
		"| video | 50 | 2 | castbridge | 0.300 | 0.30 |",
		"| video | 50 | mediamtx | 2 | 0.30–0.50 | 0.20–0.25 | 1.00–1.00 | 0 / 0 |",
		"| aac | 10 | 1 | 2.000 | 2000 (5.0×) |",
		"1.50 → 2.25",
		"| castbridge | 100 (0.400, 8.0, ok; load 1.50 → 2.25); 150 (0.500, 9.0, 3 frames lost; load 1.50 → 2.25) | 100 | 150 |",
		"| mediamtx | 100 (0.700, 60.0, p99 60.0 ms; load 1.50 → 2.25) | 0 | 100 |",
		"floor: UDP receive + SRTP decrypt, 400 ns",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("output lacks %q:\n%s", want, s)
		}
	}
	svg, err := plotCompareSVG(runs)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"<svg", "</svg>", "castbridge, video", "mediamtx, video", "castbridge, aac", ">10<", ">50<"} {
		if !strings.Contains(svg, want) {
			t.Errorf("plot lacks %q", want)
		}
	}
	if strings.Contains(svg, "mediamtx, aac") || strings.Contains(svg, "NaN") || strings.Contains(svg, "Inf") {
		t.Errorf("plot has a series never run or a bad coordinate")
	}
	if _, err := compare(&out, t.TempDir(), "castbridge", 0); err == nil {
		t.Error("an empty directory compared without error")
	}
}

func TestCheckSaturated(t *testing.T) {
	dir := t.TempDir()
	carried := Result{Streams: 10, Connected: 10, Live: 10, LatencyMs: Latency{P99: 12}}
	writeResult(t, dir, "ok.json", carried)
	slow := carried
	slow.LatencyMs.P99 = 51
	writeResult(t, dir, "slow.json", slow)
	down := carried
	down.Live = 9
	writeResult(t, dir, "down.json", down)
	var out bytes.Buffer
	if err := checkSaturated(&out, filepath.Join(dir, "ok.json")); !errors.Is(err, errNotSaturated) {
		t.Errorf("carried run: %v", err)
	}
	if err := checkSaturated(&out, filepath.Join(dir, "slow.json")); err != nil {
		t.Errorf("p99 51 ms: %v", err)
	}
	if err := checkSaturated(&out, filepath.Join(dir, "down.json")); err != nil {
		t.Errorf("a stream not live: %v", err)
	}
	if !strings.Contains(out.String(), "saturated (p99 51.0 ms)") || !strings.Contains(out.String(), "saturated (9 of 10 live)") {
		t.Errorf("output %q", out.String())
	}
	if err := checkSaturated(&out, filepath.Join(dir, "missing.json")); err == nil || errors.Is(err, errNotSaturated) {
		t.Errorf("missing file: %v", err)
	}
}
