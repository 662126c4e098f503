package rtph264

import (
	"encoding/binary"
	"runtime/debug"
	"testing"
	"time"

	"github.com/castbridge/castbridge/transmux/rtp/aubuf"
	"github.com/castbridge/castbridge/transmux/rtp/rtpreorder"
	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
)

// pipeline is the gateway's per-packet video path: reorder, then
// depacketize. It replays a synthetic 720p stream endlessly, rewriting
// sequence numbers and timestamps so that each lap continues the last.
type pipeline struct {
	raw     [][]byte
	seq     []uint16 // original sequence numbers, per raw packet
	ts      []uint32
	lapTS   uint32
	reorder *rtpreorder.Buffer
	depkt   Depacketizer
	now     time.Time
	i       int
	aus     int
	idrs    int
}

// newPipeline builds gops GOPs of a 30 fps 720p stream as a browser sends
// it: ~100 KB IDR (with SPS/PPS in a STAP-A) every 60 frames, ~8 KB P
// frames, MTU 1200, abs-send-time and transport-cc header extensions, and
// every 50th packet swapped with its successor.
func newPipeline(tb testing.TB, gops int) *pipeline {
	const frames = 60
	p := &pipeline{
		reorder: rtpreorder.New(512, 100*time.Millisecond),
		now:     time.Unix(1700000000, 0),
	}
	var pl codecs.H264Payloader
	var seq uint16
	for f := 0; f < gops*frames; f++ {
		var nalus [][]byte
		if f%frames == 0 {
			nalus = [][]byte{sps, pps, slice(naluIDR, true, 100_000, int64(f))}
		} else {
			nalus = [][]byte{slice(naluNonIDR, true, 8_000, int64(f))}
		}
		var annexB []byte
		for _, n := range nalus {
			// Start codes inside random data would split the NAL
			// unit; break them up as emulation prevention would.
			for i := 0; i+2 < len(n); i++ {
				if n[i] == 0 && n[i+1] == 0 && n[i+2] <= 3 {
					n[i+2] = 4
				}
			}
			annexB = append(annexB, 0, 0, 0, 1)
			annexB = append(annexB, n...)
		}
		payloads := pl.Payload(1200, annexB)
		ts := uint32(f * 3000)
		for j, payload := range payloads {
			pkt := rtp.Packet{Header: rtp.Header{
				Version: 2, PayloadType: 102, SequenceNumber: seq, Timestamp: ts,
				SSRC: 0xCAFE, Marker: j == len(payloads)-1,
				Extension: true, ExtensionProfile: 0xBEDE,
			}, Payload: payload}
			_ = pkt.SetExtension(2, []byte{0x12, 0x34, 0x56})
			_ = pkt.SetExtension(3, []byte{byte(seq >> 8), byte(seq)})
			raw, err := pkt.Marshal()
			if err != nil {
				tb.Fatal(err)
			}
			p.raw = append(p.raw, raw)
			p.seq = append(p.seq, seq)
			p.ts = append(p.ts, ts)
			seq++
		}
	}
	p.lapTS = uint32(gops * frames * 3000)
	for i := 50; i+1 < len(p.raw); i += 50 {
		p.raw[i], p.raw[i+1] = p.raw[i+1], p.raw[i]
		p.seq[i], p.seq[i+1] = p.seq[i+1], p.seq[i]
		p.ts[i], p.ts[i+1] = p.ts[i+1], p.ts[i]
	}
	return p
}

// step feeds one packet through the pipeline.
func (p *pipeline) step(tb testing.TB) {
	j := p.i % len(p.raw)
	lap := p.i / len(p.raw)
	raw := p.raw[j]
	binary.BigEndian.PutUint16(raw[2:], p.seq[j]+uint16(lap*len(p.raw)))
	binary.BigEndian.PutUint32(raw[4:], p.ts[j]+uint32(lap)*p.lapTS)
	p.i++
	p.now = p.now.Add(250 * time.Microsecond)

	if err := p.reorder.Push(raw, p.now); err != nil {
		tb.Fatal(err)
	}
	for {
		pkt, lost, ok := p.reorder.Pop(p.now)
		if !ok {
			return
		}
		au, ok, err := p.depkt.Push(pkt, lost)
		if err != nil {
			tb.Fatal(err)
		}
		if ok {
			p.aus++
			if au.IDR {
				p.idrs++
			}
		}
	}
}

func TestPipelineNoAllocs(t *testing.T) {
	p := newPipeline(t, 2)
	for range 2 * len(p.raw) { // warm up: buffers grow to the largest frame
		p.step(t)
	}
	if p.aus != 4*60 || p.idrs != 4 {
		t.Fatalf("warm-up: %d access units, %d IDR", p.aus, p.idrs)
	}
	if allocs := testing.AllocsPerRun(3*len(p.raw), func() { p.step(t) }); allocs != 0 {
		t.Fatalf("allocs per packet = %v, want 0", allocs)
	}
	st, rs := p.depkt.Stats(), p.reorder.Stats()
	if st.DroppedIncomplete+st.DroppedMalformed != 0 || rs.Lost+rs.Late+rs.Resets != 0 {
		t.Fatalf("depacketizer %+v reorder %+v", st, rs)
	}
}

// BenchmarkReorderAndDepacketize reports the cost per RTP packet (one op)
// of the reorder buffer and the depacketizer together.
func BenchmarkReorderAndDepacketize(b *testing.B) {
	p := newPipeline(b, 2)
	for range len(p.raw) {
		p.step(b)
	}
	aus := p.aus
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		p.step(b)
	}
	b.StopTimer()
	if n := p.aus - aus; n > 0 {
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n), "ns/frame")
	}
	b.ReportMetric(float64(len(p.raw))/float64(2*60), "pkts/frame")
}

// BenchmarkDepacketize measures the depacketizer alone, per packet.
func BenchmarkDepacketize(b *testing.B) {
	p := newPipeline(b, 2)
	pkts := make([]rtp.Packet, len(p.raw))
	for i, raw := range p.raw {
		if err := pkts[i].Unmarshal(raw); err != nil {
			b.Fatal(err)
		}
	}
	// Undo the swaps: the depacketizer wants sequence order.
	for i := 50; i+1 < len(pkts); i += 50 {
		pkts[i], pkts[i+1] = pkts[i+1], pkts[i]
	}
	var d Depacketizer
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		j := i % len(pkts)
		lap := i / len(pkts)
		pkt := pkts[j]
		pkt.SequenceNumber += uint16(lap * len(pkts))
		pkt.Timestamp += uint32(lap) * p.lapTS
		if _, _, err := d.Push(&pkt, false); err != nil {
			b.Fatal(err)
		}
	}
}

// With shared buffers the track keeps at most aubuf.Keep per buffer: its
// 100 kB keyframes are built in the pool's buffer, given back at the next
// access unit, and the steady state still allocates nothing.
func TestPipelineSharedBuffers(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(-1)) // the GC empties a sync.Pool
	p := newPipeline(t, 2)
	p.depkt.Buffers = aubuf.NewPool()
	for range 2 * len(p.raw) {
		p.step(t)
	}
	if p.aus != 4*60 || p.idrs != 4 {
		t.Fatalf("warm-up: %d access units, %d IDR", p.aus, p.idrs)
	}
	if !raceEnabled {
		if allocs := testing.AllocsPerRun(3*len(p.raw), func() { p.step(t) }); allocs != 0 {
			t.Fatalf("allocs per packet = %v, want 0", allocs)
		}
	}
	for i := range p.depkt.au {
		if c := cap(p.depkt.au[i].buf.B); c > aubuf.Keep && !p.depkt.au[i].buf.Borrowed() {
			t.Errorf("buffer %d keeps %d bytes of its own, more than aubuf.Keep (%d)", i, c, aubuf.Keep)
		}
	}
	if st := p.depkt.Stats(); st.DroppedIncomplete+st.DroppedMalformed != 0 {
		t.Fatalf("depacketizer %+v", st)
	}
}
