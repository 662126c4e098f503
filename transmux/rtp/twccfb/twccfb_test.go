package twccfb

import (
	"math/rand/v2"
	"testing"

	"github.com/pion/interceptor/pkg/twcc"
	"github.com/pion/rtcp"
)

// decoded is what a receiver of the feedback learns: each sequence
// number's arrival in µs (reference time plus the deltas, as pion's
// parser reads them), or -1 for one reported lost.
func decode(tb testing.TB, b []byte, into map[uint16]int64) {
	tb.Helper()
	pkts, err := rtcp.Unmarshal(b)
	if err != nil {
		tb.Fatalf("pion cannot parse the feedback: %v (% x)", err, b)
	}
	for _, p := range pkts {
		cc, ok := p.(*rtcp.TransportLayerCC)
		if !ok {
			tb.Fatalf("a %T in the feedback", p)
		}
		decodeCC(tb, cc, into)
	}
}

func decodeCC(tb testing.TB, cc *rtcp.TransportLayerCC, into map[uint16]int64) {
	tb.Helper()
	at := int64(cc.ReferenceTime) * refUnit
	seq := cc.BaseSequenceNumber
	left := int(cc.PacketStatusCount)
	d := 0
	for _, c := range cc.PacketChunks {
		var syms []uint16
		switch c := c.(type) {
		case *rtcp.RunLengthChunk:
			for range c.RunLength {
				syms = append(syms, c.PacketStatusSymbol)
			}
		case *rtcp.StatusVectorChunk:
			syms = c.SymbolList
		}
		for _, s := range syms {
			if left == 0 {
				break
			}
			left--
			if s == rtcp.TypeTCCPacketNotReceived {
				if _, ok := into[seq]; !ok {
					into[seq] = -1
				}
			} else {
				if d >= len(cc.RecvDeltas) {
					tb.Fatalf("more received statuses than deltas")
				}
				at += cc.RecvDeltas[d].Delta
				d++
				into[seq] = at
			}
			seq++
		}
	}
	if left != 0 || d != len(cc.RecvDeltas) {
		tb.Fatalf("statuses left %d, deltas used %d of %d", left, d, len(cc.RecvDeltas))
	}
}

type arrival struct {
	seq uint16
	at  int64
}

// traffic is a transport-wide stream as a publisher's network delivers
// it: bursts, losses, reordering, duplicates, wraps, and gaps long enough
// to need large deltas and new reference times.
func traffic(r *rand.Rand, n int) []arrival {
	var out []arrival
	seq := uint16(r.IntN(1 << 16))
	at := int64(r.IntN(1 << 30))
	for range n {
		switch k := r.IntN(100); {
		case k < 5: // lost
			seq++
			continue
		case k < 8 && len(out) > 0: // duplicate
			out = append(out, out[len(out)-1-r.IntN(min(len(out), 5))])
			continue
		case k < 10: // a long pause: large and out-of-range deltas
			at += int64(r.IntN(20_000_000))
		case k < 40: // same burst
			at += int64(r.IntN(300))
		default:
			at += int64(r.IntN(40_000))
		}
		out = append(out, arrival{seq, at})
		seq++
	}
	// Reorder: swap some neighbours (a late packet is seen after the next).
	for i := 1; i < len(out); i++ {
		if r.IntN(20) == 0 {
			out[i-1].seq, out[i].seq = out[i].seq, out[i-1].seq
		}
	}
	return out
}

// TestFeedbackMatchesPion: the arrivals pion's parser reads back from our
// feedback are those pion's own Recorder reports for the same packets,
// each within half a delta unit of the true arrival (where pion's is).
func TestFeedbackMatchesPion(t *testing.T) {
	for seed := range uint64(40) {
		r := rand.New(rand.NewPCG(seed, 7))
		in := traffic(r, 3000)
		ours, theirs := New(1), twcc.NewRecorder(1)
		got, want := map[uint16]int64{}, map[uint16]int64{}
		truth := map[uint16]int64{}
		var buf []byte
		for i, a := range in {
			ours.Record(0xabc, a.seq, a.at)
			theirs.Record(0xabc, a.seq, a.at)
			if _, ok := truth[a.seq]; !ok {
				truth[a.seq] = a.at
			}
			if i%37 == 36 || i == len(in)-1 {
				for {
					buf = ours.AppendFeedback(buf[:0])
					if len(buf) > MaxFeedbackBytes {
						t.Fatalf("seed %d: %d bytes of feedback in one go", seed, len(buf))
					}
					if len(buf) == 0 {
						break
					}
					decode(t, buf, got)
				}
				for _, p := range theirs.BuildFeedbackPacket() {
					decodeCC(t, p.(*rtcp.TransportLayerCC), want)
				}
			}
		}
		for seq, at := range want {
			if at < 0 {
				continue // pion reports trailing gaps we report with the next arrival
			}
			// pion forgets arrivals 500 ms old by time and then takes a
			// duplicate's later arrival: its figure may be the wrong one.
			g, ok := got[seq]
			if tr := truth[seq]; !ok || g != at && at-tr <= deltaUnit/2 && tr-at <= deltaUnit/2 {
				t.Fatalf("seed %d: seq %d: ours %d (%v), pion's %d, arrived %d", seed, seq, g, ok, at, truth[seq])
			}
		}
		for seq, at := range got {
			tr, ok := truth[seq]
			switch {
			case at < 0 && ok:
				// Reported lost before it arrived late: it must be
				// reported again once it came.
				continue
			case at >= 0 && !ok:
				t.Fatalf("seed %d: seq %d reported received, never was", seed, seq)
			case at >= 0 && (at-tr > deltaUnit/2 || tr-at > deltaUnit/2):
				t.Fatalf("seed %d: seq %d at %d, reported %d", seed, seq, tr, at)
			}
		}
		for seq := range truth {
			if got[seq] < 0 {
				t.Fatalf("seed %d: seq %d arrived but is reported lost only", seed, seq)
			}
		}
	}
}

func TestNothingToReport(t *testing.T) {
	r := New(1)
	if b := r.AppendFeedback(nil); len(b) != 0 {
		t.Fatalf("feedback before any packet: % x", b)
	}
	r.Record(2, 10, 1000)
	if b := r.AppendFeedback(nil); len(b) == 0 {
		t.Fatal("no feedback for a packet")
	}
	if b := r.AppendFeedback(nil); len(b) != 0 {
		t.Fatalf("the same packet reported twice: % x", b)
	}
}

// TestLongRunSplits: a backlog longer than one packet's worth (a stalled
// sender, a late feedback) goes out over several calls, each compound
// packet parseable and within MaxFeedbackBytes, until all is reported.
func TestLongRunSplits(t *testing.T) {
	for _, gap := range []int64{5000, 200} { // large deltas across losses; small ones
		r := New(1)
		for i := range 3000 {
			if i%3 == 0 {
				continue
			}
			r.Record(2, uint16(65000+i), int64(i)*gap)
		}
		got := map[uint16]int64{}
		calls := 0
		for b := r.AppendFeedback(nil); len(b) > 0; b = r.AppendFeedback(b[:0]) {
			if calls++; calls > 100 {
				t.Fatal("the backlog never drains")
			}
			if len(b) > MaxFeedbackBytes {
				t.Fatalf("%d bytes in one call", len(b))
			}
			decode(t, b, got)
		}
		received := 0
		for _, at := range got {
			if at >= 0 {
				received++
			}
		}
		if received != 2000 || calls < 2 {
			t.Fatalf("gap %d µs: %d arrivals reported in %d calls, want 2000 in several", gap, received, calls)
		}
	}
}

func FuzzRecorder(f *testing.F) {
	f.Add([]byte{0, 1, 0, 0, 0, 2, 0, 9, 0xff, 0xff, 0x80, 0})
	f.Fuzz(func(t *testing.T, in []byte) {
		r := New(1)
		// Arbitrary sequence numbers may come round again as another
		// extended number: a report must match one of a number's arrivals.
		arrivals := map[uint16][]int64{}
		var at int64
		var buf []byte
		for i := 0; i+4 <= len(in) && i < 4*5000; i += 4 {
			seq := uint16(in[i])<<8 | uint16(in[i+1])
			at += int64(in[i+2]) << (in[i+3] % 24)
			r.Record(5, seq, at)
			arrivals[seq] = append(arrivals[seq], at)
			if in[i+3]&0x80 == 0 {
				continue
			}
			buf = r.AppendFeedback(buf[:0])
			if len(buf) == 0 {
				continue
			}
			got := map[uint16]int64{}
			decode(t, buf, got)
			for seq, g := range got {
				if g < 0 {
					continue
				}
				match := false
				for _, a := range arrivals[seq] {
					match = match || g-a <= deltaUnit/2 && a-g <= deltaUnit/2
				}
				if !match {
					t.Fatalf("seq %d reported at %d, arrived at %v", seq, g, arrivals[seq])
				}
			}
		}
	})
}

func BenchmarkRecord(b *testing.B) {
	for _, c := range []struct {
		name   string
		record func(seq uint16, at int64)
		build  func()
	}{
		{"pion", nil, nil},
		{"castbridge", nil, nil},
	} {
		var buf []byte
		if c.name == "pion" {
			r := twcc.NewRecorder(1)
			c.record = func(seq uint16, at int64) { r.Record(2, seq, at) }
			c.build = func() { _ = r.BuildFeedbackPacket() }
		} else {
			r := New(1)
			c.record = func(seq uint16, at int64) { r.Record(2, seq, at) }
			c.build = func() { buf = r.AppendFeedback(buf[:0]) }
		}
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			var seq uint16
			var at int64
			for b.Loop() {
				seq++
				at += 3000
				c.record(seq, at)
				if seq%33 == 0 { // feedback every ~100 ms at 333 packets/s
					c.build()
				}
			}
		})
	}
}
