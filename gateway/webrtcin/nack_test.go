package webrtcin

import (
	"slices"
	"testing"
	"time"

	"github.com/pion/rtcp"
)

// giveUp is the video pipeline's reorder wait, what it passes to Due.
const giveUp = 150 * time.Millisecond

func TestNACKTracker(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	var n NACKTracker
	step := func(seq uint16, ms int, want ...uint16) {
		t.Helper()
		n.OnPacket(seq, at(ms))
		got := n.Due(at(ms), giveUp)
		if !slices.Equal(got, want) && !(len(got) == 0 && len(want) == 0) {
			t.Fatalf("seq %d at %d ms: asked for %v, want %v", seq, ms, got, want)
		}
	}
	// across the 16-bit wrap: 65534, 65535 arrive, 0 and 1 are missing
	step(65534, 0)
	step(65535, 1)
	step(2, 2, 0, 1) // gap seen: asked at once
	step(3, 10)      // not again before nackRetry
	step(1, 20)      // 1 arrives late (retransmitted)
	step(4, 45, 0)   // 0 asked again after 40 ms
	step(5, 50)      //
	step(6, 90, 0)   // and again
	step(7, 160)     // 158 ms after the gap: given up, no more requests
	if len(n.missing) != 0 {
		t.Fatalf("still tracking %v", n.missing)
	}
	// duplicates and old packets change nothing
	step(7, 161)
	step(3, 162)
	// a restart far ahead is not loss
	step(7+nackMaxGap+1, 163)
	if len(n.missing) != 0 {
		t.Fatalf("a jump of %d was taken for loss: %v", nackMaxGap+1, n.missing)
	}
	// a large burst of loss is bounded
	base := uint16(7 + nackMaxGap + 1)
	n.OnPacket(base+400, at(170))
	if len(n.missing) != nackMaxMissing || n.missing[0].seq != base+400-nackMaxMissing {
		t.Fatalf("tracking %d from %d, want %d from %d", len(n.missing), n.missing[0].seq, nackMaxMissing, base+400-nackMaxMissing)
	}
}

func TestNACKPairs(t *testing.T) {
	var n NACKTracker
	got := n.Pairs([]uint16{65530, 65531, 65535, 0, 10, 11, 40})
	want := []rtcp.NackPair{
		{PacketID: 65530, LostPackets: 1<<0 | 1<<4 | 1<<5 | 1<<15}, // 65531, 65535, 0, 10 (16 after the wrap)
		{PacketID: 11},
		{PacketID: 40},
	}
	if !slices.Equal(got, want) {
		t.Fatalf("pairs %+v, want %+v", got, want)
	}
	// the pairs describe exactly the packets asked for
	var back []uint16
	for _, p := range got {
		back = append(back, p.PacketList()...)
	}
	if !slices.Equal(back, []uint16{65530, 65531, 65535, 0, 10, 11, 40}) {
		t.Fatalf("pairs list %v", back)
	}
}

// BenchmarkNACKClean is the per-packet cost on a path without loss.
func BenchmarkNACKClean(b *testing.B) {
	var n NACKTracker
	now := time.Now()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		n.OnPacket(uint16(i), now)
		if len(n.Due(now, giveUp)) != 0 {
			b.Fatal("asked on a clean path")
		}
	}
}
