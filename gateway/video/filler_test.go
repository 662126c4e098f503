package video

import (
	"bytes"
	"encoding/binary"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/castbridge/castbridge/gateway/avclock"
	"github.com/castbridge/castbridge/gateway/media"
	"github.com/castbridge/castbridge/transmux/codec/h264black"
	"github.com/castbridge/castbridge/transmux/format/flv"
	"github.com/castbridge/castbridge/transmux/format/mediafile"
	"github.com/castbridge/castbridge/transmux/rtp/rtpframe"
	"github.com/castbridge/castbridge/transmux/rtp/rtph264"
)

// fillerRig is an H.264 pipeline fed the test clip at 30 fps on a virtual
// clock, with the filler driven by hand (fillTick) instead of RunFiller.
type fillerRig struct {
	t      testing.TB
	v      *Pipeline
	fb     *fakeFeedback
	sink   *recordingSink
	frames []mediafile.Frame
	t0     time.Time
	audio  atomic.Bool
	events []bool
}

func newFillerRig(t testing.TB) *fillerRig {
	frames, err := mediafile.ReadH264File(mediafile.TestdataPath("video.h264"))
	if err != nil {
		t.Fatal(err)
	}
	r := &fillerRig{t: t, fb: &fakeFeedback{}, sink: &recordingSink{}, frames: frames, t0: time.Now()}
	r.audio.Store(true)
	r.v = New(Config{
		Feedback:         r.fb,
		Clock:            avclock.New(),
		Frames:           media.NewFramePool(),
		KeyframeInterval: 2 * time.Second,
		VideoGap:         time.Second,
		AudioFlowing:     func(time.Time) bool { return r.audio.Load() },
		OnFiller:         func(active bool, _ FillReason) { r.events = append(r.events, active) },
		Logger:           slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	t.Cleanup(r.v.Close)
	r.v.SetSink(r.sink)
	r.v.Start(0x1234)
	return r
}

// at is the virtual wall time of clip frame k.
func (r *fillerRig) at(k int) time.Time { return r.t0.Add(time.Duration(k) * time.Second / 30) }

// send sends clip frame k (its RTP time and arrival follow k, a paused
// publisher's clock runs on) as the publisher's, with an IDR when idr.
func (r *fillerRig) send(k int, idr bool) {
	i := k % 135
	if idr {
		i = 0
	} else if r.frames[i].IDR {
		i++
	}
	au := rtph264.AccessUnit{Timestamp: uint32(k * 3000), NALUs: r.frames[i].NALUs, IDR: r.frames[i].IDR}
	au.SPS, au.PPS = mediafile.ParameterSets(r.frames[i].NALUs)
	r.v.onAccessUnit(&au, r.at(k))
}

// tick runs the filler from virtual time from to to as RunFiller would.
func (r *fillerRig) tick(from, to time.Time) {
	for now := from; now.Before(to); {
		next := r.v.fillTick(now)
		if !next.After(now) {
			next = now.Add(time.Millisecond)
		}
		now = next
	}
}

// blackSPS is h264black's SPS for the clip's 1280x720.
var blackSPS = func() []byte {
	p, err := h264black.New(1280, 720, 30)
	if err != nil {
		panic(err)
	}
	return p.SPS
}()

func isBlack(d delivered) bool {
	return d.params != nil && d.params.Width == 1280 && d.params.Height == 720 && bytes.Equal(d.params.SPS, blackSPS)
}

// TestFillerStall: the publisher's video stops for 3 s while its audio
// flows. After VideoGap the broadcast gets the black picture at the
// publisher's 30 fps, starting with an IDR on its own parameter set of the
// same size, with an IDR every keyframe interval; the publisher is asked
// for a keyframe; its P-frames when it returns are held back and its IDR
// brings its own parameter set back; timestamps never go back and the
// frames keep their spacing; the stall and the return are reported.
func TestFillerStall(t *testing.T) {
	r := newFillerRig(t)
	for k := range 60 {
		r.send(k, k == 0)
		r.tick(r.at(k), r.at(k+1))
	}
	pub := r.sink.frames[0].params
	if len(r.sink.frames) != 60 || pub == nil || isBlack(r.sink.frames[0]) {
		t.Fatalf("%d frames before the stall", len(r.sink.frames))
	}
	r.fb.mu.Lock()
	plis := r.fb.plis
	r.fb.mu.Unlock()
	r.v.kfMu.Lock()
	r.v.lastPLI = time.Time{} // the track start's PLI was a moment ago
	r.v.kfMu.Unlock()
	// Stall: nothing from the publisher for 3 s (frames 60..149).
	r.tick(r.at(60), r.at(150))
	if on, why := r.v.Filling(); !on || why != FillStalled {
		t.Fatalf("filling %v (%s) after a 3 s stall", on, why)
	}
	fill := r.sink.frames[60:]
	// The gap is 1 s after the last frame (59): about 2 s of filler.
	if n := len(fill); n < 55 || n > 62 {
		t.Fatalf("%d filler frames in 2 s, want ~60", n)
	}
	if !fill[0].key || !isBlack(fill[0]) {
		t.Fatalf("the first filler frame is not the black IDR: key %v params %+v", fill[0].key, fill[0].params)
	}
	keys := 0
	for i, f := range fill {
		if !isBlack(f) || f.params != fill[0].params {
			t.Fatalf("filler frame %d has params %+v", i, f.params)
		}
		if f.key {
			keys++
		}
	}
	if want := 1 + (len(fill)-1)/60; keys != want {
		t.Errorf("%d IDRs in %d filler frames, want %d: one every 2 s", keys, len(fill), want)
	}
	p, err := h264black.New(1280, 720, 30)
	if err != nil {
		t.Fatal(err)
	}
	if want := flv.AppendAVCNALUs(nil, [][]byte{p.SPS, p.PPS, p.IDR[0]}, true, 0); !bytes.Equal(fill[0].body, want) {
		t.Error("the first filler frame is not h264black's SPS, PPS and IDR muxed")
	}
	if want := flv.AppendAVCNALUs(nil, [][]byte{p.P[1]}, false, 0); !bytes.Equal(fill[1].body, want) {
		t.Error("the second filler frame is not h264black's first skip frame muxed")
	}
	r.fb.mu.Lock()
	if r.fb.plis <= plis {
		t.Error("the stall asked the publisher for no keyframe")
	}
	r.fb.mu.Unlock()

	// The publisher returns with P-frames (150..154), then its IDR (155).
	before := len(r.sink.frames)
	for k := 150; k < 160; k++ {
		r.send(k, k == 155)
		r.tick(r.at(k), r.at(k+1))
	}
	if on, _ := r.v.Filling(); on {
		t.Fatal("still filling after the publisher's IDR")
	}
	var back int
	for i := before; i < len(r.sink.frames); i++ {
		if !isBlack(r.sink.frames[i]) {
			back = i
			break
		}
	}
	if back == 0 || !r.sink.frames[back].key || r.sink.frames[back].params != pub {
		t.Fatalf("the publisher's picture did not return at its IDR with its parameter set (frame %d)", back)
	}
	if n := len(r.sink.frames) - back; n != 5 {
		t.Errorf("%d of the publisher's frames after its return, want 155..159", n)
	}
	for i := 1; i < len(r.sink.frames); i++ {
		a, b := r.sink.frames[i-1], r.sink.frames[i]
		if b.ts <= a.ts {
			t.Fatalf("frame %d at %d ms after %d ms", i, b.ts, a.ts)
		}
		limit := uint32(40)
		if i == back {
			limit += fillLagMs // the fill runs behind the wall clock
		}
		if d := b.ts - a.ts; i != 60 && d > limit {
			t.Errorf("frame %d is %d ms after the one before (filler from 60, the picture back at %d)", i, d, back)
		}
	}
	if len(r.events) != 2 || !r.events[0] || r.events[1] {
		t.Errorf("filler events %v, want start and end", r.events)
	}
	if got := r.v.FillerFrames(); got != uint64(back-60) {
		t.Errorf("FillerFrames %d, want %d", got, back-60)
	}
}

// TestFillerIdleWakes: while the picture flows the idle filler looks once
// a VideoGap, at the moment the picture would have been gone that long,
// not every fillIdleCheck; a stall is still caught then.
func TestFillerIdleWakes(t *testing.T) {
	r := newFillerRig(t)
	wakes := 0
	next := r.at(0)
	// RunFiller's loop on the virtual clock: it runs fillTick when its
	// timer is due.
	runTo := func(to time.Time) {
		for !next.After(to) {
			wakes++
			n := r.v.fillTick(next)
			if !n.After(next) {
				n = next.Add(time.Millisecond)
			}
			next = n
		}
	}
	for k := range 90 { // 3 s at 30 fps
		r.send(k, k == 0)
		runTo(r.at(k + 1))
	}
	// The first wakes come before a frame went out (every fillIdleCheck).
	if wakes > 6 {
		t.Errorf("the idle filler woke %d times in 3 s of flowing video, want about one a second", wakes)
	}
	if on, _ := r.v.Filling(); on {
		t.Fatal("filling while the picture flows")
	}
	last := r.at(89)
	runTo(last.Add(time.Second + 10*time.Millisecond))
	if on, why := r.v.Filling(); !on || why != FillStalled {
		t.Fatalf("not filling (%v %s) 1.01 s into a stall", on, why)
	}
	t.Logf("%d wakes in 3 s of video", wakes)
}

// TestFillerNeedsAudio: a publisher that stopped sending anything is not
// papered over: no audio, no filler.
func TestFillerNeedsAudio(t *testing.T) {
	r := newFillerRig(t)
	r.audio.Store(false)
	for k := range 30 {
		r.send(k, k == 0)
	}
	r.tick(r.at(30), r.at(120))
	if len(r.sink.frames) != 30 {
		t.Fatalf("%d frames with the publisher gone, want its 30", len(r.sink.frames))
	}
}

// TestFillerMuted: muting replaces the publisher's picture at once (its
// frames go nowhere while muted, the filler runs however the publisher
// sends); unmuting asks for a keyframe and brings the picture back at it.
func TestFillerMuted(t *testing.T) {
	r := newFillerRig(t)
	for k := range 30 {
		r.send(k, k == 0)
		r.tick(r.at(k), r.at(k+1))
	}
	r.v.SetMuted(true)
	for k := 30; k < 120; k++ {
		r.send(k, k%45 == 0)
		r.tick(r.at(k), r.at(k+1))
	}
	if on, why := r.v.Filling(); !on || why != FillMuted {
		t.Fatalf("filling %v (%s) while muted", on, why)
	}
	// Woken early (mute toggles) the fill sends no frame before its time.
	n0 := len(r.sink.frames)
	for range 10 {
		r.v.fillTick(r.at(120))
	}
	if n := len(r.sink.frames) - n0; n > 1 {
		t.Errorf("10 early wake-ups sent %d filler frames", n)
	}
	for i, f := range r.sink.frames[30:] {
		if !isBlack(f) {
			t.Fatalf("frame %d while muted is the publisher's", 30+i)
		}
	}
	if n := len(r.sink.frames) - 30; n < 88 || n > 91 {
		t.Errorf("%d filler frames in 3 s of mute", n)
	}
	r.fb.mu.Lock()
	plis := r.fb.plis
	r.fb.mu.Unlock()
	r.v.kfMu.Lock()
	r.v.lastPLI = time.Time{}
	r.v.kfMu.Unlock()
	r.v.SetMuted(false)
	r.fb.mu.Lock()
	if r.fb.plis <= plis {
		t.Error("unmuting asked for no keyframe")
	}
	r.fb.mu.Unlock()
	n := len(r.sink.frames)
	for k := 120; k < 130; k++ {
		r.send(k, k == 126)
		r.tick(r.at(k), r.at(k+1))
	}
	for i := n; i < len(r.sink.frames); i++ {
		f := r.sink.frames[i]
		if !isBlack(f) {
			if !f.key {
				t.Fatalf("the picture returned at frame %d, not a keyframe", i)
			}
			if got := len(r.sink.frames) - i; got != 4 {
				t.Errorf("%d publisher frames after unmute, want 126..129", got)
			}
			return
		}
	}
	t.Fatal("the picture did not return after unmute")
}

// TestFillerAllocations: the filler's steady state allocates nothing.
func TestFillerAllocations(t *testing.T) {
	r := newFillerRig(t)
	r.send(0, true)
	sink := &frameCounter{}
	r.v.SetSink(sink)
	r.v.SetMuted(true)
	now := r.at(1)
	for range 10 {
		now = r.v.fillTick(now)
	}
	allocs := testing.AllocsPerRun(200, func() { now = r.v.fillTick(now) })
	if allocs != 0 {
		t.Errorf("%v allocations per filler frame", allocs)
	}
	if sink.n < 200 {
		t.Errorf("only %d filler frames", sink.n)
	}
}

// TestFillerRepeatsKeyframe: VP9, AV1 and H.265 get the publisher's last
// keyframe again, with its own parameter set, at most at the frame rate
// and within the publisher's bit rate, until its next keyframe.
func TestFillerRepeatsKeyframe(t *testing.T) {
	for _, codec := range []media.VideoCodec{media.CodecVP9, media.CodecAV1, media.CodecHEVC} {
		t.Run(string(codec), func(t *testing.T) {
			clip := loadClip(t, codec)
			v, _, sink := newCodecPipeline(t, codec)
			v.cfg.VideoGap = time.Second
			v.cfg.AudioFlowing = func(time.Time) bool { return true }
			t0 := time.Now()
			at := func(k int) time.Time { return t0.Add(time.Duration(k) * time.Second / 30) }
			for k := range 61 {
				for _, p := range clip.packets[k] {
					v.HandlePacket(p, at(k))
				}
			}
			n := len(sink.frames)
			pub := sink.frames[n-1]
			if n != 61 || !pub.key {
				t.Fatalf("%d frames delivered, the last key %v", n, pub.key)
			}
			for now := at(61); now.Before(at(150)); {
				if next := v.fillTick(now); next.After(now) {
					now = next
				} else {
					now = now.Add(time.Millisecond)
				}
			}
			fill := sink.frames[n:]
			if len(fill) == 0 || len(fill) > 62 {
				t.Fatalf("%d filler frames in 2 s", len(fill))
			}
			// VP9: the keyframe, then frames showing it again, at 30 fps.
			show := flv.AppendVP9Frame(nil, vp9ShowExisting(clip.units[60][0][0]), false)
			if codec == media.CodecVP9 && (len(fill) < 55 || len(show) != 6) {
				t.Errorf("%d VP9 filler frames in 2 s (show frame % x)", len(fill), show)
			}
			size := 0
			for i, f := range fill {
				again := f.key && bytes.Equal(f.body, pub.body)
				if codec == media.CodecVP9 && i > 0 {
					again = !f.key && bytes.Equal(f.body, show)
				}
				if !again || f.params != pub.params {
					t.Fatalf("filler frame %d is not the last keyframe again (key %v, %d bytes)", i, f.key, len(f.body))
				}
				if f.ts <= sink.frames[n+i-1].ts {
					t.Fatalf("filler frame %d goes back in time", i)
				}
				size += len(f.body)
			}
			// 2 s of fill: the publisher's rate before, give or take the
			// one keyframe the fill starts with (VP9: that and 6-byte frames).
			if rate := v.Bitrate(at(61)); float64(size*8) > 2*rate+float64(len(pub.body)*8) {
				t.Errorf("the fill sent %d bytes in 2 s, the publisher %.0f bit/s", size, rate)
			}
			// The next keyframe (120) ends the fill; 119 before it does
			// not. (The reorder buffer lets the sequence gap before 119
			// wait for its retransmission a while.)
			n = len(sink.frames)
			for k := 119; k < 128; k++ {
				for _, p := range clip.packets[k] {
					v.HandlePacket(p, at(150+k-119))
				}
			}
			back := sink.frames[n:]
			for len(back) > 0 && (bytes.Equal(back[0].body, pub.body) || bytes.Equal(back[0].body, show)) {
				back = back[1:]
			}
			if len(back) < 2 || !back[0].key || !bytes.Equal(back[0].body, clip.body(120)) || back[1].key || !bytes.Equal(back[1].body, clip.body(121)) {
				t.Fatal("the picture did not come back at key frame 120")
			}
			if on, _ := v.Filling(); on {
				t.Fatal("still filling")
			}
		})
	}
}

// BenchmarkFillerFrame is one black 1280x720 filler frame (a skip frame,
// an IDR every 60) made and delivered.
func BenchmarkFillerFrame(b *testing.B) {
	r := newFillerRig(b)
	r.send(0, true)
	r.v.SetSink(&frameCounter{})
	r.v.SetMuted(true)
	now := r.at(1)
	b.ReportAllocs()
	for b.Loop() {
		now = r.v.fillTick(now)
	}
}

// TestVP9ShowExistingDecodes: the clip's key frame followed by 29 of the
// filler's one-byte frames is a VP9 stream FFmpeg's decoder and libvpx's
// both decode to 30 pictures, each the key frame's.
func TestVP9ShowExistingDecodes(t *testing.T) {
	ffmpeg, err := exec.LookPath("ffmpeg")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("ffmpeg is required under CI")
		}
		t.Skip("ffmpeg not installed")
	}
	frames, err := mediafile.ReadIVFFile(mediafile.TestdataPath("video-vp9.ivf"))
	if err != nil {
		t.Fatal(err)
	}
	key := frames[0]
	if !rtpframe.VP9Keyframe(key) {
		t.Fatal("the clip does not start with a key frame")
	}
	const n, w, h = 30, 320, 180
	ivf := make([]byte, 32)
	copy(ivf, "DKIF")
	binary.LittleEndian.PutUint16(ivf[6:], 32)
	copy(ivf[8:], "VP90")
	binary.LittleEndian.PutUint16(ivf[12:], w)
	binary.LittleEndian.PutUint16(ivf[14:], h)
	binary.LittleEndian.PutUint32(ivf[16:], 30)
	binary.LittleEndian.PutUint32(ivf[20:], 1)
	binary.LittleEndian.PutUint32(ivf[24:], n)
	for i := range n {
		f := key
		if i > 0 {
			f = vp9ShowExisting(key[0])
		}
		var hdr [12]byte
		binary.LittleEndian.PutUint32(hdr[:], uint32(len(f)))
		binary.LittleEndian.PutUint64(hdr[4:], uint64(i))
		ivf = append(append(ivf, hdr[:]...), f...)
	}
	path := filepath.Join(t.TempDir(), "show.ivf")
	if err := os.WriteFile(path, ivf, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, dec := range []string{"vp9", "libvpx-vp9"} {
		cmd := exec.Command(ffmpeg, "-nostdin", "-v", "error", "-c:v", dec, "-i", path, "-fps_mode", "passthrough",
			"-f", "rawvideo", "-pix_fmt", "yuv420p", "-")
		var out, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &stderr
		if err := cmd.Run(); err != nil {
			t.Errorf("%s: %v %s", dec, err, stderr.String())
			continue
		}
		size := w * h * 3 / 2
		raw := out.Bytes()
		if len(raw) != n*size {
			t.Errorf("%s decoded %d bytes, want %d pictures (%d)", dec, len(raw), n, n*size)
			continue
		}
		for i := 1; i < n; i++ {
			if !bytes.Equal(raw[i*size:(i+1)*size], raw[:size]) {
				t.Errorf("%s: picture %d is not the key frame's", dec, i)
				break
			}
		}
		if stderr.Len() != 0 {
			t.Errorf("%s complained: %s", dec, stderr.String())
		}
	}
	if got := vp9ShowExisting(0b10_1_1_0000); len(got) != 2 || got[0] != 0b10110100 {
		t.Errorf("profile 3: % x", got)
	}
	if got := vp9ShowExisting(0b10_0_1_0000); len(got) != 1 || got[0] != 0b10011000 {
		t.Errorf("profile 2: % x", got)
	}
}
