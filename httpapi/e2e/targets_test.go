package e2e

import (
	"context"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/castbridge/castbridge/gateway/gatewaytest"
	"github.com/castbridge/castbridge/transmux/format/flv"
)

// targetView is a <target> of the API.
type targetView struct {
	ID     string `json:"id"`
	Output string `json:"output"`
	State  string `json:"state"`
	Error  *struct{ Code, Message string }
}

// targetIDs returns the ids of a broadcast view's targets.
func (bv broadcastView) targetIDs() []string {
	var ids []string
	for _, tg := range bv.Targets {
		ids = append(ids, tg.ID)
	}
	return ids
}

// statsTargets returns the ids and states of the targets the stats list.
func (h *harness) statsTargets(id string) map[string]string {
	h.t.Helper()
	var st struct {
		Targets []struct {
			ID    string `json:"id"`
			State string `json:"state"`
		} `json:"targets"`
	}
	if code, raw := h.call("GET", "/v1/streams/"+id+"/stats", nil, &st); code != http.StatusOK {
		h.t.Fatalf("stats: %d %s", code, raw)
	}
	out := map[string]string{}
	for _, tg := range st.Targets {
		out[tg.ID] = tg.State
	}
	return out
}

// TestAddAndRemoveTargetLive: while a broadcast is live to ingest A,
// POST /broadcast/targets adds ingest B, which gets a complete stream of
// its own (metadata, sequence headers, a keyframe first, every frame from
// there on in order, AAC audio); DELETE /broadcast/targets/{A} then ends A
// cleanly (FCUnpublish, deleteStream, no more frames) while B goes on, and
// A is gone from every view.
func TestAddAndRemoveTargetLive(t *testing.T) {
	parallel(t, heavy)
	h := newHarness(t, harnessOptions{})
	ingB, recB := startIngest(t, "127.0.0.1:0", h.log)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pub, id := h.publish(ctx, gatewaytest.PublisherConfig{VideoFile: testdata("video.h264"), AudioFile: testdata("audio.ogg"), Loop: true})

	// Live to A.
	var bv broadcastView
	if st, raw := h.call("POST", "/v1/streams/"+id+"/broadcast", map[string]any{"targets": []any{
		map[string]any{"output": h.ingestURL() + "/keyA"}}}, &bv); st != http.StatusCreated || len(bv.Targets) != 1 {
		t.Fatalf("start broadcast: %d %s", st, raw)
	}
	idA := bv.Targets[0].ID
	if n := h.waitFrames("keyA", 30, 5*time.Second); n < 30 {
		t.Fatalf("ingest A got %d frames", n)
	}

	// Add B while live.
	var tb targetView
	st, raw := h.call("POST", "/v1/streams/"+id+"/broadcast/targets", map[string]any{"output": "rtmp://" + ingB.Addr().String() + "/live/keyB"}, &tb)
	if st != http.StatusCreated {
		t.Fatalf("add target: %d %s", st, raw)
	}
	if !strings.HasPrefix(tb.ID, "tg_") || tb.ID == idA || (tb.State != "live" && tb.State != "connecting") || tb.Error != nil {
		t.Errorf("added target: %s", raw)
	}
	if strings.Contains(string(raw), "keyB") || !strings.HasSuffix(tb.Output, "/live/****") {
		t.Errorf("the added target's output is not redacted: %s", raw)
	}
	idB := tb.ID
	if n := recB.waitFrames("keyB", 30, 5*time.Second); n < 30 {
		t.Fatalf("ingest B got %d frames after it was added", n)
	}

	// Both are listed, and live, in the broadcast, the stream and the stats.
	h.call("GET", "/v1/streams/"+id+"/broadcast", nil, &bv)
	if got := bv.targetIDs(); !slices.Equal(got, []string{idA, idB}) || bv.Targets[0].State != "live" || bv.Targets[1].State != "live" {
		t.Errorf("broadcast with both targets: %+v, want %s and %s live", bv, idA, idB)
	}
	var sv streamView
	h.call("GET", "/v1/streams/"+id, nil, &sv)
	if sv.Broadcast == nil || !slices.Equal(sv.Broadcast.targetIDs(), []string{idA, idB}) {
		t.Errorf("stream view's broadcast: %+v", sv.Broadcast)
	}
	if st := h.statsTargets(id); len(st) != 2 || st[idA] != "live" || st[idB] != "live" {
		t.Errorf("stats targets %v, want %s and %s live", st, idA, idB)
	}

	// Remove A.
	if st, raw := h.call("DELETE", "/v1/streams/"+id+"/broadcast/targets/"+idA, nil, nil); st != http.StatusNoContent {
		t.Fatalf("remove target A: %d %s", st, raw)
	}
	if cmds := h.waitCommands("keyA", "FCUnpublish", "deleteStream"); !slices.Contains(cmds, "FCUnpublish") || !slices.Contains(cmds, "deleteStream") {
		t.Errorf("ingest A was not told FCUnpublish and deleteStream: %v", cmds)
	}
	// The ingest handles a connection in order: once it has seen
	// deleteStream, it has every frame A was sent.
	framesA, framesB := h.videoFrames("keyA"), recB.videoFrames("keyB")
	h.call("GET", "/v1/streams/"+id+"/broadcast", nil, &bv)
	if got := bv.targetIDs(); !slices.Equal(got, []string{idB}) || bv.Targets[0].State != "live" || bv.State != "live" {
		t.Errorf("broadcast after removing A: %+v, want only %s, live", bv, idB)
	}
	h.call("GET", "/v1/streams/"+id, nil, &sv)
	if sv.State != "live" || sv.Broadcast == nil || !slices.Equal(sv.Broadcast.targetIDs(), []string{idB}) {
		t.Errorf("stream after removing A: state %s, broadcast %+v", sv.State, sv.Broadcast)
	}
	if st := h.statsTargets(id); len(st) != 1 || st[idB] != "live" {
		t.Errorf("stats targets after removing A: %v, want only %s", st, idB)
	}
	h.expectError("DELETE", "/v1/streams/"+id+"/broadcast/targets/"+idA, nil, http.StatusNotFound, "NOT_FOUND")
	h.expectError("DELETE", "/v1/streams/"+id+"/broadcast/targets/tg_nope", nil, http.StatusNotFound, "NOT_FOUND")

	// B goes on, A gets nothing more.
	if n := recB.waitFrames("keyB", framesB+45, 5*time.Second); n < framesB+45 {
		t.Errorf("ingest B: %d frames when A was removed, %d after", framesB, n)
	}
	if n := h.videoFrames("keyA"); n != framesA {
		t.Errorf("ingest A got %d frames after its target was removed", n-framesA)
	}
	cancel()
	pub.Wait()
	time.Sleep(300 * time.Millisecond) // let the last frame through
	if st, raw := h.call("DELETE", "/v1/streams/"+id+"/broadcast", nil, &bv); st != http.StatusOK || bv.State != "stopped" || !slices.Equal(bv.targetIDs(), []string{idB}) {
		t.Fatalf("stop broadcast: %d %s", st, raw)
	}
	if cmds := recB.waitCommands("keyB", "FCUnpublish", "deleteStream"); !slices.Contains(cmds, "FCUnpublish") || !slices.Contains(cmds, "deleteStream") {
		t.Errorf("ingest B was not told FCUnpublish and deleteStream: %v", cmds)
	}
	h.closeStream(id)

	// What B received is a stream of its own: onMetaData, the AVC sequence
	// header, then a keyframe, then every frame sent from that IDR on, in
	// order, on the source's timeline, and AAC after its sequence header.
	info, msgs := recB.get("keyB")
	if info.App != "live" {
		t.Errorf("ingest B: app %q", info.App)
	}
	var meta map[string]any
	var video []videoTag
	var aacSeq bool
	var aac []uint32
	for i, r := range msgs {
		switch r.msg.Type {
		case 18:
			if meta == nil && r.msg.Handler == "onMetaData" {
				if len(video) > 0 {
					t.Errorf("onMetaData (message %d) after the first video tag", i)
				}
				meta = asMap(t, r.msg.Values)
			}
		case flv.TagVideo:
			video = append(video, parseVideo(t, r))
		case flv.TagAudio:
			if len(video) == 0 {
				t.Fatalf("audio (message %d) before the first video tag", i)
			}
			at, err := flv.ParseAudioTag(r.msg.Body)
			if err != nil || at.SoundFormat != 10 {
				t.Fatalf("audio tag %d: %+v %v, want AAC", i, at, err)
			}
			switch {
			case at.PacketType == 0:
				aacSeq = true
			case !aacSeq:
				t.Fatalf("AAC frame (message %d) before the AAC sequence header", i)
			default:
				aac = append(aac, r.msg.Timestamp)
			}
		}
	}
	if meta == nil {
		t.Fatal("ingest B: no onMetaData")
	}
	for k, want := range map[string]float64{"width": 1280, "height": 720, "videocodecid": 7, "audiocodecid": 10} {
		if got, _ := meta[k].(float64); got != want {
			t.Errorf("ingest B: onMetaData %s = %v, want %v", k, meta[k], want)
		}
	}
	if len(video) < 2 || !video[0].seqHeader {
		t.Fatalf("ingest B: the first video tag is not the AVC sequence header (%d video tags)", len(video))
	}
	frames := videoFramesOf(t, msgs)
	if !video[1].keyframe || video[1].seqHeader {
		t.Fatal("ingest B: the first frame is not a keyframe")
	}
	sent := pub.Sent()
	first := -1
	for i, s := range sent {
		if s.IDR && s.Digest == frames[0].digest && s.FirstPacketAt.Before(frames[0].at) {
			first = i
		}
	}
	if first < 0 {
		t.Fatal("ingest B: the first frame is none the publisher sent as an IDR")
	}
	want := sent[first:]
	t.Logf("ingest B: %d frames from sent frame %d of %d, %d AAC frames; ingest A: %d frames", len(frames), first, len(sent), len(aac), framesA)
	if len(frames) != len(want) {
		t.Fatalf("ingest B got %d frames, the publisher sent %d from its first IDR on", len(frames), len(want))
	}
	for i, f := range frames {
		if f.digest != want[i].Digest || f.keyframe != want[i].IDR {
			t.Fatalf("ingest B: frame %d differs from the one sent", i)
		}
		if i > 0 && f.ts <= frames[i-1].ts {
			t.Fatalf("ingest B: frame %d at %d ms, after %d ms", i, f.ts, frames[i-1].ts)
		}
		srcMs := float64(want[i].PTS-want[0].PTS) / float64(time.Millisecond)
		if d := math.Abs(float64(f.ts-frames[0].ts) - srcMs); d > 1 {
			t.Errorf("ingest B: frame %d %d ms after the first, the source %.2f ms", i, f.ts-frames[0].ts, srcMs)
		}
	}
	if len(aac) < 100 {
		t.Fatalf("ingest B: %d AAC frames", len(aac))
	}
	for i := 1; i < len(aac); i++ {
		if d := int(aac[i]) - int(aac[i-1]); d < 20 || d > 23 {
			t.Fatalf("ingest B: AAC frame %d %d ms after the previous, want 21.3", i, d)
		}
	}

	// And it is a file ffmpeg decodes, H.264 and AAC of the same length.
	path := filepath.Join(t.TempDir(), "keyB.flv")
	writeFLV(t, path, msgs)
	checkAVRecording(t, path, 0.1)
}

// writeFLV writes the audio and video tags an ingest received to an FLV
// file.
func writeFLV(t *testing.T, path string, msgs []received) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w, err := flv.NewWriter(f, true, true)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range msgs {
		if r.msg.Type == flv.TagAudio || r.msg.Type == flv.TagVideo {
			if err := w.WriteTag(r.msg.Type, r.msg.Timestamp, r.msg.Body); err != nil {
				t.Fatal(err)
			}
		}
	}
}
