package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/castbridge/castbridge/gateway/gatewaytest"
	"github.com/castbridge/castbridge/transmux/format/flv"
)

// fillerView is the stream view's video with the filler's fields.
type fillerView struct {
	Video *struct {
		Filler       bool   `json:"filler"`
		FillerReason string `json:"fillerReason"`
	} `json:"video"`
}

func (h *harness) filler(id string) (bool, string) {
	h.t.Helper()
	var v fillerView
	if st, raw := h.call("GET", "/v1/streams/"+id, nil, &v); st != http.StatusOK || v.Video == nil {
		h.t.Fatalf("stream view: %d %s", st, raw)
	}
	return v.Video.Filler, v.Video.FillerReason
}

// frameLuma decodes a recording's video, every frame as coded (no frame
// rate conversion), and returns each frame's mean luma (8 bit).
func frameLuma(t *testing.T, path string) []float64 {
	t.Helper()
	ffmpeg := gatewaytest.NeedTool(t, "ffmpeg")
	const w, h = 160, 90
	out, err := exec.Command(ffmpeg, "-nostdin", "-v", "error", "-i", path, "-map", "0:v:0", "-fps_mode", "passthrough",
		"-vf", fmt.Sprintf("scale=%d:%d:flags=neighbor", w, h), "-pix_fmt", "yuv420p", "-f", "rawvideo", "-").Output()
	if err != nil {
		t.Fatalf("decode %s: %v", path, err)
	}
	var means []float64
	// yuv420p as decoded, scaled down: no conversion of its range. Each
	// frame's luma plane comes first.
	for p := out; len(p) >= w*h*3/2; p = p[w*h*3/2:] {
		sum := 0
		for _, b := range p[:w*h] {
			sum += int(b)
		}
		means = append(means, float64(sum)/(w*h))
	}
	return means
}

// TestVideoFiller: an H.264 + Opus publisher whose video stops for 3 s
// while its audio goes on, then is muted for 2 s, into the in-process
// ingest. The recording decodes cleanly; after --video-gap (1 s) the stall
// is filled with black frames (mean luma 16) at the publisher's 30 fps
// until its picture returns, at a keyframe; the mute is black from its
// first frame to the unmute's keyframe; the publisher's frames keep their
// RTP timing throughout (no jump: the audio, continuous and as long as the
// video, stays in sync with them); the stream view and the stats show the
// filler.
func TestVideoFiller(t *testing.T) {
	parallel(t, heavy)
	gatewaytest.NeedTool(t, "ffprobe")
	h := newHarness(t, harnessOptions{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pub, id := h.publish(ctx, gatewaytest.PublisherConfig{VideoFile: testdata("video.h264"), AudioFile: testdata("audio.ogg"), Loop: true})
	h.startTargets(id, map[string]any{"output": h.ingestURL() + "/filler"})
	time.Sleep(2 * time.Second)

	pub.SetVideoSending(false)
	time.Sleep(1500 * time.Millisecond)
	if on, why := h.filler(id); !on || why != "stalled" {
		t.Errorf("1.5 s into the stall the view says filler %v (%q)", on, why)
	}
	time.Sleep(1500 * time.Millisecond)
	pub.SetVideoSending(true)
	time.Sleep(2 * time.Second)
	if on, _ := h.filler(id); on {
		t.Error("2 s after the video came back the filler still runs")
	}

	if st, raw := h.call("PATCH", "/v1/streams/"+id, map[string]any{"videoMuted": true}, nil); st != http.StatusOK {
		t.Fatalf("mute: %d %s", st, raw)
	}
	time.Sleep(1 * time.Second)
	if on, why := h.filler(id); !on || why != "muted" {
		t.Errorf("muted, the view says filler %v (%q)", on, why)
	}
	time.Sleep(1 * time.Second)
	if st, raw := h.call("PATCH", "/v1/streams/"+id, map[string]any{"videoMuted": false}, nil); st != http.StatusOK {
		t.Fatalf("unmute: %d %s", st, raw)
	}
	time.Sleep(2 * time.Second)
	var stats struct {
		Inbound struct {
			Video struct {
				FillerFrames int `json:"fillerFrames"`
			} `json:"video"`
		} `json:"inbound"`
	}
	h.call("GET", "/v1/streams/"+id+"/stats", nil, &stats)
	cancel()
	pub.Wait()
	time.Sleep(300 * time.Millisecond)
	h.closeStream(id)
	metricFill := -1.0
	if resp, err := http.Get(h.srv.URL + "/metrics"); err == nil {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for line := range strings.Lines(string(body)) {
			if v, ok := strings.CutPrefix(strings.TrimSpace(line), "castbridge_video_filler_frames_total "); ok {
				metricFill, _ = strconv.ParseFloat(v, 64)
			}
		}
	}
	if metricFill < float64(stats.Inbound.Video.FillerFrames) {
		t.Errorf("castbridge_video_filler_frames_total is %v after the stream closed, its stats said %d", metricFill, stats.Inbound.Video.FillerFrames)
	}

	_, msgs := h.rec.get("filler")
	path := filepath.Join(t.TempDir(), "filler.flv")
	writeFLV(t, path, msgs)
	checkAVRecording(t, path, 0.15) // H.264 + AAC, as long as each other, decoding cleanly
	pkts, err := gatewaytest.ProbeFrames(path)
	if err != nil {
		t.Fatal(err)
	}
	luma := frameLuma(t, path)
	tags := videoFramesOf(t, msgs)
	if len(pkts) != len(tags) || len(luma) != len(tags) {
		t.Fatalf("%d video tags received, ffprobe finds %d packets, ffmpeg decodes %d frames", len(tags), len(pkts), len(luma))
	}

	// The black runs: where, how long, at what spacing.
	type run struct{ from, to int } // frame indices, to exclusive
	var runs []run
	for i := 0; i < len(luma); i++ {
		if luma[i] > 17 {
			if luma[i] < 60 {
				t.Errorf("frame %d: mean luma %.1f, neither black nor the publisher's picture", i, luma[i])
			}
			continue
		}
		j := i
		for j < len(luma) && luma[j] <= 17 {
			if luma[j] < 15.5 || luma[j] > 16.5 {
				t.Errorf("frame %d: mean luma %.2f, not black (16)", j, luma[j])
			}
			j++
		}
		runs = append(runs, run{i, j})
		i = j
	}
	var desc []string
	for _, r := range runs {
		lo, hi := 255.0, 0.0
		for _, l := range luma[r.from:r.to] {
			lo, hi = min(lo, l), max(hi, l)
		}
		back := int64(-1)
		if r.to < len(pkts) {
			back = pkts[r.to].DTSMillis - pkts[r.to-1].DTSMillis
		}
		desc = append(desc, fmt.Sprintf("%d frames %d..%d ms (luma %.2f..%.2f, from %d ms after the picture, back %d ms after)",
			r.to-r.from, pkts[r.from].DTSMillis, pkts[r.to-1].DTSMillis, lo, hi, pkts[r.from].DTSMillis-pkts[max(r.from-1, 0)].DTSMillis, back))
	}
	t.Logf("%d frames, %d filler frames (stats), black runs: %s", len(luma), stats.Inbound.Video.FillerFrames, strings.Join(desc, "; "))
	if len(runs) != 2 {
		t.Fatalf("%d runs of black frames, want 2 (the stall, the mute)", len(runs))
	}
	total := 0
	for k, r := range runs {
		n := r.to - r.from
		total += n
		// The stall: 3 s less the 1 s gap; the mute: 2 s and the keyframe after it.
		if n < 50 || n > 72 {
			t.Errorf("black run %d has %d frames, want ~60 (2 s at 30 fps)", k, n)
		}
		if !pkts[r.from].Keyframe {
			t.Errorf("black run %d does not start with a keyframe", k)
		}
		if r.to >= len(pkts) || !pkts[r.to].Keyframe {
			t.Errorf("the publisher's picture returns after black run %d at a frame that is no keyframe", k)
		}
		for i := r.from + 1; i < r.to; i++ {
			if d := pkts[i].DTSMillis - pkts[i-1].DTSMillis; d < 30 || d > 37 {
				t.Errorf("black run %d: frame %d is %d ms after the one before, want 33", k, i, d)
			}
		}
		if span := pkts[r.to-1].DTSMillis - pkts[r.from].DTSMillis; float64(span) < float64(n-1)*33.3-40 || float64(span) > float64(n-1)*33.3+40 {
			t.Errorf("black run %d: %d frames span %d ms: not 30 fps", k, n, span)
		}
	}
	// The fill runs 60 ms behind the stream's wall clock.
	if gap := pkts[runs[0].from].DTSMillis - pkts[runs[0].from-1].DTSMillis; gap < 900 || gap > 1300 {
		t.Errorf("the stall's black starts %d ms after the publisher's last frame, want the 1 s gap", gap)
	}
	if gap := pkts[runs[1].from].DTSMillis - pkts[runs[1].from-1].DTSMillis; gap < 16 || gap > 150 {
		t.Errorf("the mute's black starts %d ms after the publisher's last frame", gap)
	}
	for k, r := range runs {
		if gap := pkts[r.to].DTSMillis - pkts[r.to-1].DTSMillis; gap < 16 || gap > 150 {
			t.Errorf("the picture returns %d ms after black run %d's last frame", gap, k)
		}
	}
	if f := stats.Inbound.Video.FillerFrames; f < total || f > total+3 {
		t.Errorf("stats count %d filler frames, the recording has %d black ones", f, total)
	}
	for i := 1; i < len(pkts); i++ {
		if pkts[i].DTSMillis <= pkts[i-1].DTSMillis {
			t.Errorf("video frame %d at %d ms after %d ms", i, pkts[i].DTSMillis, pkts[i-1].DTSMillis)
		}
		if d := pkts[i].DTSMillis - pkts[i-1].DTSMillis; d > 150 && i != runs[0].from {
			t.Errorf("video frame %d is %d ms after the one before", i, d)
		}
	}

	// The publisher's frames keep their RTP timing: each is where its
	// time since the first says, across the stall and the mute.
	sent := pub.Sent()
	var offset time.Duration
	matched, j := 0, 0
	for i, tag := range tags {
		if luma[i] <= 17 {
			continue
		}
		// The frame is the last one with its digest sent before the
		// ingest got it: a looping clip and a PLI's jump to an IDR send
		// the same frame again, but hundreds of ms apart.
		k := -1
		for c := j; c < len(sent) && sent[c].FirstPacketAt.Before(tag.at); c++ {
			if sent[c].Digest == tag.digest {
				k = c
			}
		}
		if k < 0 {
			t.Fatalf("video frame %d is neither black nor a frame the publisher sent (after %d matched)", i, matched)
		}
		j = k
		off := time.Duration(tag.ts)*time.Millisecond - sent[j].PTS
		if matched == 0 {
			offset = off
		} else if d := off - offset; d < -20*time.Millisecond || d > 20*time.Millisecond {
			t.Errorf("the publisher's frame %d (video frame %d at %d ms) is %v off its RTP timing", sent[j].Seq, i, tag.ts, d)
		}
		matched++
		j++
	}

	// The audio is continuous: no tag further from the one before than a
	// frame of AAC, through the stall and the mute.
	var last uint32
	n := 0
	for _, r := range msgs {
		if r.msg.Type != flv.TagAudio {
			continue
		}
		if at, err := flv.ParseAudioTag(r.msg.Body); err != nil || at.PacketType != 1 {
			continue
		}
		if n > 0 && r.msg.Timestamp-last > 25 {
			t.Errorf("audio: %d ms without a frame at %d ms", r.msg.Timestamp-last, last)
		}
		last = r.msg.Timestamp
		n++
	}
	t.Logf("%d publisher frames on their RTP timing, %d AAC frames", matched, n)
}

// TestVideoFillerVP9: a VP9 publisher (the 320x180 clip, a key frame
// every 2 s) whose video stops for 3 s while its audio goes on: after the
// 1 s gap the ingest gets the publisher's last key frame again, byte for
// byte, then one-byte VP9 frames showing it again (show_existing_frame) at
// the publisher's 30 fps, the key frame again every keyframe interval;
// timestamps go forward; the publisher's picture returns at its next key
// frame (asked for), the audio has no hole, and the view said why.
func TestVideoFillerVP9(t *testing.T) {
	parallel(t, light)
	h := newHarness(t, harnessOptions{videoCodecs: []string{"vp9"}})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pub, id := h.publish(ctx, gatewaytest.PublisherConfig{VideoCodec: "vp9", VideoFile: testdata("video-vp9.ivf"), AudioFile: testdata("audio.ogg"), Loop: true})
	h.startTargets(id, map[string]any{"output": h.ingestURL() + "/vp9fill", "videocodec": "vp9"})
	time.Sleep(2500 * time.Millisecond)
	pub.SetVideoSending(false)
	time.Sleep(2 * time.Second)
	if on, why := h.filler(id); !on || why != "stalled" {
		t.Errorf("2 s into the stall the view says filler %v (%q)", on, why)
	}
	time.Sleep(time.Second)
	pub.SetVideoSending(true)
	time.Sleep(2 * time.Second)
	cancel()
	pub.Wait()
	time.Sleep(300 * time.Millisecond)
	h.closeStream(id)

	_, msgs := h.rec.get("vp9fill")
	type frame struct {
		ts   uint32
		key  bool
		body []byte
		vp9  []byte
	}
	var frames []frame
	var lastAudio uint32
	audio := 0
	for _, r := range msgs {
		switch r.msg.Type {
		case flv.TagVideo:
			vt, err := flv.ParseVideoTag(r.msg.Body)
			if err != nil || !vt.Enhanced || vt.FourCC != flv.FourCCVP9 {
				t.Fatalf("video tag %+v: %v", vt, err)
			}
			if vt.PacketType == flv.VideoPacketTypeCodedFrames || vt.PacketType == flv.VideoPacketTypeCodedFramesX {
				frames = append(frames, frame{r.msg.Timestamp, vt.Keyframe(), r.msg.Body, vt.Payload})
			}
		case flv.TagAudio:
			if at, err := flv.ParseAudioTag(r.msg.Body); err == nil && at.PacketType == 1 {
				if audio > 0 && r.msg.Timestamp-lastAudio > 25 {
					t.Errorf("audio: %d ms without a frame at %d ms", r.msg.Timestamp-lastAudio, lastAudio)
				}
				lastAudio = r.msg.Timestamp
				audio++
			}
		}
	}
	// The fill starts after the 1 s gap.
	from := -1
	for i := 1; i < len(frames); i++ {
		if frames[i].ts <= frames[i-1].ts {
			t.Errorf("video frame %d at %d ms after %d ms", i, frames[i].ts, frames[i-1].ts)
		}
		if from < 0 && frames[i].ts-frames[i-1].ts >= 900 {
			from = i
		}
	}
	if from < 0 {
		t.Fatalf("no gap of 1 s in %d video frames", len(frames))
	}
	last := -1 // the publisher's key frame before the stall
	for i := from - 1; i >= 0; i-- {
		if frames[i].key {
			last = i
			break
		}
	}
	if last < 0 || !frames[from].key || !bytes.Equal(frames[last].body, frames[from].body) {
		t.Fatal("the fill does not start with the publisher's last key frame")
	}
	// Then frames of one byte (show_existing_frame of slot 0), or the key
	// frame again, until the publisher's next key frame.
	shows, keys, to := 0, 1, from+1
	for ; to < len(frames); to++ {
		f := frames[to]
		if f.key && bytes.Equal(f.body, frames[from].body) {
			keys++
		} else if !f.key && len(f.vp9) == 1 && f.vp9[0]&0xc8 == 0x88 && f.vp9[0]&0x07 == 0 {
			shows++
		} else {
			break
		}
		if d := f.ts - frames[to-1].ts; d < 30 || d > 37 {
			t.Errorf("filler frame %d is %d ms after the one before, want 33", to-from, d)
		}
	}
	t.Logf("%d video frames; fill: the %d-byte key frame %d times and %d one-byte frames over %d ms (%d ms after the publisher's last frame); %d AAC frames",
		len(frames), len(frames[from].body), keys, shows, frames[to-1].ts-frames[from].ts, frames[from].ts-frames[from-1].ts, audio)
	if n := shows + keys; n < 50 || n > 65 {
		t.Errorf("%d filler frames in ~2 s of stall, want ~60 (30 fps)", n)
	}
	if keys < 1 || keys > 2 {
		t.Errorf("the key frame %d times in ~2 s, want once per keyframe interval (2 s)", keys)
	}
	if to >= len(frames) || !frames[to].key || bytes.Equal(frames[to].body, frames[from].body) {
		t.Error("the publisher's picture does not return at a new key frame")
	}
}

// TestVideoFillerMediaMTX and TestVideoFillerNginx: the same H.264 stall
// into real ingests: MediaMTX (E-RTMP, recording fMP4) and nginx-rtmp
// (recording FLV as it comes). Each takes the black picture's parameter
// sets and the publisher's again (sequence headers, and in band), and its
// recording decodes cleanly to the publisher's picture, ~2 s of black at
// 30 fps, and the publisher's picture again.
func TestVideoFillerMediaMTX(t *testing.T) {
	parallel(t, heavy)
	dir := t.TempDir()
	mtx := gatewaytest.StartMediaMTX(t, dir, "fmp4", time.Hour)
	h := newHarness(t, harnessOptions{})
	stallInto(t, h, "rtmp://"+mtx.Addr+"/live/filler")
	time.Sleep(700 * time.Millisecond) // MediaMTX closes the segment
	segs := mtx.Recordings("live/filler")
	if len(segs) == 0 {
		t.Fatalf("MediaMTX recorded nothing: %s", mtx.Log())
	}
	checkOneBlackRun(t, segs)
	if strings.Contains(mtx.Log(), "ERR") {
		t.Errorf("MediaMTX reported errors: %s", mtx.Log())
	}
}

func TestVideoFillerNginx(t *testing.T) {
	parallel(t, heavy)
	dir := t.TempDir()
	nginx := gatewaytest.StartNginx(t, dir)
	h := newHarness(t, harnessOptions{})
	stallInto(t, h, "rtmp://"+nginx+"/live/filler")
	path := filepath.Join(dir, "filler.flv")
	waitFile(t, path)
	checkOneBlackRun(t, []string{path})
}

// stallInto publishes H.264 + Opus to output for 2 s, stops the video for
// 3 s while the audio goes on, sends it 2 s more and stops the broadcast.
func stallInto(t *testing.T, h *harness, output string) {
	t.Helper()
	gatewaytest.NeedTool(t, "ffprobe")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pub, id := h.publish(ctx, gatewaytest.PublisherConfig{VideoFile: testdata("video.h264"), AudioFile: testdata("audio.ogg"), Loop: true})
	h.startTargets(id, map[string]any{"output": output})
	time.Sleep(2 * time.Second)
	pub.SetVideoSending(false)
	time.Sleep(3 * time.Second)
	pub.SetVideoSending(true)
	time.Sleep(2 * time.Second)
	cancel()
	pub.Wait()
	time.Sleep(300 * time.Millisecond)
	if st, raw := h.call("DELETE", "/v1/streams/"+id+"/broadcast", nil, nil); st != http.StatusOK {
		t.Fatalf("stop broadcast: %d %s", st, raw)
	}
}

// checkOneBlackRun decodes the recordings in order: cleanly, the
// publisher's picture, one run of ~60 black frames (luma 16), the picture.
func checkOneBlackRun(t *testing.T, paths []string) {
	t.Helper()
	var luma []float64
	for _, p := range paths {
		if errs, err := gatewaytest.DecodeErrors(p); err != nil || errs != "" {
			t.Errorf("decoding %s: %v %s", filepath.Base(p), err, errs)
		}
		luma = append(luma, frameLuma(t, p)...)
	}
	var runs [][2]int
	for i := 0; i < len(luma); i++ {
		if luma[i] > 17 {
			continue
		}
		j := i
		for j < len(luma) && luma[j] <= 17 {
			if luma[j] < 15.5 || luma[j] > 16.5 {
				t.Errorf("frame %d: mean luma %.2f, not black", j, luma[j])
			}
			j++
		}
		runs = append(runs, [2]int{i, j})
		i = j
	}
	t.Logf("%d recordings, %d frames decoded, black runs %v", len(paths), len(luma), runs)
	if len(runs) != 1 {
		t.Fatalf("%d runs of black frames, want 1", len(runs))
	}
	if r := runs[0]; r[1]-r[0] < 50 || r[1]-r[0] > 72 || r[0] < 30 || len(luma)-r[1] < 30 {
		t.Errorf("black frames %d..%d of %d: want ~60 between the publisher's", r[0], r[1], len(luma))
	}
}
