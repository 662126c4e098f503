package e2e

import (
	"context"
	"encoding/binary"
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/castbridge/castbridge/gateway/gatewaytest"
	"github.com/castbridge/castbridge/gateway/media"
)

// simulcastView is the part of the stream view and stats about layers.
type simulcastView struct {
	Video *struct {
		Width, Height int
		Layers        []struct {
			RID               string  `json:"rid"`
			Width             int     `json:"width"`
			Height            int     `json:"height"`
			Bitrate           float64 `json:"bitrate"`
			Active, Forwarded bool
		} `json:"layers"`
		Layer string `json:"layer"` // API.md: the rid forwarded
	} `json:"video"`
}

// forwarded is the rid of the forwarded layer and the rids that are active.
func (v simulcastView) forwarded() (rid string, active string) {
	if v.Video == nil {
		return "", ""
	}
	for _, l := range v.Video.Layers {
		if l.Forwarded {
			rid = l.RID
		}
		if l.Active {
			active += l.RID
		}
	}
	b := []byte(active)
	slices.Sort(b)
	return rid, string(b)
}

func (h *harness) waitLayer(id, rid, active string, timeout time.Duration) simulcastView {
	h.t.Helper()
	var v simulcastView
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		v = simulcastView{}
		h.call("GET", "/v1/streams/"+id, nil, &v)
		if f, a := v.forwarded(); f == rid && a == active && v.Video.Layer == rid {
			return v
		}
	}
	f, a := v.forwarded()
	h.t.Fatalf("layer %q forwarded with %q active, want %q with %q: %+v", f, a, rid, active, v.Video)
	return v
}

// seqHeaderSize is the resolution of an AVC sequence header tag body.
func seqHeaderSize(t *testing.T, b []byte) string {
	t.Helper()
	rec := b[5:]
	if len(rec) < 8 {
		t.Fatalf("AVC sequence header of %d bytes", len(rec))
	}
	n := int(binary.BigEndian.Uint16(rec[6:]))
	sps := rec[8 : 8+n]
	p := rec[8+n:]
	m := int(binary.BigEndian.Uint16(p[1:]))
	ps, err := media.NewParamSet(sps, p[3:3+m])
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%dx%d", ps.Width, ps.Height)
}

// TestSimulcastPublisher: the pion publisher sends three simulcast layers
// (180p, 360p, 720p, each on its own SSRC and RTP clock, like a browser's
// sendEncodings). The gateway forwards 720p; when the publisher drops it
// mid-stream the broadcast goes on at 360p, and at 720p again when it
// returns. The ingest sees one continuous stream: a new sequence header and
// a keyframe at each switch, timestamps that never go back and keep to the
// wall clock, no gap beyond the switch down's wait.
func TestSimulcastPublisher(t *testing.T) {
	parallel(t, heavy)
	h := newHarness(t, harnessOptions{keyframeInterval: 2 * time.Second})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pub, id := h.publish(ctx, gatewaytest.PublisherConfig{
		Layers: []gatewaytest.Layer{
			{RID: "q", File: testdata("video-180p.h264")},
			{RID: "h", File: testdata("video-360p.h264")},
			{RID: "f", File: testdata("video.h264")},
		},
		AudioFile: testdata("audio.ogg"),
		Loop:      true,
	})
	h.waitLayer(id, "f", "fhq", 5*time.Second)
	// pion's simulcast probing eats a layer's first packets (its first
	// SPS); the gateway asks a layer of unknown resolution for a keyframe.
	sizes := map[string]string{}
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		var v simulcastView
		h.call("GET", "/v1/streams/"+id, nil, &v)
		for _, l := range v.Video.Layers {
			sizes[l.RID] = fmt.Sprintf("%dx%d", l.Width, l.Height)
		}
		if sizes["q"] == "320x180" && sizes["h"] == "640x360" && sizes["f"] == "1280x720" {
			break
		}
	}
	if sizes["q"] != "320x180" || sizes["h"] != "640x360" || sizes["f"] != "1280x720" {
		t.Errorf("layer resolutions %v", sizes)
	}
	// Each layer's received bit rate, in the order of their sizes.
	rates := map[string]float64{}
	for deadline := time.Now().Add(4 * time.Second); time.Now().Before(deadline); time.Sleep(250 * time.Millisecond) {
		var v simulcastView
		h.call("GET", "/v1/streams/"+id, nil, &v)
		for _, l := range v.Video.Layers {
			rates[l.RID] = l.Bitrate
		}
		if rates["q"] > 0 && rates["q"] < rates["h"] && rates["h"] < rates["f"] {
			break
		}
	}
	if !(rates["q"] > 0 && rates["q"] < rates["h"] && rates["h"] < rates["f"]) {
		t.Errorf("layer bit rates %v, want 0 < q < h < f", rates)
	}
	t.Logf("layer bit rates %v", rates)

	if st, raw := h.call("POST", "/v1/streams/"+id+"/broadcast", map[string]any{
		"transcodingTargets": map[string]any{"output": h.ingestURL(), "streamname": "simul"}}, nil); st != http.StatusCreated {
		t.Fatalf("start broadcast: %d %s", st, raw)
	}
	time.Sleep(2 * time.Second)
	pub.SetLayerSending("f", false)
	dropped := time.Now()
	h.waitLayer(id, "h", "hq", 3*time.Second)
	t.Logf("switched down %v after the top layer stopped", time.Since(dropped).Round(time.Millisecond))
	time.Sleep(2 * time.Second)
	pub.SetLayerSending("f", true)
	h.waitLayer(id, "f", "fhq", 3*time.Second)
	time.Sleep(2 * time.Second)

	var stats struct {
		Inbound struct {
			Video struct {
				LayerSwitches uint64 `json:"layerSwitches"`
				Layers        []struct {
					RID     string `json:"rid"`
					Packets uint64 `json:"packetsReceived"`
				} `json:"layers"`
			} `json:"video"`
		} `json:"inbound"`
	}
	h.call("GET", "/v1/streams/"+id+"/stats", nil, &stats)
	if sw := stats.Inbound.Video.LayerSwitches; sw < 2 {
		t.Errorf("%d layer switches, want at least the 2 of the drop and the return", sw)
	}
	if len(stats.Inbound.Video.Layers) != 3 {
		t.Errorf("stats layers: %+v", stats.Inbound.Video.Layers)
	}
	for _, l := range stats.Inbound.Video.Layers {
		if l.Packets < 100 {
			t.Errorf("layer %s: %d packets received", l.RID, l.Packets)
		}
	}
	if st, raw := h.call("DELETE", "/v1/streams/"+id+"/broadcast", nil, nil); st != http.StatusOK {
		t.Fatalf("stop broadcast: %d %s", st, raw)
	}

	_, msgs := h.rec.get("simul")
	var (
		resolutions []string
		frames      = map[string]int{}
		cur         string
		wantKey     bool
		first, last videoTag
		n           int
		maxGap      uint32
	)
	for _, r := range msgs {
		if r.msg.Type != 9 {
			continue
		}
		vt := parseVideo(t, r)
		if vt.seqHeader {
			if size := seqHeaderSize(t, r.msg.Body); size != cur {
				cur = size
				resolutions = append(resolutions, size)
				wantKey = true
			}
			continue
		}
		if wantKey && !vt.keyframe {
			t.Errorf("the first %s frame (at %d ms) is not a keyframe", cur, vt.ts)
		}
		wantKey = false
		if n > 0 {
			if vt.ts < last.ts {
				t.Errorf("video timestamp went back: %d after %d", vt.ts, last.ts)
			}
			maxGap = max(maxGap, vt.ts-last.ts)
		} else {
			first = vt
		}
		frames[cur]++
		last = vt
		n++
	}
	if fmt.Sprint(resolutions) != "[1280x720 640x360 1280x720]" {
		t.Errorf("the ingest saw the resolutions %v, want 720p, 360p when the top layer stopped, 720p when it came back", resolutions)
	}
	if frames["640x360"] < 40 || frames["1280x720"] < 100 {
		t.Errorf("frames by resolution %v", frames)
	}
	// The switch down waits for the layer to count as stopped (600 ms)
	// and the 360p keyframe; nothing else leaves a gap.
	if maxGap > 1200 {
		t.Errorf("a gap of %d ms in the video", maxGap)
	}
	// The timeline keeps to the wall clock across the switches.
	span, wall := time.Duration(last.ts-first.ts)*time.Millisecond, last.at.Sub(first.at)
	if d := span - wall; d < -300*time.Millisecond || d > 300*time.Millisecond {
		t.Errorf("video timestamps span %v over %v of arrivals", span, wall)
	}
	t.Logf("%d frames %v, switches %v, largest gap %d ms, timestamps %v over %v", n, frames, resolutions, maxGap, span, wall)
}

// simulcastBrowserResult is what httpapi/web/test/simulcast.mjs writes.
type simulcastBrowserResult struct {
	Failed          int
	AnswerSimulcast string `json:"answerSimulcast"`
	LiveAt, StopAt  int64
	ViewEnd         simulcastView `json:"viewEnd"`
	Outbound        []struct {
		RID           string `json:"rid"`
		Width, Height int
		Frames        int
	}
}

// TestBrowserSimulcast publishes a canvas from Chromium with three
// sendEncodings (rids q, h, f; H.264): castbridge's answer must take the
// simulcast with the RID header extensions (Chromium refused answers
// without them), the stream must go live to the in-process ingest with
// the layers in its view, and the ingest must get the forwarded layer's
// video from a keyframe on, its timestamps never going back.
func TestBrowserSimulcast(t *testing.T) {
	parallel(t, heavy)
	testDir, err := filepath.Abs(filepath.Join("..", "web", "test"))
	if err != nil {
		t.Fatal(err)
	}
	node, chromium := needBrowser(t, testDir)
	h := newHarness(t, harnessOptions{})
	out := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var res simulcastBrowserResult
	// Chromium's bandwidth estimate takes some seconds to allow the upper
	// layers: long enough live to see it switch up.
	runErr := runBrowserScript(ctx, t, browserRun{node: node, chromium: chromium, dir: testDir, out: out,
		env: []string{"SIMULCAST_LIVE_MS=12000"}}, &res, "simulcast.mjs", h.srv.URL, h.ingestURL(), "chromesimul")
	if runErr != nil || res.Failed > 0 {
		t.Fatalf("simulcast.mjs failed: %v (see the FAIL lines above)", runErr)
	}
	if res.AnswerSimulcast != "a=simulcast:recv q;h;f" {
		t.Errorf("the answer's simulcast: %q", res.AnswerSimulcast)
	}
	if res.ViewEnd.Video == nil || len(res.ViewEnd.Video.Layers) == 0 {
		t.Fatalf("no layers in the stream view: %+v", res.ViewEnd.Video)
	}
	fwd, active := res.ViewEnd.forwarded()
	t.Logf("castbridge layers %+v: %s forwarded, %s active; Chromium sent %+v", res.ViewEnd.Video.Layers, fwd, active, res.Outbound)
	if fwd == "" || !strings.Contains(active, fwd) {
		t.Errorf("forwarded layer %q, active %q", fwd, active)
	}

	_, msgs := h.rec.get("chromesimul")
	var frames int
	var last uint32
	var size string
	var sizes []string
	var wantKey bool
	for _, r := range msgs {
		if r.msg.Type != 9 {
			continue
		}
		vt := parseVideo(t, r)
		if vt.seqHeader {
			if s := seqHeaderSize(t, r.msg.Body); s != size {
				size = s
				sizes = append(sizes, s)
				wantKey = true
			}
			continue
		}
		if wantKey && !vt.keyframe {
			t.Errorf("the first %s frame (at %d ms) is not a keyframe", size, vt.ts)
		}
		wantKey = false
		if frames > 0 && vt.ts < last {
			t.Errorf("video timestamp went back: %d after %d", vt.ts, last)
		}
		last = vt.ts
		frames++
	}
	live := time.Duration(res.StopAt-res.LiveAt) * time.Millisecond
	if frames < int(live.Seconds()*10) {
		t.Errorf("the ingest got %d video frames in %v live", frames, live)
	}
	if len(sizes) == 0 {
		t.Errorf("the ingest got no sequence header")
	}
	t.Logf("ingest: %d frames over %v live, resolutions in turn %v", frames, live, sizes)
}
