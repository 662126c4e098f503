package rtmpout

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/castbridge/castbridge/gateway/apierr"
	"github.com/castbridge/castbridge/gateway/events"
	"github.com/castbridge/castbridge/gateway/media"
	"github.com/castbridge/castbridge/transmux/format/flv"
	"github.com/castbridge/castbridge/transmux/format/flv/flvtest"
	"github.com/castbridge/castbridge/transmux/format/mediafile"
	"github.com/castbridge/castbridge/transmux/rtmp/ingest"
)

// These tests drive Targets without WebRTC: frames are handed to each
// target the way the broadcast delivers the video pipeline's, a fake Host
// stands for the stream, and a real in-process RTMP ingest shows what
// reached the wire.

// testLog keeps every log record so a test can tell which paths ran.
type testLog struct {
	mu   sync.Mutex
	recs []logRec
}

type logRec struct {
	msg   string
	attrs map[string]string
}

type testLogHandler struct {
	l     *testLog
	attrs []slog.Attr
}

func (h testLogHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h testLogHandler) Handle(_ context.Context, r slog.Record) error {
	rec := logRec{msg: r.Message, attrs: map[string]string{}}
	for _, a := range h.attrs {
		rec.attrs[a.Key] = a.Value.String()
	}
	r.Attrs(func(a slog.Attr) bool {
		rec.attrs[a.Key] = a.Value.String()
		return true
	})
	h.l.mu.Lock()
	h.l.recs = append(h.l.recs, rec)
	h.l.mu.Unlock()
	return nil
}

func (h testLogHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return testLogHandler{l: h.l, attrs: append(slices.Clip(h.attrs), as...)}
}

func (h testLogHandler) WithGroup(string) slog.Handler { return h }

func newTestLog(t *testing.T) (*testLog, *slog.Logger) {
	l := &testLog{}
	t.Cleanup(func() {
		if t.Failed() {
			l.mu.Lock()
			defer l.mu.Unlock()
			for _, r := range l.recs {
				t.Logf("log: %s %v", r.msg, r.attrs)
			}
		}
	})
	return l, slog.New(testLogHandler{l: l})
}

// testIngest is an in-process RTMP ingest recording what it receives.
type testIngest struct {
	srv  *ingest.Server
	addr string

	mu   sync.Mutex
	msgs []ingest.Message
	cmds []string // "stream:command"

	closeOnce sync.Once
	cancel    context.CancelFunc
	served    chan error
}

// startIngest starts an ingest; hook, when set, runs on the ingest's
// connection goroutine after each message is recorded (blocking it stalls
// the connection).
func startIngest(t testing.TB, hook func(ingest.Message)) *testIngest {
	t.Helper()
	in := &testIngest{served: make(chan error, 1)}
	srv, err := ingest.Listen(ingest.Config{
		Addr: "127.0.0.1:0",
		OnMessage: func(_ string, m ingest.Message) {
			in.mu.Lock()
			in.msgs = append(in.msgs, m)
			in.mu.Unlock()
			if hook != nil {
				hook(m)
			}
		},
		OnCommand: func(stream, cmd string) {
			in.mu.Lock()
			in.cmds = append(in.cmds, stream+":"+cmd)
			in.mu.Unlock()
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	in.srv, in.addr = srv, srv.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	in.cancel = cancel
	go func() { in.served <- srv.Serve(ctx) }()
	t.Cleanup(in.close)
	return in
}

// close stops the ingest, closing its connections, and waits for it.
func (in *testIngest) close() {
	in.closeOnce.Do(func() {
		in.cancel()
		<-in.served
	})
}

func (in *testIngest) messages() []ingest.Message {
	in.mu.Lock()
	defer in.mu.Unlock()
	return slices.Clone(in.msgs)
}

func (in *testIngest) hasCommand(c string) bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	return slices.Contains(in.cmds, c)
}

// msgKind classifies an ingest message: "meta", "seq", "key", "inter" or "other".
func msgKind(m ingest.Message) string {
	switch {
	case m.Type == flv.TagScript && m.Handler == "onMetaData":
		return "meta"
	case m.Type == flv.TagVideo && len(m.Body) >= 2 && m.Body[0]&0x0f == 7 && m.Body[1] == 0:
		return "seq"
	case m.Type == flv.TagVideo && len(m.Body) >= 2 && m.Body[1] == 1 && m.Body[0]>>4 == 1:
		return "key"
	case m.Type == flv.TagVideo && len(m.Body) >= 2 && m.Body[1] == 1:
		return "inter"
	}
	return "other"
}

func kinds(msgs []ingest.Message) []string {
	out := make([]string, len(msgs))
	for i, m := range msgs {
		out[i] = fmt.Sprintf("%s@%d", msgKind(m), m.Timestamp)
	}
	return out
}

// videoFrames returns the coded frames (not sequence headers) received.
func videoFrames(msgs []ingest.Message) []ingest.Message {
	var out []ingest.Message
	for _, m := range msgs {
		if k := msgKind(m); k == "key" || k == "inter" {
			out = append(out, m)
		}
	}
	return out
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// fakeHost is the stream a target serves: it records keyframe requests and
// events.
type fakeHost struct {
	mu       sync.Mutex
	requests []string
	events   []events.Payload
	noVideo  bool
}

func (h *fakeHost) RequestKeyframe(reason string) {
	h.mu.Lock()
	h.requests = append(h.requests, reason)
	h.mu.Unlock()
}

func (h *fakeHost) Publish(p events.Payload) {
	h.mu.Lock()
	h.events = append(h.events, p)
	h.mu.Unlock()
}

func (h *fakeHost) HasVideo() bool                { return !h.noVideo }
func (h *fakeHost) ObservedFPS() float64          { return 30 }
func (h *fakeHost) ObservedVideoBitrate() float64 { return 2_500_000 }
func (h *fakeHost) UserMetadata() map[string]any  { return nil }

func (h *fakeHost) requested(reason string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Contains(h.requests, reason)
}

// rig is a set of targets fed from one frame pool, as a broadcast's are.
type rig struct {
	frames  *media.FramePool
	host    *fakeHost
	targets []*Target
}

// startTargets connects a target to each output and starts its writer.
func startTargets(t testing.TB, log *slog.Logger, outputs ...string) *rig {
	t.Helper()
	return startObservedTargets(t, log, Observers{}, outputs...)
}

// startObservedTargets is startTargets with the targets' timings reported
// to obs.
func startObservedTargets(t testing.TB, log *slog.Logger, obs Observers, outputs ...string) *rig {
	t.Helper()
	r := &rig{frames: media.NewFramePool(), host: &fakeHost{}}
	for i, out := range outputs {
		spec := Spec{Output: out}
		ep, err := spec.Validate()
		if err != nil {
			t.Fatal(err)
		}
		tg := New(context.Background(), fmt.Sprintf("tg_%d", i), spec, ep, nil, r.host,
			Settings{PublishTimeout: 5 * time.Second, Observe: obs, Logger: log})
		if e := tg.Connect(); e != nil {
			t.Fatal(e)
		}
		tg.Start()
		r.targets = append(r.targets, tg)
	}
	return r
}

// feed hands one access unit to every target exactly as the broadcast
// delivers the video pipeline's frames.
func (r *rig) feed(ps *media.ParamSet, ts uint32, nalus [][]byte, key bool) {
	f := r.frames.Get()
	f.TagType = flv.TagVideo
	f.TS = ts
	f.Keyframe = key
	f.Params = ps
	f.RecvAt = time.Now()
	f.Body = flv.AppendAVCNALUs(f.Body, nalus, key, 0)
	for _, t := range r.targets {
		t.Enqueue(f)
	}
	f.Release()
}

// stop stops every target and waits for their writers.
func (r *rig) stop(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, tg := range r.targets {
		tg.Stop(ctx)
	}
	if ctx.Err() != nil {
		t.Fatal("stop timed out")
	}
}

// load720 reads the 1280x720 test clip (IDRs at frames 0 and 135, SPS+PPS
// before each) and its parameter set.
func load720(t testing.TB) ([]mediafile.Frame, *media.ParamSet) {
	t.Helper()
	frames, err := mediafile.ReadH264File(mediafile.TestdataPath("video.h264"))
	if err != nil {
		t.Fatal(err)
	}
	if !frames[0].IDR || !frames[135].IDR || frames[1].IDR {
		t.Fatal("video.h264 is not the clip these tests expect")
	}
	sps, pps := mediafile.ParameterSets(frames[0].NALUs)
	ps, err := media.NewParamSet(sps, pps)
	if err != nil {
		t.Fatal(err)
	}
	if ps.Width != 1280 || ps.Height != 720 {
		t.Fatalf("video.h264 is %dx%d", ps.Width, ps.Height)
	}
	return frames, ps
}

func checkMetadata(t *testing.T, m ingest.Message, width, height int) {
	t.Helper()
	if msgKind(m) != "meta" || !m.SetDataFrame {
		t.Fatalf("want @setDataFrame onMetaData, got %s (handler %q)", msgKind(m), m.Handler)
	}
	md, ok := m.Values.(map[string]any)
	if !ok {
		t.Fatalf("onMetaData values are %T", m.Values)
	}
	if md["width"] != float64(width) || md["height"] != float64(height) {
		t.Errorf("onMetaData is %vx%v, want %dx%d", md["width"], md["height"], width, height)
	}
	if md["videocodecid"] != float64(7) || md["encoder"] != encoderName {
		t.Errorf("onMetaData = %v", md)
	}
}

// TestTargetStartsOnKeyframe: P-frames before the first IDR never reach the
// ingest; video opens with onMetaData, the AVC sequence header and the IDR,
// all at timestamp 0; stop() ends the publish with FCUnpublish and
// deleteStream and leaves no goroutine behind.
func TestTargetStartsOnKeyframe(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	frames, ps := load720(t)
	_, log := newTestLog(t)
	in := startIngest(t, nil)
	defer in.close()

	r := startTargets(t, log, "rtmp://"+in.addr+"/live/cam")
	tg := r.targets[0]
	if st := tg.State(); st != Connecting {
		t.Fatalf("published target before any frame is %s, want connecting", st)
	}

	// Frames 125..134 are P-frames referencing an IDR the target never saw.
	tsOf := func(i int) uint32 { return uint32(1000 + i*33) }
	for i := 125; i < 150; i++ {
		r.feed(ps, tsOf(i), frames[i].NALUs, frames[i].IDR)
	}
	waitFor(t, "15 frames at the ingest", func() bool { return len(videoFrames(in.messages())) >= 15 })
	time.Sleep(20 * time.Millisecond) // anything extra would show now

	msgs := in.messages()
	if len(msgs) != 17 {
		t.Fatalf("ingest got %d messages, want onMetaData + sequence header + 15 frames: %v", len(msgs), kinds(msgs))
	}
	checkMetadata(t, msgs[0], 1280, 720)
	if msgs[0].Timestamp != 0 {
		t.Errorf("onMetaData at %d, want 0", msgs[0].Timestamp)
	}
	if msgKind(msgs[1]) != "seq" || msgs[1].Timestamp != 0 || !bytes.Equal(msgs[1].Body, ps.SeqHeader) {
		t.Fatalf("second message is %s@%d, want the AVC sequence header at 0", msgKind(msgs[1]), msgs[1].Timestamp)
	}
	for k, m := range msgs[2:] {
		i := 135 + k
		wantKind := "inter"
		if k == 0 {
			wantKind = "key"
		}
		if msgKind(m) != wantKind || m.Timestamp != tsOf(i)-tsOf(135) {
			t.Fatalf("message %d is %s@%d, want %s@%d", k+2, msgKind(m), m.Timestamp, wantKind, tsOf(i)-tsOf(135))
		}
		if want := flv.AppendAVCNALUs(nil, frames[i].NALUs, frames[i].IDR, 0); !bytes.Equal(m.Body, want) {
			t.Fatalf("message %d: body differs from frame %d", k+2, i)
		}
	}
	if st := tg.State(); st != Live {
		t.Errorf("state %s after frames were written, want live", st)
	}
	if n := tg.framesSent.Load(); n != 15 {
		t.Errorf("framesSent = %d, want 15", n)
	}
	if n := tg.latency.count.Load(); n != 15 {
		t.Errorf("latency observed %d frames, want 15", n)
	}

	r.stop(t)
	if st := tg.State(); st != Stopped {
		t.Errorf("target state %s after stop, want stopped", st)
	}
	waitFor(t, "FCUnpublish and deleteStream", func() bool {
		return in.hasCommand("cam:FCUnpublish") && in.hasCommand("cam:deleteStream")
	})
	// Frames after the stop go nowhere.
	r.feed(ps, tsOf(150), frames[0].NALUs, true)
	if n := len(in.messages()); n != 17 {
		t.Errorf("ingest got %d messages after stop", n)
	}
	in.close()
}

// TestTargetParameterChange: new SPS/PPS (another resolution) bring a new
// onMetaData and sequence header right before the next IDR; an IDR with the
// parameter set already sent brings none.
func TestTargetParameterChange(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	frames, ps720 := load720(t)
	small := flvtest.GenerateH264(t, 2) // 320x240, IDR every 30 frames; skips without ffmpeg
	ps240, err := media.NewParamSet(small.SPS, small.PPS)
	if err != nil {
		t.Fatal(err)
	}
	if ps240.Width != 320 || ps240.Height != 240 || !small.Units[0].Keyframe || !small.Units[30].Keyframe {
		t.Fatalf("generated stream: %dx%d", ps240.Width, ps240.Height)
	}
	// The publisher going back to 720p makes a new ParamSet (bytes equal to
	// the first, a new value), as the video pipeline would.
	ps720again, err := media.NewParamSet(ps720.SPS, ps720.PPS)
	if err != nil {
		t.Fatal(err)
	}

	_, log := newTestLog(t)
	in := startIngest(t, nil)
	defer in.close()
	r := startTargets(t, log, "rtmp://"+in.addr+"/live/cam")

	steps := []struct {
		ps    *media.ParamSet
		nalus [][]byte
		key   bool
	}{
		{ps720, frames[0].NALUs, true},
		{ps720, frames[1].NALUs, false},
		{ps720, frames[135].NALUs, true}, // same parameters: no header
		{ps720, frames[136].NALUs, false},
		{ps240, small.Units[0].NALUs, true}, // new resolution
		{ps240, small.Units[1].NALUs, false},
		{ps240, small.Units[30].NALUs, true}, // same parameters: no header
		{ps240, small.Units[31].NALUs, false},
		{ps720again, frames[0].NALUs, true}, // back to 720p
	}
	for i, st := range steps {
		r.feed(st.ps, uint32(500+i*33), st.nalus, st.key)
	}
	waitFor(t, "all frames", func() bool { return len(videoFrames(in.messages())) >= len(steps) })
	time.Sleep(20 * time.Millisecond)

	msgs := in.messages()
	want := []string{
		"meta@0", "seq@0", "key@0", "inter@33", "key@66", "inter@99",
		"meta@132", "seq@132", "key@132", "inter@165", "key@198", "inter@231",
		"meta@264", "seq@264", "key@264",
	}
	if got := kinds(msgs); !slices.Equal(got, want) {
		t.Fatalf("ingest got\n%v\nwant\n%v", got, want)
	}
	checkMetadata(t, msgs[0], 1280, 720)
	checkMetadata(t, msgs[6], 320, 240)
	checkMetadata(t, msgs[12], 1280, 720)
	for i, ps := range map[int]*media.ParamSet{1: ps720, 7: ps240, 13: ps720} {
		if !bytes.Equal(msgs[i].Body, ps.SeqHeader) {
			t.Errorf("sequence header %d does not carry the right SPS/PPS", i)
		}
	}
	r.stop(t)
	in.close()
}

// TestTargetQueueOverflow stalls the ingest so that a target's queue fills:
// frames are dropped and counted, a keyframe is asked for, and nothing that
// references a dropped frame is written: the next frame after the gap is an
// IDR. A keyframe already queued before the drop must not end the gap.
func TestTargetQueueOverflow(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	frames, ps := load720(t)
	_, log := newTestLog(t)

	gate := make(chan struct{})
	var gateOnce sync.Once
	openGate := func() { gateOnce.Do(func() { close(gate) }) }
	var gated atomic.Bool
	in := startIngest(t, func(m ingest.Message) {
		// Stall the connection on its first video message (the sequence
		// header): the ingest stops reading, the socket fills up and the
		// target's writer blocks.
		if m.Type == flv.TagVideo && !gated.Swap(true) {
			<-gate
		}
	})
	defer in.close()
	defer openGate()

	r := startTargets(t, log, "rtmp://"+in.addr+"/live/cam")
	tg := r.targets[0]
	capQ := cap(tg.queue)

	delivered := 0
	send := func(i int) uint32 {
		ts := uint32(delivered * 33)
		r.feed(ps, ts, frames[i].NALUs, frames[i].IDR)
		delivered++
		return ts
	}
	send(0) // K0
	p := 0
	nextP := func() int { p = p%134 + 1; return p } // P-frames 1..134

	// Fill the queue up to two free slots while the writer is stuck.
	deadline := time.Now().Add(20 * time.Second)
	for {
		if len(tg.queue) < capQ-2 {
			send(nextP())
			continue
		}
		time.Sleep(100 * time.Millisecond)
		if len(tg.queue) == capQ-2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the target's writer never blocked")
		}
	}
	if n := tg.framesDropped.Load(); n != 0 {
		t.Fatalf("%d frames dropped before the queue was full", n)
	}
	tsK1 := send(135) // IDR, queued
	tsPa := send(136) // queued: the queue is now full
	tsPb := send(137) // dropped
	tsPc := send(138) // dropped
	if n := tg.framesDropped.Load(); n != 2 {
		t.Fatalf("framesDropped = %d after two frames met a full queue, want 2", n)
	}
	if !r.host.requested("target queue full") {
		t.Error("a full queue did not ask the publisher for a keyframe")
	}

	openGate()
	waitFor(t, "the queue to drain", func() bool { return len(tg.queue) == 0 })
	tsPd := send(139) // references the dropped frames
	tsPe := send(140)
	waitFor(t, "the queue to drain", func() bool { return len(tg.queue) == 0 })
	tsK2 := send(0) // the requested IDR
	tsPf := send(1)
	waitFor(t, "the last frame", func() bool {
		fs := videoFrames(in.messages())
		return len(fs) > 0 && fs[len(fs)-1].Timestamp == tsPf
	})

	written := videoFrames(in.messages())
	byTS := map[uint32]string{}
	for _, m := range written {
		byTS[m.Timestamp] = msgKind(m)
	}
	for _, ts := range []uint32{tsPb, tsPc, tsPd, tsPe} {
		if k, ok := byTS[ts]; ok {
			t.Errorf("frame at %d (after the drop, before the next IDR) was written as %s", ts, k)
		}
	}
	tail := kinds(written[len(written)-4:])
	want := []string{fmt.Sprintf("key@%d", tsK1), fmt.Sprintf("inter@%d", tsPa), fmt.Sprintf("key@%d", tsK2), fmt.Sprintf("inter@%d", tsPf)}
	if !slices.Equal(tail, want) {
		t.Errorf("last frames written %v, want %v", tail, want)
	}
	// The first frame written past the gap is a keyframe.
	for _, m := range written {
		if m.Timestamp > tsPb {
			if msgKind(m) != "key" {
				t.Errorf("first frame after the drop is %s@%d", msgKind(m), m.Timestamp)
			}
			break
		}
	}
	sent, dropped := tg.framesSent.Load(), tg.framesDropped.Load()
	if sent != uint64(len(written)) {
		t.Errorf("framesSent = %d, ingest got %d frames", sent, len(written))
	}
	if sent+dropped != uint64(delivered) {
		t.Errorf("framesSent %d + framesDropped %d != %d frames delivered", sent, dropped, delivered)
	}
	if seqs := slices.DeleteFunc(kinds(in.messages()), func(k string) bool { return k[:3] != "seq" }); len(seqs) != 1 {
		t.Errorf("sequence headers: %v, want one", seqs)
	}
	if st := tg.State(); st != Live {
		t.Errorf("state %s, want live", st)
	}
	r.stop(t)
	if st := tg.State(); st != Stopped {
		t.Errorf("state %s after stop, want stopped", st)
	}
	waitFor(t, "deleteStream", func() bool { return in.hasCommand("cam:deleteStream") })
	in.close()
}

// TestTargetIngestCloses: an ingest that drops the connection fails the
// target with INGEST_UNREACHABLE; it never shows (or stays) live.
func TestTargetIngestCloses(t *testing.T) {
	for _, live := range []bool{false, true} {
		t.Run(map[bool]string{false: "before keyframe", true: "while live"}[live], func(t *testing.T) {
			defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
			frames, ps := load720(t)
			_, log := newTestLog(t)
			in := startIngest(t, nil)
			defer in.close()
			r := startTargets(t, log, "rtmp://"+in.addr+"/live/cam")
			tg := r.targets[0]

			i := 0
			next := func() {
				idx := 1 + i%134 // P-frames only
				if live && i == 0 {
					idx = 0
				}
				r.feed(ps, uint32(i*33), frames[idx].NALUs, frames[idx].IDR)
				i++
			}
			for range 10 {
				next()
			}
			if live {
				waitFor(t, "live", func() bool { return tg.State() == Live })
				waitFor(t, "frames at the ingest", func() bool { return len(videoFrames(in.messages())) == 10 })
			} else {
				time.Sleep(20 * time.Millisecond)
				if st := tg.State(); st != Connecting {
					t.Fatalf("state %s without a keyframe, want connecting", st)
				}
			}

			in.close() // closes the publisher's connection
			waitFor(t, "failed", func() bool {
				next() // frames keep coming meanwhile
				st := tg.State()
				if !live && st == Live {
					t.Fatal("target went live on a closed ingest")
				}
				return st == Failed
			})
			e := tg.Err()
			if e == nil || e.Code != apierr.CodeIngestUnreachable {
				t.Fatalf("error %v, want %s", e, apierr.CodeIngestUnreachable)
			}
			if info := tg.Info(); info.State != Failed || info.Error == nil || info.Error.Code != apierr.CodeIngestUnreachable {
				t.Errorf("Info() = %+v", info)
			}
			if !live && tg.framesSent.Load() != 0 {
				t.Errorf("%d frames sent without a keyframe", tg.framesSent.Load())
			}
			// Once the writer is gone, later frames are not taken, and
			// stopping leaves the target failed.
			<-tg.done
			next()
			if n := len(tg.queue); n != 0 {
				t.Errorf("a failed target queued %d frames", n)
			}
			r.stop(t)
			if st := tg.State(); st != Failed {
				t.Errorf("state %s after stop, want failed", st)
			}
		})
	}
}

// TestTargetStopCutsStalledIngest: an ingest that stopped reading holds the
// writer in a write; Stop's deadline cuts the connection, the writer ends
// before Stop returns, and the target stops without trying to reconnect.
func TestTargetStopCutsStalledIngest(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	frames, ps := load720(t)
	_, log := newTestLog(t)
	gate := make(chan struct{})
	var gated atomic.Bool
	in := startIngest(t, func(m ingest.Message) {
		if m.Type == flv.TagVideo && !gated.Swap(true) {
			<-gate // the ingest stops reading: its socket fills up
		}
	})
	defer in.close()
	defer close(gate)

	r := startTargets(t, log, "rtmp://"+in.addr+"/live/cam")
	tg := r.targets[0]
	// Feed until the writer is stuck: the queue stops draining.
	deadline := time.Now().Add(20 * time.Second)
	for i := 0; ; i++ {
		r.feed(ps, uint32(i*33), frames[i%len(frames)].NALUs, i%len(frames) == 0 || i%len(frames) == 135)
		if len(tg.queue) > cap(tg.queue)/2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the writer never blocked")
		}
		if i%50 == 0 {
			time.Sleep(10 * time.Millisecond)
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	began := time.Now()
	tg.Stop(ctx)
	took := time.Since(began)
	select {
	case <-tg.done:
	default:
		t.Fatal("Stop returned before the writer ended")
	}
	// A clean close would wait out the publisher's 1 s close deadline.
	if took > 900*time.Millisecond {
		t.Errorf("Stop took %v with a 100 ms deadline", took)
	}
	if st := tg.State(); st != Stopped {
		t.Errorf("state %s after Stop, want stopped", st)
	}
	r.host.mu.Lock()
	defer r.host.mu.Unlock()
	for _, ev := range r.host.events {
		if _, ok := ev.(TargetReconnecting); ok {
			t.Errorf("a stopped target reported %s", ev.EventName())
		}
	}
}

// startGatedIngest is a test ingest that stops reading at its next video
// message once stall is set (its socket fills up), until openGate.
func startGatedIngest(t *testing.T) (in *testIngest, stall *atomic.Bool, openGate func()) {
	gate := make(chan struct{})
	var once sync.Once
	stall = new(atomic.Bool)
	in = startIngest(t, func(m ingest.Message) {
		if m.Type == flv.TagVideo && stall.Load() {
			<-gate
		}
	})
	return in, stall, func() { once.Do(func() { close(gate) }) }
}

// TestTargetStalled: an ingest that stops reading leaves the writer stuck
// in a write. The target reports stalled (State, Info, Stats) within a
// second of its queue ceasing to drain, with one TargetStalled event, and
// is live again with a TargetRecovered once the ingest reads again.
func TestTargetStalled(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	frames, ps := load720(t)
	_, log := newTestLog(t)
	in, stall, openGate := startGatedIngest(t)
	defer in.close()
	defer openGate()

	r := startTargets(t, log, "rtmp://"+in.addr+"/live/cam")
	tg := r.targets[0]
	i := 0
	next := func() {
		idx := i % 135
		r.feed(ps, uint32(i*33), frames[idx].NALUs, frames[idx].IDR)
		i++
	}
	// Live at a publisher's pace: never stalled.
	for range 30 {
		next()
		if tg.Stalled() {
			t.Fatal("stalled while the ingest reads")
		}
		time.Sleep(33 * time.Millisecond)
	}
	waitFor(t, "live", func() bool { return tg.State() == Live })

	stall.Store(true)
	var blockedAt time.Time // when the queue was seen not draining
	var stalledAt time.Time
	for deadline := time.Now().Add(20 * time.Second); stalledAt.IsZero(); {
		next()
		time.Sleep(10 * time.Millisecond) // faster than real time: the socket fills sooner
		if blockedAt.IsZero() && len(tg.queue) >= 5 {
			blockedAt = time.Now()
		}
		if tg.Stalled() {
			stalledAt = time.Now()
		}
		if time.Now().After(deadline) {
			t.Fatalf("not stalled; queue %d, state %s", len(tg.queue), tg.State())
		}
	}
	if blockedAt.IsZero() {
		t.Fatal("stalled before its queue stopped draining")
	}
	t.Logf("stalled %v after the queue was seen not draining (queue %d, queueMs %v)", stalledAt.Sub(blockedAt), len(tg.queue), tg.queueMs())
	if d := stalledAt.Sub(blockedAt); d > time.Second {
		t.Errorf("stalled %v after the queue stopped draining, want within 1 s", d)
	}
	// API.md: "stalled": true, the state stays live.
	if info := tg.Info(); !info.Stalled || info.State != Live {
		t.Errorf("Info() = state %s stalled %v, want live and stalled", info.State, info.Stalled)
	}
	st := tg.Stats(time.Now())
	if !st.Stalled || st.State != Live || st.QueueMs <= 0 {
		t.Errorf("Stats() = state %s stalled %v queueMs %v, want live, stalled, with a queue", st.State, st.Stalled, st.QueueMs)
	}
	countEvents := func() (stalled []TargetStalled, recovered []TargetRecovered) {
		r.host.mu.Lock()
		defer r.host.mu.Unlock()
		for _, ev := range r.host.events {
			switch e := ev.(type) {
			case TargetStalled:
				stalled = append(stalled, e)
			case TargetRecovered:
				recovered = append(recovered, e)
			}
		}
		return stalled, recovered
	}
	if s, rec := countEvents(); len(s) != 1 || len(rec) != 0 {
		t.Fatalf("events while stalled: %v stalled, %v recovered; want one TargetStalled", s, rec)
	} else if s[0].TargetID != "tg_0" || s[0].BlockedMs < stallAfter.Milliseconds() || s[0].Output != "rtmp://"+in.addr+"/live/****" {
		t.Errorf("TargetStalled = %+v", s[0])
	}

	stall.Store(false)
	openGate()
	waitFor(t, "no longer stalled", func() bool { next(); time.Sleep(10 * time.Millisecond); return !tg.Stalled() })
	s, rec := countEvents()
	if len(s) != 1 || len(rec) != 1 {
		t.Fatalf("events after the gate opened: %v stalled, %v recovered; want one of each", s, rec)
	}
	if rec[0].TargetID != "tg_0" || rec[0].StalledMs < stallAfter.Milliseconds() {
		t.Errorf("TargetRecovered = %+v", rec[0])
	}
	// Draining at a publisher's pace it stays live.
	for range 30 {
		next()
		if st := tg.State(); st != Live || tg.Stalled() {
			t.Fatalf("state %s, stalled %v after recovering", st, tg.Stalled())
		}
		time.Sleep(33 * time.Millisecond)
	}
	r.stop(t)
}

// TestTargetWritesInline: while the ingest keeps up, the enqueuer writes
// each frame itself (no wake-up of the writer goroutine), and every frame
// reaches the ingest in order.
func TestTargetWritesInline(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	frames, ps := load720(t)
	_, log := newTestLog(t)
	in := startIngest(t, nil)
	defer in.close()
	r := startTargets(t, log, "rtmp://"+in.addr+"/live/cam")
	tg := r.targets[0]
	const n = 60
	for i := range n {
		r.feed(ps, uint32(i*33), frames[i].NALUs, frames[i].IDR)
		time.Sleep(5 * time.Millisecond)
	}
	waitFor(t, "every frame", func() bool { return len(videoFrames(in.messages())) == n })
	if got := tg.inlineTakes.Load(); got < n*9/10 {
		t.Errorf("%d of %d frames written by their enqueuer, want nearly all", got, n)
	}
	for i, m := range videoFrames(in.messages()) {
		if m.Timestamp != uint32(i*33) {
			t.Fatalf("frame %d at %d ms, want %d", i, m.Timestamp, i*33)
		}
	}
	r.stop(t)
}

// TestTargetEnqueueNeverWaits: an ingest that stops reading never holds up
// the enqueuer, though it writes frames itself: what the socket cannot
// take is kept back and written by the writer goroutine, and once the
// ingest reads again the frames arrive in order.
func TestTargetEnqueueNeverWaits(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	frames, ps := load720(t)
	_, log := newTestLog(t)
	in, stall, openGate := startGatedIngest(t)
	defer in.close()
	defer openGate()
	r := startTargets(t, log, "rtmp://"+in.addr+"/live/cam")
	tg := r.targets[0]
	r.feed(ps, 0, frames[0].NALUs, true)
	waitFor(t, "live", func() bool { return tg.State() == Live })
	stall.Store(true)
	var slowest time.Duration
	for i := 1; i < 400; i++ {
		f := frames[i%len(frames)]
		start := time.Now()
		r.feed(ps, uint32(i*33), f.NALUs, f.IDR)
		slowest = max(slowest, time.Since(start))
	}
	if slowest > 200*time.Millisecond {
		t.Errorf("an enqueue took %v with the ingest not reading", slowest)
	}
	if tg.inlineTakes.Load() < 2 {
		t.Errorf("%d frames written by their enqueuer: the test did not write inline against a full socket", tg.inlineTakes.Load())
	}
	stall.Store(false)
	openGate()
	r.feed(ps, 400*33, frames[0].NALUs, true)
	waitFor(t, "the last frame", func() bool {
		v := videoFrames(in.messages())
		return len(v) > 0 && v[len(v)-1].Timestamp == 400*33
	})
	v := videoFrames(in.messages())
	for i := 1; i < len(v); i++ {
		if v[i].Timestamp <= v[i-1].Timestamp {
			t.Fatalf("frame %d at %d ms after %d ms", i, v[i].Timestamp, v[i-1].Timestamp)
		}
	}
	t.Logf("slowest enqueue %v; %d frames delivered, %d dropped", slowest, len(v), tg.framesDropped.Load())
	r.stop(t)
}
