package video

import (
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtcp"

	"github.com/castbridge/castbridge/gateway/avclock"
	"github.com/castbridge/castbridge/gateway/media"
	"github.com/castbridge/castbridge/transmux/format/mediafile"
)

// pliFeedback records the PLIs by SSRC.
type pliFeedback struct {
	mu   sync.Mutex
	plis map[uint32]int
}

func (f *pliFeedback) SendNACK(uint32, []rtcp.NackPair) {}
func (f *pliFeedback) SendPLI(ssrc uint32) {
	f.mu.Lock()
	f.plis[ssrc]++
	f.mu.Unlock()
}

// take reports (and forgets) whether ssrc was asked for a keyframe.
func (f *pliFeedback) take(ssrc uint32) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := f.plis[ssrc]
	f.plis[ssrc] = 0
	return n > 0
}

// testLayer is one simulcast layer of the fake publisher: a clip sent from
// its frame pos, jumping to its first IDR when asked for a keyframe.
type testLayer struct {
	rid    string
	ssrc   uint32
	frames []mediafile.Frame
	base   uint32 // RTP timestamp of frame time 0
	seq    uint16
	pos    int
	l      *Layer
}

// packets packetizes an access unit: SPS and PPS in packets of their own,
// FU-A above 1100 bytes, the marker on the last packet.
func (tl *testLayer) packets(f mediafile.Frame, ts uint32) [][]byte {
	var out [][]byte
	add := func(payload []byte, last bool) {
		p := make([]byte, 12, 12+len(payload))
		p[0], p[1] = 0x80, 102
		if last {
			p[1] |= 0x80
		}
		binary.BigEndian.PutUint16(p[2:], tl.seq)
		binary.BigEndian.PutUint32(p[4:], ts)
		binary.BigEndian.PutUint32(p[8:], tl.ssrc)
		tl.seq++
		out = append(out, append(p, payload...))
	}
	for i, n := range f.NALUs {
		last := i == len(f.NALUs)-1
		if len(n) <= 1100 {
			add(n, last)
			continue
		}
		data := n[1:]
		for first := true; len(data) > 0; first = false {
			k := min(1100, len(data))
			hdr := n[0] & 0x1f
			if first {
				hdr |= 0x80
			}
			if k == len(data) {
				hdr |= 0x40
			}
			add(append([]byte{n[0]&0xe0 | 28, hdr}, data[:k]...), last && k == len(data))
			data = data[k:]
		}
	}
	return out
}

type layerRun struct {
	v      *Pipeline
	fb     *pliFeedback
	sink   *recordingSink
	layers []*testLayer
	t0     time.Time
}

func newLayerRun(t *testing.T, bases [3]uint32) *layerRun {
	t.Helper()
	r := &layerRun{fb: &pliFeedback{plis: map[uint32]int{}}, sink: &recordingSink{}, t0: time.Unix(1_700_000_000, 0)}
	r.v = New(Config{
		Feedback:         r.fb,
		Clock:            avclock.New(),
		Frames:           media.NewFramePool(),
		KeyframeInterval: 10 * time.Second,
		Logger:           slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	t.Cleanup(r.v.Close)
	r.v.SetSink(r.sink)
	for i, spec := range []struct{ rid, file string }{{"q", "video-180p.h264"}, {"h", "video-360p.h264"}, {"f", "video.h264"}} {
		frames, err := mediafile.ReadH264File(mediafile.TestdataPath(spec.file))
		if err != nil {
			t.Fatal(err)
		}
		tl := &testLayer{rid: spec.rid, ssrc: uint32(0x1000 + i), frames: frames, base: bases[i], seq: uint16(1000 * (i + 1)), pos: 70}
		tl.l = r.v.AddLayer(tl.rid, tl.ssrc)
		r.layers = append(r.layers, tl)
	}
	return r
}

// send sends frame time k (30 fps) of every layer on[i] says is sending,
// each layer's packets arriving jitter later than the frame time.
func (r *layerRun) send(k int, on [3]bool, jitter time.Duration) {
	for i, tl := range r.layers {
		if !on[i] {
			continue
		}
		if r.fb.take(tl.ssrc) {
			tl.pos = 0 // the clips' frame 0 is an IDR
		}
		f := tl.frames[tl.pos%len(tl.frames)]
		tl.pos++
		ts := tl.base + uint32(k*3000)
		now := r.t0.Add(time.Duration(k)*time.Second/30 + time.Duration(i)*jitter)
		for _, p := range tl.packets(f, ts) {
			tl.l.HandlePacket(p, now)
		}
	}
}

// probe sends what Chromium sends on a layer it stopped encoding while
// it probes bandwidth: padding-only packets on the layer's SSRC.
func (r *layerRun) probe(k, i int) {
	tl := r.layers[i]
	now := r.t0.Add(time.Duration(k) * time.Second / 30)
	for range 3 {
		p := make([]byte, 12+255)
		p[0], p[1] = 0xa0, 102 // version 2 with padding
		binary.BigEndian.PutUint16(p[2:], tl.seq)
		binary.BigEndian.PutUint32(p[4:], tl.base+uint32(k*3000))
		binary.BigEndian.PutUint32(p[8:], tl.ssrc)
		p[len(p)-1] = 255
		tl.seq++
		tl.l.HandlePacket(p, now)
	}
}

// check asserts the delivered stream: the resolutions in want order, each
// change at a keyframe, every frame at its frame time (ms from the first
// one) on an unbroken timeline.
func (r *layerRun) check(t *testing.T, want []string, frameK []int) {
	t.Helper()
	var got []string
	for i, f := range r.sink.frames {
		res := fmt.Sprintf("%dx%d", f.params.Width, f.params.Height)
		if len(got) == 0 || got[len(got)-1] != res {
			got = append(got, res)
			if !f.key {
				t.Errorf("frame %d: the switch to %s is not at a keyframe", i, res)
			}
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("forwarded resolutions %v, want %v", got, want)
	}
	if len(frameK) != len(r.sink.frames) {
		t.Fatalf("%d frames delivered, %d expected", len(r.sink.frames), len(frameK))
	}
	for i, f := range r.sink.frames {
		wantMs := (frameK[i] - frameK[0]) * 1000 / 30
		if d := int(f.ts-r.sink.frames[0].ts) - wantMs; d < -1 || d > 1 {
			t.Errorf("frame %d (frame time %d) at %d ms, want %d", i, frameK[i], f.ts-r.sink.frames[0].ts, wantMs)
		}
	}
}

// TestSimulcastLayerSelection: three layers (180p, 360p, 720p on RTP
// clocks of their own, no Sender Reports); the top one stops for a second
// and comes back, sending only padding meanwhile (Chromium's bandwidth
// probes). The pipeline starts on the first layer that can be
// decoded, moves up to 720p at its keyframe, down to 360p when 720p stops,
// back up when it returns: every switch at a keyframe of the layer switched
// to (asked for with a PLI to its SSRC), every frame on the wall-clock
// timeline.
func TestSimulcastLayerSelection(t *testing.T) {
	r := newLayerRun(t, [3]uint32{0x10000000, 0x90000000, 0xfffff000})
	all, noTop := [3]bool{true, true, true}, [3]bool{true, true, false}
	var frameK []int
	record := func(k int) {
		for len(frameK) < len(r.sink.frames) {
			frameK = append(frameK, k)
		}
	}
	for k := range 300 {
		on := all
		if k >= 100 && k < 130 {
			on = noTop
			r.probe(k, 2)
		}
		r.send(k, on, 0)
		record(k)
		if k == 50 {
			li, sw := r.v.Layers(r.t0.Add(time.Duration(k) * time.Second / 30))
			if len(li) != 3 || !li[2].Forwarded || li[2].Width != 1280 || li[0].Width != 320 || li[1].Height != 360 || sw != 1 {
				t.Errorf("layers at frame time 50: %+v, %d switches", li, sw)
			}
		}
		if k == 125 {
			li, _ := r.v.Layers(r.t0.Add(time.Duration(k) * time.Second / 30))
			if li[2].Active || !li[1].Forwarded || !li[0].Active {
				t.Errorf("layers with the top one stopped: %+v", li)
			}
		}
	}
	r.check(t, []string{"320x180", "1280x720", "640x360", "1280x720"}, frameK)
	if _, sw := r.v.Layers(r.t0); sw != 3 {
		t.Errorf("%d switches, want 3", sw)
	}
	// The top layer stopped after frame time 99; the switch down waits for
	// layerTimeout and the 360p keyframe, so frames 100..~120 are missing;
	// nothing else is.
	distinct := map[int]bool{}
	for _, k := range frameK {
		distinct[k] = true
	}
	missing := 300 - len(distinct)
	if missing < 15 || missing > 25 {
		t.Errorf("%d frame times not forwarded, want the ~20 of the switch down", missing)
	}
	if r.v.SSRC() != 0x1002 {
		t.Errorf("the pipeline's SSRC is %#x, want the top layer's", r.v.SSRC())
	}
}

// TestSimulcastSharedClock: layers on one RTP clock (libwebrtc's) arrive
// with their packets 15 ms apart; a switch keeps the RTP times as they are
// (no offset), so frames stay exactly at their capture times.
func TestSimulcastSharedClock(t *testing.T) {
	r := newLayerRun(t, [3]uint32{5000, 5000, 5000})
	var frameK []int
	for k := range 200 {
		on := [3]bool{true, true, true}
		if k >= 60 && k < 90 {
			on[2] = false
		}
		r.send(k, on, 15*time.Millisecond)
		for len(frameK) < len(r.sink.frames) {
			frameK = append(frameK, k)
		}
	}
	r.check(t, []string{"320x180", "1280x720", "640x360", "1280x720"}, frameK)
	for _, tl := range r.layers {
		if tl.l.offset != 0 {
			t.Errorf("layer %s on the shared clock got offset %d", tl.rid, tl.l.offset)
		}
	}
}

// TestSimulcastSenderReports: layers on clocks of their own whose packets
// arrive late by different amounts: the Sender Reports, not the arrival
// times, place the layer switched to.
func TestSimulcastSenderReports(t *testing.T) {
	bases := [3]uint32{0x10000000, 0x90000000, 0x30000000}
	r := newLayerRun(t, bases)
	ntp := func(k int) uint64 { return uint64(3_900_000_000+k/30)<<32 | uint64(k%30)<<32/30 }
	var frameK []int
	for k := range 200 {
		on := [3]bool{true, true, true}
		if k >= 60 && k < 90 {
			on[2] = false
		}
		if k%15 == 0 {
			for i, tl := range r.layers {
				if on[i] {
					tl.l.SenderReport(&rtcp.SenderReport{SSRC: tl.ssrc, NTPTime: ntp(k), RTPTime: bases[i] + uint32(k*3000)})
				}
			}
		}
		// The layers' packets arrive 20 ms apart: arrival times would
		// misplace the layer switched to by that much.
		r.send(k, on, 20*time.Millisecond)
		for len(frameK) < len(r.sink.frames) {
			frameK = append(frameK, k)
		}
	}
	r.check(t, []string{"320x180", "1280x720", "640x360", "1280x720"}, frameK)
}

// TestSimulcastPacketAllocs: a forwarded layer's packets and another
// layer's (inspected, not forwarded) allocate nothing once the layers
// run.
func TestSimulcastPacketAllocs(t *testing.T) {
	r := newLayerRun(t, [3]uint32{1000, 2000, 3000})
	k := 0
	for ; k < 30; k++ {
		r.send(k, [3]bool{true, true, true}, 0)
	}
	if li, _ := r.v.Layers(r.t0.Add(time.Second)); !li[2].Forwarded {
		t.Fatalf("layers %+v", li)
	}
	counted := &countingSink{}
	r.v.SetSink(counted) // the recording sink allocates
	// P-frames of the middle and the top layer, packetized up front and
	// sent again with their sequence numbers and timestamps moved on.
	type sent struct {
		tl   *testLayer
		pkts [][]byte
	}
	var frames []sent
	for _, tl := range r.layers[1:] {
		seq := tl.seq
		frames = append(frames, sent{tl, tl.packets(tl.frames[5], 0)})
		tl.seq = seq
	}
	allocs := testing.AllocsPerRun(100, func() {
		now := r.t0.Add(time.Duration(k) * time.Second / 30)
		for _, f := range frames {
			for _, p := range f.pkts {
				binary.BigEndian.PutUint16(p[2:], f.tl.seq)
				binary.BigEndian.PutUint32(p[4:], f.tl.base+uint32(k*3000))
				f.tl.seq++
				f.tl.l.HandlePacket(p, now)
			}
		}
		k++
	})
	if allocs != 0 {
		t.Errorf("%.1f allocations per frame of two layers", allocs)
	}
	if c := r.v.Counters(); c.Dropped != 0 || counted.n < 100 {
		t.Errorf("%d frames dropped, %d delivered", c.Dropped, counted.n)
	}
}

type countingSink struct{ n int }

func (c *countingSink) Deliver(*media.Frame) { c.n++ }
