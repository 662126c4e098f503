package gateway

import (
	"encoding/binary"
	"testing"
	"time"
)

func rtpHeader(seq uint16, ts uint32) []byte {
	b := make([]byte, 12)
	b[0] = 0x80
	binary.BigEndian.PutUint16(b[2:], seq)
	binary.BigEndian.PutUint32(b[4:], ts)
	return b
}

func TestRTPStatsLossAndJitter(t *testing.T) {
	r := newRTPStats(48000)
	t0 := time.Unix(1000, 0)
	// 20 ms packets from seq 65530 across the wrap; every 10th lost, and
	// every other one arrives 4 ms late.
	seq, ts := uint16(65530), uint32(4294960000)
	var sent, dropped int
	for i := 0; i < 200; i++ {
		at := t0.Add(time.Duration(i) * 20 * time.Millisecond)
		if i%2 == 1 {
			at = at.Add(4 * time.Millisecond)
		}
		if i%10 == 5 {
			dropped++
		} else {
			r.observe(rtpHeader(seq, ts), at)
		}
		sent++
		seq++
		ts += 960
	}
	if got := r.lost.Load(); got != int64(dropped) {
		t.Errorf("lost %d, want %d", got, dropped)
	}
	// Alternating 4 ms delays give transit differences of 4 ms: jitter
	// converges to about 4 ms.
	if j := r.jitterMs(); j < 3 || j > 4.5 {
		t.Errorf("jitter %.2f ms, want about 4", j)
	}
	r.observe(rtpHeader(seq-100, ts), t0) // a late duplicate does not count as new
	if got := r.lost.Load(); got < int64(dropped)-1 {
		t.Errorf("late packet made loss %d", got)
	}
}
