package audio

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/castbridge/castbridge/gateway/avclock"
	"github.com/castbridge/castbridge/gateway/media"
	"github.com/castbridge/castbridge/transmux/codec/opusdec"
	"github.com/castbridge/castbridge/transmux/format/flv"
	"github.com/castbridge/castbridge/transmux/format/mediafile"
)

// recordingSink keeps the stream time of every frame, per output.
type recordingSink struct {
	mu  sync.Mutex
	got map[Output][]uint32
	// end is the end (TS + DurationMs) of the newest frame per output.
	end map[Output]uint32
}

func (r *recordingSink) SendAudio(src Output, f *media.Frame) {
	if f.TagType != flv.TagAudio || f.AudioHeader == nil {
		panic("not an audio frame with its sequence header")
	}
	r.mu.Lock()
	if r.got == nil {
		r.got = map[Output][]uint32{}
	}
	r.got[src] = append(r.got[src], f.TS)
	if r.end == nil {
		r.end = map[Output]uint32{}
	}
	r.end[src] = f.TS + f.DurationMs
	r.mu.Unlock()
}

func (r *recordingSink) lastEnd(src Output) (uint32, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.end[src]
	return e, ok
}

func (r *recordingSink) frames(src Output) []uint32 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]uint32(nil), r.got[src]...)
}

func newTestPipeline(followsVideo bool) (*Pipeline, *avclock.Clock) {
	clock := avclock.New()
	return New(Config{Clock: clock, Frames: media.NewFramePool(), FollowsVideo: followsVideo,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}), clock
}

// TestFollowVideoNeverWaits: the video goroutine's call takes no lock the
// audio holds while it decodes and encodes.
func TestFollowVideoNeverWaits(t *testing.T) {
	p, _ := newTestPipeline(true)
	p.mu.Lock() // as while an AAC frame encodes
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 100 {
			p.FollowVideo(time.Now(), int64(i*33)-33, int64(i*33))
		}
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("FollowVideo waited for the audio's lock")
	}
	p.mu.Unlock()
	if got := p.videoEnd.Load(); got != 99*33 {
		t.Errorf("video end %d, want %d", got, 99*33)
	}
}

// TestOpusSilenceOnVideoGoroutine: with only an Opus passthrough (canned
// silence packets), FollowVideo fills the silence itself, before it
// returns, so no wake-up of Run a video frame; an output that encodes
// leaves the fill to Run (no Run here: nothing comes).
func TestOpusSilenceOnVideoGoroutine(t *testing.T) {
	for _, encodes := range []bool{false, true} {
		p, clock := newTestPipeline(true)
		sink := &recordingSink{}
		outs := p.NewOutputs(sink)
		opus := outs.Opus()
		if encodes {
			if _, err := outs.AAC(128000); err != nil {
				t.Fatal(err)
			}
		}
		outs.Install()
		start := time.Now()
		clock.VideoMillis(0, 0, start)
		for i := range 10 {
			p.FollowVideo(start, int64(i*33), int64(i*33+33))
			end, ok := sink.lastEnd(opus)
			switch {
			case !encodes && (!ok || end < uint32(i*33)):
				t.Fatalf("Opus only, video frame %d at %d ms: the silence ends at %d ms (any: %v) when FollowVideo returns", i, i*33, end, ok)
			case encodes && ok:
				t.Fatalf("with AAC: silence up to %d ms filled on the video goroutine", end)
			}
		}
		outs.Uninstall()
	}
}

// TestSilenceFollowsVideo: with no audio track, a stream with video gets
// silent AAC from its first video frame on, up to where the video ends and
// the encoder's delay (aacLeadMs) past it, no further.
func TestSilenceFollowsVideo(t *testing.T) {
	p, clock := newTestPipeline(true)
	sink := &recordingSink{}
	outs := p.NewOutputs(sink)
	aac, err := outs.AAC(128000)
	if err != nil {
		t.Fatal(err)
	}
	outs.Install()
	defer runClock(p)()

	start := time.Now()
	clock.VideoMillis(0, 0, start) // the first video frame: stream time 0
	if n := len(sink.frames(aac)); n != 0 {
		t.Fatalf("%d AAC frames before the video said where it is", n)
	}
	// 16 frames of 33 ms at their pace, then the publisher stops.
	const frames = 16
	videoEnd := int64(frames * 33)
	for i := range frames {
		sleepUntil(start.Add(time.Duration(i*33) * time.Millisecond))
		p.FollowVideo(time.Now(), int64(i*33), int64(i*33+33))
	}
	time.Sleep(200 * time.Millisecond) // past the fill's lag: nothing more
	outs.Uninstall()                   // brings the audio to the video's end and flushes
	ts := sink.frames(aac)
	if len(ts) == 0 {
		t.Fatal("no AAC frames for a stream with video and no audio track")
	}
	// The silence reaches back to the first video frame (the first fill
	// comes once the fill's lag has passed) and runs in 1024-sample frames
	// from there.
	base := int64(ts[0])
	if base != 0 {
		t.Errorf("silence starts at %d ms, not with the video's first frame", base)
	}
	for i, v := range ts {
		if want := base + (int64(i)*1024*1000+Rate/2)/Rate; int64(v) != want && int64(v) != want+1 {
			t.Fatalf("frame %d at %d ms, want %d (1024 samples each from %d): %v", i, v, want, base, ts)
		}
	}
	// It ends with the video and the encoder's delay: not past them, and
	// not more than the flush's padding and one 20 ms fill step short.
	last, audioEnd := int64(ts[len(ts)-1]), videoEnd+aacLeadMs
	if last > audioEnd || last < audioEnd-2*1024*1000/Rate-20 {
		t.Errorf("silence's last frame at %d ms, video ends at %d (+%d ms)", last, videoEnd, aacLeadMs)
	}
	filled, want := p.ConcealedSamples(), (audioEnd-base)*Rate/1000
	if filled > want || filled <= want-opusFrameSamples {
		t.Errorf("%d samples filled, want %d (from %d to %d ms, in whole 20 ms steps)", filled, want, base, audioEnd)
	}
	if n := len(sink.frames(aac)); n != len(ts) {
		t.Errorf("%d frames after the outputs were uninstalled", n-len(ts))
	}
}

// TestSilenceCoversEachVideoFrame: with no audio track, an Opus
// passthrough's silence and the silent AAC reach each video frame's time
// as soon as the frame is announced, the Opus packets saying they last 20
// ms: the targets
// hold a video frame until the audio has come that far, so silence filled
// only to "now" in 20 ms steps delayed the video by one or two frames.
func TestSilenceCoversEachVideoFrame(t *testing.T) {
	p, clock := newTestPipeline(true)
	sink := &recordingSink{}
	outs := p.NewOutputs(sink)
	opus := outs.Opus()
	aac, err := outs.AAC(128000)
	if err != nil {
		t.Fatal(err)
	}
	outs.Install()
	defer outs.Uninstall()
	defer runClock(p)()
	start := time.Now()
	clock.VideoMillis(0, 0, start)
	for i := range 15 {
		sleepUntil(start.Add(time.Duration(i*33) * time.Millisecond))
		p.FollowVideo(time.Now(), int64(i*33), int64(i*33+33))
		deadline := time.Now().Add(time.Second)
		for {
			// An AAC frame lasts 1024 samples (21 ms as the targets count).
			end, ok := sink.lastEnd(opus)
			aacEnd, aok := sink.lastEnd(aac)
			if ok && end >= uint32(i*33) && aok && aacEnd+21 >= uint32(i*33) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("video frame %d at %d ms: the Opus silence ends at %d ms (any: %v), the AAC at %d+21 ms (any: %v) a second after",
					i, i*33, end, ok, aacEnd, aok)
			}
			time.Sleep(time.Millisecond)
		}
	}
	ts := sink.frames(opus)
	for i := 1; i < len(ts); i++ {
		if ts[i]-ts[i-1] != 20 {
			t.Fatalf("silence packets at %v, want 20 ms apart", ts)
		}
	}
	if end, _ := sink.lastEnd(opus); end > 15*33+aacLeadMs {
		t.Errorf("silence ends at %d ms, past the video's end %d and the AAC encoder's delay", end, 15*33)
	}
}

// runClock starts p's clock goroutine (Run); the function it returns
// stops and joins it.
func runClock(p *Pipeline) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan struct{})
	go func() {
		defer close(ran)
		p.Run(ctx)
	}()
	return func() {
		cancel()
		<-ran
	}
}

func sleepUntil(t time.Time) {
	if d := time.Until(t); d > 0 {
		time.Sleep(d)
	}
}

// BenchmarkOpusPacket is one 20 ms packet of real Opus through the
// pipeline into an Opus passthrough, with and without an AAC output
// beside it: without one, nothing is decoded.
func BenchmarkOpusPacket(b *testing.B) {
	pkts, err := mediafile.ReadOpusFile("../../testdata/audio.ogg")
	if err != nil {
		b.Fatal(err)
	}
	for _, withAAC := range []bool{false, true} {
		b.Run(fmt.Sprintf("aac=%v", withAAC), func(b *testing.B) {
			p, _ := newTestPipeline(false)
			if err := p.StartTrack(); err != nil {
				b.Fatal(err)
			}
			outs := p.NewOutputs(discardSink{})
			if withAAC {
				if _, err := outs.AAC(128000); err != nil {
					b.Fatal(err)
				}
			}
			outs.Opus()
			outs.Install()
			t0 := time.Now()
			var ts uint32
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				pk := pkts[i%len(pkts)]
				p.onPacket(ts, pk.Data, t0.Add(time.Duration(ts)*time.Second/Rate))
				ts += uint32(opusdec.PacketSamples(pk.Data))
			}
		})
	}
}

type discardSink struct{}

func (discardSink) SendAudio(_ Output, f *media.Frame) {}

// TestAudioStartsWithVideo: a publisher's first audio packet that comes
// after its first video frame starts the audio at or before that frame,
// with silence up to the packet in whole 20 ms frames, so a target that
// opens on the video's first keyframe has audio covering it (MediaMTX's
// recorder discards the keyframe when the audio starts after it). Audio
// starting more than maxLeadIn after the video, or a stream without
// video, starts where its packet is.
func TestAudioStartsWithVideo(t *testing.T) {
	pkts, err := mediafile.ReadOpusFile("../../testdata/audio.ogg")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name         string
		followsVideo bool
		videoAt      int64 // stream ms of the first video frame; -1: none
		audioAfter   time.Duration
		wantFirst    int64 // the first Opus and AAC frame's stream ms
	}{
		{"audio 30 ms after", true, 50, 80 * time.Millisecond, 40},
		{"audio 5 ms after", true, 75, 80 * time.Millisecond, 60},
		{"audio at stream start", true, 0, 30 * time.Millisecond, 0},
		{"audio first", true, 100, 80 * time.Millisecond, 80},
		{"audio long after", true, 50, 1500 * time.Millisecond, 1500},
		{"no video", false, -1, 80 * time.Millisecond, 80},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, clock := newTestPipeline(tc.followsVideo)
			if err := p.StartTrack(); err != nil {
				t.Fatal(err)
			}
			sink := &recordingSink{}
			outs := p.NewOutputs(sink)
			opus := outs.Opus()
			aac, err := outs.AAC(128000)
			if err != nil {
				t.Fatal(err)
			}
			outs.Install()
			start := time.Unix(1_700_000_000, 0)
			clock.VideoMillis(0, 0, start) // stream time 0
			if tc.videoAt >= 0 {
				p.FollowVideo(start, tc.videoAt, tc.videoAt+33)
			}
			var ts uint32
			for i := range 20 {
				pk := pkts[i%len(pkts)]
				p.onPacket(ts, pk.Data, start.Add(tc.audioAfter+time.Duration(ts)*time.Second/Rate))
				ts += uint32(opusdec.PacketSamples(pk.Data))
			}
			outs.Uninstall()
			o, a := sink.frames(opus), sink.frames(aac)
			if len(o) < 20 || len(a) < 10 {
				t.Fatalf("%d Opus and %d AAC frames", len(o), len(a))
			}
			if int64(o[0]) != tc.wantFirst || int64(a[0]) != tc.wantFirst {
				t.Errorf("the audio starts at %d ms (Opus), %d ms (AAC), want %d", o[0], a[0], tc.wantFirst)
			}
			for i := 1; i < len(o); i++ {
				if o[i]-o[i-1] != 20 {
					t.Fatalf("Opus frames %v: not 20 ms apart", o)
				}
			}
			// The publisher's packets keep their times: the silence ends
			// where the first one begins.
			silent := (int64(tc.audioAfter/time.Millisecond) - tc.wantFirst) * Rate / 1000
			if got := p.ConcealedSamples(); got != silent {
				t.Errorf("%d samples of silence, want %d", got, silent)
			}
		})
	}
}
