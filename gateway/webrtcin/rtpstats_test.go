package webrtcin

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
	r := NewRTPStats(48000)
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
			r.Observe(rtpHeader(seq, ts), at)
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
	if j := r.JitterMs(); j < 3 || j > 4.5 {
		t.Errorf("jitter %.2f ms, want about 4", j)
	}
	r.Observe(rtpHeader(seq-100, ts), t0) // a late duplicate does not count as new
	if got := r.lost.Load(); got < int64(dropped)-1 {
		t.Errorf("late packet made loss %d", got)
	}
}

func TestRTPStatsReceptionReport(t *testing.T) {
	r := NewRTPStats(90000)
	t0 := time.Unix(2000, 0)
	seq := uint16(65500)
	// 2 s at 100 packets/s; in the second second packets 10..29 are lost.
	var at time.Time
	var reports []time.Time
	for i := range 200 {
		at = t0.Add(time.Duration(i) * 10 * time.Millisecond)
		if i == 50 {
			// a Sender Report arrives; NTP 0x0001_2345_6789_0000
			r.OnSenderReport(0x0001234567890000, at)
		}
		if !(i >= 110 && i < 130) {
			r.Observe(rtpHeader(seq+uint16(i), uint32(i)*900), at)
		}
		if rep, ok := r.Report(0xfeed, at); ok {
			reports = append(reports, at)
			if rep.SSRC != 0xfeed {
				t.Fatalf("report for %x", rep.SSRC)
			}
			if len(reports) == 1 {
				if rep.TotalLost != 0 || rep.FractionLost != 0 {
					t.Errorf("first report: lost %d fraction %d", rep.TotalLost, rep.FractionLost)
				}
				if rep.LastSenderReport != 0x23456789 {
					t.Errorf("LSR %x, want 23456789", rep.LastSenderReport)
				}
				// 100 - 50 packets after the SR, at 10 ms: 0.5 s = 32768/65536
				if rep.Delay != 32768 {
					t.Errorf("DLSR %d, want 32768", rep.Delay)
				}
				// seq 65500+100 crosses the wrap: cycles 1, highest 64
				if rep.LastSequenceNumber != 1<<16|64 {
					t.Errorf("extended highest %x, want 10040", rep.LastSequenceNumber)
				}
			}
		}
	}
	if len(reports) != 1 || reports[0] != t0.Add(time.Second) {
		t.Fatalf("reports at %v, want one at t0+1s", reports)
	}
	rep, ok := r.Report(0xfeed, t0.Add(2*time.Second))
	if !ok {
		t.Fatal("no second report")
	}
	// 20 of the 100 packets expected since the first report were lost
	if rep.TotalLost != 20 || rep.FractionLost != 20*256/100 {
		t.Errorf("second report: lost %d fraction %d, want 20 and %d", rep.TotalLost, rep.FractionLost, 20*256/100)
	}
	if _, ok := r.Report(0xfeed, t0.Add(2*time.Second+500*time.Millisecond)); ok {
		t.Error("a report 0.5 s after the last")
	}
}
