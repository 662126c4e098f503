package rtpreorder

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/pion/rtp"
)

const testSSRC = 0x11223344

var t0 = time.Unix(1700000000, 0)

func marshal(t testing.TB, seq uint16, payload ...byte) []byte {
	t.Helper()
	p := rtp.Packet{
		Header: rtp.Header{
			Version:        2,
			PayloadType:    96,
			SequenceNumber: seq,
			Timestamp:      uint32(seq) * 3000,
			SSRC:           testSSRC,
		},
		Payload: payload,
	}
	if len(p.Payload) == 0 {
		p.Payload = []byte{byte(seq), byte(seq >> 8)}
	}
	raw, err := p.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func push(t testing.TB, b *Buffer, now time.Time, seqs ...uint16) {
	t.Helper()
	for _, s := range seqs {
		if err := b.Push(marshal(t, s), now); err != nil {
			t.Fatalf("push %d: %v", s, err)
		}
	}
}

type popped struct {
	seq  uint16
	lost bool
}

func popAll(t testing.TB, b *Buffer, now time.Time) []popped {
	t.Helper()
	var out []popped
	for {
		pkt, lost, ok := b.Pop(now)
		if !ok {
			return out
		}
		if want := []byte{byte(pkt.SequenceNumber), byte(pkt.SequenceNumber >> 8)}; !bytes.Equal(pkt.Payload, want) {
			t.Fatalf("seq %d: payload %x, want %x", pkt.SequenceNumber, pkt.Payload, want)
		}
		out = append(out, popped{pkt.SequenceNumber, lost})
	}
}

func expect(t testing.TB, got []popped, want ...popped) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("got %v, want %v", got, want)
		}
	}
}

func ok(seqs ...uint16) []popped {
	out := make([]popped, len(seqs))
	for i, s := range seqs {
		out[i] = popped{seq: s}
	}
	return out
}

func TestInOrder(t *testing.T) {
	b := New(64, 100*time.Millisecond)
	for s := uint16(1000); s < 1100; s++ {
		push(t, b, t0, s)
		expect(t, popAll(t, b, t0), ok(s)...)
	}
	if st := b.Stats(); st != (Stats{Received: 100}) {
		t.Fatalf("stats %+v", st)
	}
}

func TestReorderWithinWindow(t *testing.T) {
	b := New(64, 100*time.Millisecond)
	push(t, b, t0, 10)
	expect(t, popAll(t, b, t0), ok(10)...)
	push(t, b, t0, 13, 12)
	expect(t, popAll(t, b, t0)) // 11 missing, still waiting
	push(t, b, t0.Add(50*time.Millisecond), 11)
	expect(t, popAll(t, b, t0.Add(50*time.Millisecond)), ok(11, 12, 13)...)
	if st := b.Stats(); st.Lost != 0 || st.Received != 4 {
		t.Fatalf("stats %+v", st)
	}
}

func TestLossAfterTimeout(t *testing.T) {
	const delay = 100 * time.Millisecond
	b := New(64, delay)
	push(t, b, t0, 1)
	expect(t, popAll(t, b, t0), ok(1)...)
	push(t, b, t0, 4)                          // 2 and 3 missing
	push(t, b, t0.Add(40*time.Millisecond), 5) // waiting counts from 4's arrival
	expect(t, popAll(t, b, t0.Add(delay-time.Nanosecond)))
	expect(t, popAll(t, b, t0.Add(delay)), popped{4, true}, popped{5, false})
	if st := b.Stats(); st.Lost != 2 {
		t.Fatalf("lost = %d, want 2", st.Lost)
	}

	// The retransmission arrives too late.
	push(t, b, t0.Add(delay), 2)
	expect(t, popAll(t, b, t0.Add(delay)))
	if st := b.Stats(); st.Late != 1 {
		t.Fatalf("late = %d, want 1", st.Late)
	}
}

func TestSecondGapWaitsFromItsOwnPacket(t *testing.T) {
	const delay = 100 * time.Millisecond
	b := New(64, delay)
	push(t, b, t0, 1)
	popAll(t, b, t0)
	push(t, b, t0, 3)                          // gap 2
	push(t, b, t0.Add(90*time.Millisecond), 5) // gap 4, 5 arrived later
	expect(t, popAll(t, b, t0.Add(delay)), popped{3, true})
	expect(t, popAll(t, b, t0.Add(delay+80*time.Millisecond)))
	expect(t, popAll(t, b, t0.Add(delay+90*time.Millisecond)), popped{5, true})
}

func TestZeroDelaySkipsImmediately(t *testing.T) {
	b := New(16, 0)
	push(t, b, t0, 1, 3)
	expect(t, popAll(t, b, t0), popped{1, false}, popped{3, true})
}

func TestDuplicate(t *testing.T) {
	b := New(64, time.Second)
	push(t, b, t0, 1)
	popAll(t, b, t0)
	push(t, b, t0, 3, 3, 3)
	push(t, b, t0, 1) // already emitted
	push(t, b, t0, 2)
	expect(t, popAll(t, b, t0), ok(2, 3)...)
	st := b.Stats()
	if st.Duplicates != 2 || st.Late != 1 || st.Received != 6 {
		t.Fatalf("stats %+v", st)
	}
}

func TestWraparound(t *testing.T) {
	b := New(64, time.Second)
	push(t, b, t0, 65533)
	push(t, b, t0, 65535, 65534, 1, 0, 2)
	expect(t, popAll(t, b, t0), ok(65533, 65534, 65535, 0, 1, 2)...)

	// Loss across the wrap.
	push(t, b, t0, 65534)
	// 65534 is behind 2 by 4: late, not a jump.
	if st := b.Stats(); st.Late != 1 {
		t.Fatalf("stats %+v", st)
	}
	b.Reset()
	push(t, b, t0, 65534)
	popAll(t, b, t0)
	push(t, b, t0, 1)
	expect(t, popAll(t, b, t0.Add(time.Second)), popped{1, true})
	if st := b.Stats(); st.Lost != 2 { // 65535, 0
		t.Fatalf("lost = %d, want 2", st.Lost)
	}
}

func TestBigJumpForwardResets(t *testing.T) {
	b := New(64, time.Second)
	push(t, b, t0, 100)
	popAll(t, b, t0)
	push(t, b, t0, 102, 103) // 101 missing: 2 buffered
	push(t, b, t0, 100+64+1) // beyond the window
	expect(t, popAll(t, b, t0), popped{165, true})
	push(t, b, t0, 166)
	expect(t, popAll(t, b, t0), ok(166)...)
	st := b.Stats()
	if st.Resets != 1 || st.Lost != 2 {
		t.Fatalf("stats %+v", st)
	}
}

func TestBigJumpBackwardResets(t *testing.T) {
	b := New(64, time.Second)
	push(t, b, t0, 30000)
	popAll(t, b, t0)
	push(t, b, t0, 30000-63) // late, within a window's distance
	expect(t, popAll(t, b, t0))
	push(t, b, t0, 5) // publisher restarted from a low number
	expect(t, popAll(t, b, t0), popped{5, true})
	push(t, b, t0, 6)
	expect(t, popAll(t, b, t0), ok(6)...)
	if st := b.Stats(); st.Resets != 1 || st.Late != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestSSRCChangeResets(t *testing.T) {
	b := New(64, time.Second)
	push(t, b, t0, 1)
	popAll(t, b, t0)
	p := rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: 2, SSRC: 99}, Payload: []byte{2, 0}}
	raw, _ := p.Marshal()
	if err := b.Push(raw, t0); err != nil {
		t.Fatal(err)
	}
	pkt, lost, ok := b.Pop(t0)
	if !ok || !lost || pkt.SSRC != 99 {
		t.Fatalf("ok=%v lost=%v", ok, lost)
	}
	if b.Stats().Resets != 1 {
		t.Fatal("no reset")
	}
}

func TestFullBuffer(t *testing.T) {
	b := New(8, time.Hour)
	push(t, b, t0, 0)
	popAll(t, b, t0)
	// next is 1 and missing; 2..7 keep it waiting.
	push(t, b, t0, 2, 3, 4, 5, 6, 7)
	expect(t, popAll(t, b, t0))
	// 8 fills the last slot of the window: the gap is given up.
	push(t, b, t0, 8)
	expect(t, popAll(t, b, t0), popped{2, true}, popped{3, false}, popped{4, false},
		popped{5, false}, popped{6, false}, popped{7, false}, popped{8, false})
	push(t, b, t0, 9)
	expect(t, popAll(t, b, t0), ok(9)...)
	if st := b.Stats(); st.Lost != 1 || st.Resets != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestCapacityRounding(t *testing.T) {
	for _, c := range []struct{ in, want int }{{-5, 2}, {0, 2}, {3, 4}, {512, 512}, {513, 1024}, {1 << 20, MaxCapacity}} {
		if got := New(c.in, 0).Capacity(); got != c.want {
			t.Errorf("New(%d).Capacity() = %d, want %d", c.in, got, c.want)
		}
	}
}

func TestMalformedChangesNothing(t *testing.T) {
	b := New(16, time.Second)
	push(t, b, t0, 7)

	valid := marshal(t, 8)
	badVersion := append([]byte(nil), valid...)
	badVersion[0] = 0x40 // version 1
	badPadding := append([]byte(nil), valid...)
	badPadding[0] |= 0x20
	badPadding[len(badPadding)-1] = 200
	badExt := append([]byte(nil), valid[:12]...)
	badExt[0] |= 0x10
	badExt = append(badExt, 0xBE, 0xDE, 0x00, 0x05) // 20 bytes announced, none there
	badCSRC := append([]byte(nil), valid[:12]...)
	badCSRC[0] |= 0x0F

	cases := map[string][]byte{
		"empty":     nil,
		"short":     valid[:5],
		"version":   badVersion,
		"padding":   badPadding,
		"extension": badExt,
		"csrc":      badCSRC,
		"too large": make([]byte, MaxPacketSize+1),
	}
	for name, raw := range cases {
		err := b.Push(raw, t0)
		if err == nil {
			t.Errorf("%s: no error", name)
			continue
		}
		if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrPacketTooLarge) {
			t.Errorf("%s: unexpected error %v", name, err)
		}
	}
	st := b.Stats()
	if st.Malformed != uint64(len(cases)) || st.Received != 1 {
		t.Fatalf("stats %+v", st)
	}
	expect(t, popAll(t, b, t0), ok(7)...)
}

func TestCallerBufferReuse(t *testing.T) {
	b := New(16, time.Second)
	raw := marshal(t, 1)
	if err := b.Push(raw, t0); err != nil {
		t.Fatal(err)
	}
	for i := range raw {
		raw[i] = 0xFF
	}
	expect(t, popAll(t, b, t0), ok(1)...)
}

func TestHeaderExtensionsAndCSRC(t *testing.T) {
	b := New(16, time.Second)
	p := rtp.Packet{Header: rtp.Header{
		Version: 2, SequenceNumber: 1, SSRC: testSSRC,
		CSRC:             []uint32{1, 2, 3},
		Extension:        true,
		ExtensionProfile: 0xBEDE,
	}, Payload: []byte{1, 0}}
	if err := p.SetExtension(1, []byte{1, 2, 3}); err != nil {
		t.Fatal(err)
	}
	if err := p.SetExtension(3, []byte{4, 5}); err != nil {
		t.Fatal(err)
	}
	raw, err := p.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Push(raw, t0); err != nil {
		t.Fatal(err)
	}
	got, _, ok := b.Pop(t0)
	if !ok || len(got.CSRC) != 3 || !bytes.Equal(got.GetExtension(3), []byte{4, 5}) || !bytes.Equal(got.Payload, []byte{1, 0}) {
		t.Fatalf("ok=%v packet %+v", ok, got)
	}
}

func TestReset(t *testing.T) {
	b := New(16, time.Second)
	push(t, b, t0, 1, 3)
	b.Reset()
	if b.Len() != 0 {
		t.Fatal("not empty")
	}
	push(t, b, t0, 500)
	expect(t, popAll(t, b, t0), ok(500)...)
}

// steadyPackets returns marshalled packets with the header extensions a
// browser sends, so that the allocation checks cover extension parsing.
func steadyPackets(t testing.TB, n int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		p := rtp.Packet{Header: rtp.Header{
			Version: 2, PayloadType: 96, SequenceNumber: uint16(i), SSRC: testSSRC,
			Timestamp: uint32(i / 10 * 3000), Marker: i%10 == 9,
			Extension: true, ExtensionProfile: 0xBEDE,
		}, Payload: make([]byte, 1100)}
		p.Payload[0], p.Payload[1] = byte(i), byte(i>>8)
		_ = p.SetExtension(2, []byte{1, 2, 3})    // abs-send-time
		_ = p.SetExtension(3, []byte{0, byte(i)}) // transport-wide-cc
		raw, err := p.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		out[i] = raw
	}
	return out
}

func TestSteadyStateNoAllocs(t *testing.T) {
	b := New(512, 100*time.Millisecond)
	pkts := steadyPackets(t, 1024)
	// Swap neighbours every 8 packets: exercises the waiting path too.
	for i := 8; i+1 < len(pkts); i += 8 {
		pkts[i], pkts[i+1] = pkts[i+1], pkts[i]
	}
	orig := make([]uint16, len(pkts))
	for j, raw := range pkts {
		orig[j] = uint16(raw[2])<<8 | uint16(raw[3])
	}
	i := 0
	now := t0
	run := func() {
		j := i % len(pkts)
		raw := pkts[j]
		// Keep the sequence running across laps of the packet list.
		seq := uint16(i-j) + orig[j]
		raw[2], raw[3] = byte(seq>>8), byte(seq)
		i++
		now = now.Add(time.Millisecond)
		if err := b.Push(raw, now); err != nil {
			t.Fatal(err)
		}
		for {
			if _, _, ok := b.Pop(now); !ok {
				break
			}
		}
	}
	for j := 0; j < 2048; j++ { // warm up
		run()
	}
	if allocs := testing.AllocsPerRun(5000, run); allocs != 0 {
		t.Fatalf("allocs per packet = %v, want 0", allocs)
	}
	if st := b.Stats(); st.Lost != 0 || st.Late != 0 || st.Resets != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func BenchmarkPushPop(b *testing.B) {
	buf := New(512, 100*time.Millisecond)
	pkts := steadyPackets(b, 1<<16)
	for i := 8; i+1 < len(pkts); i += 8 {
		pkts[i], pkts[i+1] = pkts[i+1], pkts[i]
	}
	now := t0
	b.ReportAllocs()
	b.SetBytes(int64(len(pkts[0])))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		now = now.Add(time.Microsecond)
		if err := buf.Push(pkts[i&0xFFFF], now); err != nil {
			b.Fatal(err)
		}
		for {
			if _, _, ok := buf.Pop(now); !ok {
				break
			}
		}
	}
}

func FuzzPush(f *testing.F) {
	f.Add([]byte{0x80, 0x60, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0xAA}, uint8(8), uint8(0))
	f.Add(marshal(f, 65535), uint8(3), uint8(5))
	f.Add([]byte{0x90, 0x60, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0xBE, 0xDE, 0, 1, 0x10, 0xFF, 0, 0}, uint8(1), uint8(200))
	f.Fuzz(func(t *testing.T, data []byte, capacity, step uint8) {
		b := New(int(capacity%64), 10*time.Millisecond) // small: keeps execs (and minimizing) fast
		now := t0
		// Treat data as a run of packets of varying sizes, each also
		// pushed with its sequence number nudged, so the fuzzer reaches
		// the reorder logic and not only the parser.
		for len(data) > 0 {
			n := int(data[0])%64 + 12
			if n > len(data) {
				n = len(data)
			}
			pkt := data[:n]
			data = data[n:]
			_ = b.Push(pkt, now)
			if len(pkt) >= 4 {
				alt := append([]byte(nil), pkt...)
				alt[3] += step
				_ = b.Push(alt, now)
			}
			now = now.Add(time.Duration(step) * time.Millisecond)
			var last *uint16
			for {
				p, lost, ok := b.Pop(now)
				if !ok {
					break
				}
				if p == nil {
					t.Fatal("nil packet with ok")
				}
				if last != nil && !lost && p.SequenceNumber != *last+1 {
					t.Fatalf("out of order without loss: %d after %d", p.SequenceNumber, *last)
				}
				s := p.SequenceNumber
				last = &s
			}
			if b.Len() < 0 || b.Len() > b.Capacity() {
				t.Fatalf("len %d", b.Len())
			}
		}
	})
}
