package video

import (
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtcp"

	"github.com/castbridge/castbridge/gateway/avclock"
	"github.com/castbridge/castbridge/gateway/media"
	"github.com/castbridge/castbridge/transmux/format/flv"
	"github.com/castbridge/castbridge/transmux/format/mediafile"
	"github.com/castbridge/castbridge/transmux/rtp/rtph264"
)

// fakeFeedback records what the pipeline sends the publisher.
type fakeFeedback struct {
	mu   sync.Mutex
	plis int
}

func (f *fakeFeedback) SendNACK(uint32, []rtcp.NackPair) {}
func (f *fakeFeedback) SendPLI(uint32) {
	f.mu.Lock()
	f.plis++
	f.mu.Unlock()
}

// delivered is one frame as the sink saw it.
type delivered struct {
	ts     uint32
	key    bool
	params *media.ParamSet
	body   []byte
}

type recordingSink struct{ frames []delivered }

func (r *recordingSink) Deliver(f *media.Frame) {
	r.frames = append(r.frames, delivered{ts: f.TS, key: f.Keyframe, params: f.Params, body: append([]byte(nil), f.Body...)})
}

// TestRepeatedParameterSets goes through onAccessUnit: a publisher
// repeating the same SPS/PPS before every IDR keeps one parameter set (so
// targets send one sequence header), P-frames before the first IDR are held
// back, timestamps keep the RTP timing across the 32-bit wrap, and the
// audio is told where every frame ends.
func TestRepeatedParameterSets(t *testing.T) {
	frames, err := mediafile.ReadH264File(mediafile.TestdataPath("video.h264"))
	if err != nil {
		t.Fatal(err)
	}
	if !frames[0].IDR || !frames[135].IDR || frames[1].IDR {
		t.Fatal("video.h264 is not the clip this test expects")
	}
	fb := &fakeFeedback{}
	var ends []int64
	v := New(Config{
		Feedback:         fb,
		Clock:            avclock.New(),
		Frames:           media.NewFramePool(),
		KeyframeInterval: 2 * time.Second,
		OnFrame:          func(_ time.Time, _, end int64) { ends = append(ends, end) },
		Logger:           slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	defer v.Close()
	sink := &recordingSink{}
	v.SetSink(sink)
	v.Start(0x1234)
	if fb.plis != 1 {
		t.Fatalf("a starting track sent %d PLIs, want 1", fb.plis)
	}

	// Join mid-GOP: 130..134 are P-frames, then the IDR at 135 (with
	// SPS/PPS), then the whole clip again from its IDR at 0 (SPS/PPS again).
	order := []int{130, 131, 132, 133, 134, 135, 136, 137}
	for k := range 150 {
		order = append(order, k)
	}
	rtpTS := uint32(0xfffff000) // wraps during the test
	for _, i := range order {
		au := rtph264.AccessUnit{Timestamp: rtpTS, NALUs: frames[i].NALUs, IDR: frames[i].IDR}
		au.SPS, au.PPS = mediafile.ParameterSets(frames[i].NALUs)
		v.onAccessUnit(&au, time.Now())
		rtpTS += 3000
	}

	if len(sink.frames) != 153 {
		t.Fatalf("sink got %d frames, want 153 (all but the 5 P-frames before the first IDR)", len(sink.frames))
	}
	first := sink.frames[0]
	if !first.key || first.params == nil || first.params.Width != 1280 || first.params.Height != 720 {
		t.Fatalf("first frame: key %v, params %+v", first.key, first.params)
	}
	for i, f := range sink.frames {
		if f.params != first.params {
			t.Fatalf("frame %d: identical SPS/PPS made a new parameter set", i)
		}
		if i > 0 && f.ts < sink.frames[i-1].ts {
			t.Fatalf("timestamp went back at frame %d: %d after %d", i, f.ts, sink.frames[i-1].ts)
		}
	}
	// Frame 135 of the clip, the first delivered, carries its NALUs muxed.
	if want := flv.AppendAVCNALUs(nil, frames[135].NALUs, true, 0); string(first.body) != string(want) {
		t.Error("the first frame's body is not frame 135 muxed")
	}
	// 152 frames of 3000 ticks after the first one delivered.
	if d, want := sink.frames[152].ts-first.ts, uint32(152*3000/90); d != want && d != want+1 {
		t.Errorf("last frame %d ms after the first, want about %d", d, want)
	}
	if len(ends) != len(order) {
		t.Fatalf("the audio was told of %d frames, want %d", len(ends), len(order))
	}
	if last := sink.frames[152].ts; ends[len(ends)-1] <= int64(last) {
		t.Errorf("the last frame ends at %d, not after its start %d", ends[len(ends)-1], last)
	}
	if c := v.Counters(); c.Frames != uint64(len(order)) || c.Keyframes != 3 {
		t.Errorf("counters %+v, want %d frames and 3 keyframes", c, len(order))
	}

	// Once the sink is cleared, nothing more is delivered.
	v.ClearSink(sink)
	au := rtph264.AccessUnit{Timestamp: rtpTS, NALUs: frames[0].NALUs, IDR: true}
	v.onAccessUnit(&au, time.Now())
	if len(sink.frames) != 153 {
		t.Errorf("a cleared sink still got frames")
	}
}

// TestRTPTimestampJumpsRebased: a publisher whose RTP timestamps jump back
// to 0 (a looping file source; sequence numbers go on) and later ahead by
// an hour, with no new SSRC. The frames keep their 30 fps spacing across
// both jumps: no frame at the time of the one before (frozen), none leaping.
func TestRTPTimestampJumpsRebased(t *testing.T) {
	frames, err := mediafile.ReadH264File(mediafile.TestdataPath("video.h264"))
	if err != nil {
		t.Fatal(err)
	}
	v := New(Config{
		Feedback:         &fakeFeedback{},
		Clock:            avclock.New(),
		Frames:           media.NewFramePool(),
		KeyframeInterval: 2 * time.Second,
		Logger:           slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	defer v.Close()
	sink := &recordingSink{}
	v.SetSink(sink)
	v.Start(0x1234)
	t0 := time.Now()
	for k := range 200 {
		rtpTS := uint32(2_000_000_000 + k*3000)
		switch {
		case k >= 130:
			rtpTS = uint32((k-60)*3000) + 3600*90000
		case k >= 60:
			rtpTS = uint32((k - 60) * 3000) // the loop restarts at 0
		}
		i := k % 135 // IDRs at 0 and 135
		au := rtph264.AccessUnit{Timestamp: rtpTS, NALUs: frames[i].NALUs, IDR: frames[i].IDR}
		au.SPS, au.PPS = mediafile.ParameterSets(frames[i].NALUs)
		v.onAccessUnit(&au, t0.Add(time.Duration(k)*time.Second/30))
	}
	if len(sink.frames) != 200 {
		t.Fatalf("sink got %d frames, want 200", len(sink.frames))
	}
	for i := 1; i < len(sink.frames); i++ {
		if d := sink.frames[i].ts - sink.frames[i-1].ts; d < 33 || d > 34 {
			t.Errorf("frame %d at %d ms, %d ms after the one before (want 33-34)", i, sink.frames[i].ts, d)
		}
	}
	if want := uint32(199 * 1000 / 30); sink.frames[199].ts-sink.frames[0].ts != want && sink.frames[199].ts-sink.frames[0].ts != want+1 {
		t.Errorf("200 frames span %d ms, want %d", sink.frames[199].ts-sink.frames[0].ts, want)
	}
	if v.cont.Jumps() != 2 || v.RTPOffset() == 0 {
		t.Errorf("%d jumps rebased (offset %d), want 2", v.cont.Jumps(), v.RTPOffset())
	}
}
