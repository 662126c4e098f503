package video

import (
	"bytes"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"

	"github.com/castbridge/castbridge/gateway/avclock"
	"github.com/castbridge/castbridge/gateway/media"
	"github.com/castbridge/castbridge/transmux/format/flv"
	"github.com/castbridge/castbridge/transmux/format/mediafile"
)

// codecClip is a test clip of one codec as RTP packets, frame by frame.
type codecClip struct {
	codec   media.VideoCodec
	fourCC  [4]byte
	packets [][][]byte // per frame, marshalled RTP packets
	units   [][][]byte // per frame, what the depacketizer gives back
}

func loadClip(t testing.TB, codec media.VideoCodec) codecClip {
	t.Helper()
	c := codecClip{codec: codec}
	var payloads [][][]byte
	switch codec {
	case media.CodecVP9:
		c.fourCC = flv.FourCCVP9
		frames, err := mediafile.ReadIVFFile(mediafile.TestdataPath("video-vp9.ivf"))
		if err != nil {
			t.Fatal(err)
		}
		pay := &codecs.VP9Payloader{InitialPictureIDFn: func() uint16 { return 1 }}
		for _, f := range frames {
			payloads = append(payloads, pay.Payload(1200, f))
			c.units = append(c.units, [][]byte{f})
		}
	case media.CodecAV1:
		c.fourCC = flv.FourCCAV1
		frames, err := mediafile.ReadIVFFile(mediafile.TestdataPath("video-av1.ivf"))
		if err != nil {
			t.Fatal(err)
		}
		pay := &codecs.AV1Payloader{}
		for _, tu := range frames {
			obus, err := mediafile.SplitAV1OBUs(tu)
			if err != nil {
				t.Fatal(err)
			}
			var p, u [][]byte
			for _, o := range obus {
				if flv.AV1OBUType(o) == flv.AV1OBUTemporalDelimiter {
					continue
				}
				u = append(u, o)
				p = append(p, pay.Payload(1200, o)...)
			}
			payloads = append(payloads, p)
			c.units = append(c.units, u)
		}
	case media.CodecHEVC:
		c.fourCC = flv.FourCCHEVC
		frames, err := mediafile.ReadH265File(mediafile.TestdataPath("video-hevc.h265"))
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range frames {
			payloads = append(payloads, mediafile.PayloadH265(1200, f.NALUs))
			c.units = append(c.units, f.NALUs)
		}
	}
	seq := uint16(100)
	for i, fp := range payloads {
		var pkts [][]byte
		for j, p := range fp {
			raw, err := (&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 98, SequenceNumber: seq,
				Timestamp: uint32(i * 3000), SSRC: 0x4242, Marker: j == len(fp)-1}, Payload: p}).Marshal()
			if err != nil {
				t.Fatal(err)
			}
			pkts = append(pkts, raw)
			seq++
		}
		c.packets = append(c.packets, pkts)
	}
	return c
}

func (c codecClip) body(i int) []byte {
	key := i%60 == 0
	switch c.codec {
	case media.CodecVP9:
		return flv.AppendVP9Frame(nil, c.units[i][0], key)
	case media.CodecAV1:
		return flv.AppendAV1Frame(nil, c.units[i], key)
	}
	return flv.AppendHEVCNALUs(nil, c.units[i], key, 0)
}

func newCodecPipeline(t *testing.T, codec media.VideoCodec) (*Pipeline, *fakeFeedback, *recordingSink) {
	fb := &fakeFeedback{}
	v := New(Config{
		Feedback:         fb,
		Clock:            avclock.New(),
		Frames:           media.NewFramePool(),
		KeyframeInterval: 10 * time.Second,
		Logger:           slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	t.Cleanup(v.Close)
	sink := &recordingSink{}
	v.SetSink(sink)
	if err := v.StartCodec(0x4242, codec); err != nil {
		t.Fatal(err)
	}
	return v, fb, sink
}

// TestCodecPipelines sends each codec's clip through HandlePacket from the
// middle of its first GOP, with one packet of frame 70 lost: nothing is
// delivered before the key frame at 60; frames 60..69 are, muxed exactly as
// flv's builders do it, with a parameter set made from the bitstream (the
// resolution for the stream view, the sequence start for targets); the loss
// drops frame 70 and everything up to the next key frame (120), and asks
// for one at once.
func TestCodecPipelines(t *testing.T) {
	for _, codec := range []media.VideoCodec{media.CodecVP9, media.CodecAV1, media.CodecHEVC} {
		t.Run(string(codec), func(t *testing.T) {
			clip := loadClip(t, codec)
			v, fb, sink := newCodecPipeline(t, codec)
			if v.Codec() != codec {
				t.Fatalf("Codec() = %s", v.Codec())
			}
			now := time.Now()
			plisBefore := 0
			for i := 40; i < 150; i++ {
				for j, p := range clip.packets[i] {
					if i == 70 && j == 0 {
						continue
					}
					v.HandlePacket(p, now)
				}
				if i == 69 {
					// The start's PLI was just now: let the loss's go out
					// rather than be rate-limited.
					v.kfMu.Lock()
					v.lastPLI = time.Time{}
					v.kfMu.Unlock()
					fb.mu.Lock()
					plisBefore = fb.plis
					fb.mu.Unlock()
				}
				now = now.Add(33 * time.Millisecond)
			}
			if len(sink.frames) != 10+30-1 && len(sink.frames) != 10+30 {
				t.Fatalf("%d frames delivered, want frames 60..69 and 120..148 or 149", len(sink.frames))
			}
			first := sink.frames[0]
			if !first.key || !bytes.Equal(first.body, clip.body(60)) {
				t.Fatalf("the first frame delivered is not key frame 60 muxed (key %v)", first.key)
			}
			ps := first.params
			if ps == nil || ps.VideoCodec() != codec || ps.FourCC != clip.fourCC || ps.Width != 320 || ps.Height != 180 {
				t.Fatalf("params %+v", ps)
			}
			if vt, err := flv.ParseVideoTag(ps.SeqHeader); err != nil || !vt.SequenceStart() || vt.FourCC != clip.fourCC {
				t.Fatalf("sequence start %+v, %v", vt, err)
			}
			for k := 1; k < 10; k++ {
				if !bytes.Equal(sink.frames[k].body, clip.body(60+k)) || sink.frames[k].key {
					t.Fatalf("frame %d differs", 60+k)
				}
			}
			resumed := sink.frames[10]
			if !resumed.key || !bytes.Equal(resumed.body, clip.body(120)) {
				t.Fatalf("after the loss, delivery resumed with a frame that is not key frame 120")
			}
			if d := int(resumed.ts) - int(first.ts); d < 1990 || d > 2010 {
				t.Errorf("key frame 120 is %d ms after 60, want 2000", d)
			}
			for _, d := range sink.frames {
				if d.params != ps {
					t.Fatal("a repeated configuration made a new parameter set")
				}
			}
			fb.mu.Lock()
			plis := fb.plis
			fb.mu.Unlock()
			if plis <= plisBefore {
				t.Errorf("the loss asked for no key frame (%d PLIs before it, %d after)", plisBefore, plis)
			}
			if c := v.Counters(); c.Dropped == 0 || c.Keyframes != 2 {
				t.Errorf("counters %+v", c)
			}
		})
	}
}

// TestCodecPipelineSteadyStateAllocations: inter frames through the whole
// path (reorder, NACK, depacketizer, clock, mux, delivery) allocate nothing.
func TestCodecPipelineSteadyStateAllocations(t *testing.T) {
	for _, codec := range []media.VideoCodec{media.CodecVP9, media.CodecAV1, media.CodecHEVC} {
		clip := loadClip(t, codec)
		v, _, _ := newCodecPipeline(t, codec)
		sink := &frameCounter{}
		v.SetSink(sink)
		now := time.Now()
		for i := 0; i <= 60; i++ {
			for _, p := range clip.packets[i] {
				v.HandlePacket(p, now)
			}
			now = now.Add(33 * time.Millisecond)
		}
		i := 61
		allocs := testing.AllocsPerRun(50, func() {
			for _, p := range clip.packets[i] {
				v.HandlePacket(p, now)
			}
			now = now.Add(33 * time.Millisecond)
			i++
		})
		if allocs != 0 {
			t.Errorf("%s: %v allocations per frame", codec, allocs)
		}
		if sink.n < 60 {
			t.Errorf("%s: only %d frames delivered", codec, sink.n)
		}
	}
}

type frameCounter struct{ n int }

func (c *frameCounter) Deliver(*media.Frame) { c.n++ }

// BenchmarkPipelines is one frame of each codec's 320x180 clip (~150
// kbit/s, 30 fps) through HandlePacket to a sink: reorder, NACK tracking,
// depacketizing, clock, mux. ns/op times 30 is the receive CPU per stream
// per second; H.264 (video-180p.h264, same size and rate) for comparison.
func BenchmarkPipelines(b *testing.B) {
	for _, codec := range []media.VideoCodec{media.CodecH264, media.CodecVP9, media.CodecAV1, media.CodecHEVC} {
		b.Run(string(codec), func(b *testing.B) {
			var clip codecClip
			if codec == media.CodecH264 {
				clip = h264Clip(b)
			} else {
				clip = loadClip(b, codec)
			}
			fb := &fakeFeedback{}
			v := New(Config{Feedback: fb, Clock: avclock.New(), Frames: media.NewFramePool(), KeyframeInterval: time.Hour,
				Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
			defer v.Close()
			sink := &frameCounter{}
			v.SetSink(sink)
			if err := v.StartCodec(0x4242, codec); err != nil {
				b.Fatal(err)
			}
			now := time.Now()
			seq := uint16(0)
			bytes := 0
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				n := i % len(clip.packets)
				ts := uint32(i * 3000)
				for _, p := range clip.packets[n] {
					p[2], p[3] = byte(seq>>8), byte(seq)
					p[4], p[5], p[6], p[7] = byte(ts>>24), byte(ts>>16), byte(ts>>8), byte(ts)
					seq++
					bytes += len(p)
					v.HandlePacket(p, now)
				}
				now = now.Add(33 * time.Millisecond)
			}
			b.StopTimer()
			if b.N >= 100 && sink.n < b.N*9/10 {
				b.Fatalf("%d frames delivered of %d", sink.n, b.N)
			}
			b.ReportMetric(float64(bytes)/float64(b.N), "B/frame")
		})
	}
}

// h264Clip is video-180p.h264 as RTP, for BenchmarkPipelines.
func h264Clip(b testing.TB) codecClip {
	frames, err := mediafile.ReadH264File(mediafile.TestdataPath("video-180p.h264"))
	if err != nil {
		b.Fatal(err)
	}
	pay := &codecs.H264Payloader{}
	c := codecClip{codec: media.CodecH264}
	for i, f := range frames {
		var payloads [][]byte
		for _, n := range f.NALUs {
			payloads = append(payloads, pay.Payload(1200, n)...)
		}
		var pkts [][]byte
		for j, p := range payloads {
			raw, err := (&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 102, SequenceNumber: uint16(i*100 + j),
				Timestamp: uint32(i * 3000), SSRC: 0x4242, Marker: j == len(payloads)-1}, Payload: p}).Marshal()
			if err != nil {
				b.Fatal(err)
			}
			pkts = append(pkts, raw)
		}
		c.packets = append(c.packets, pkts)
	}
	return c
}
