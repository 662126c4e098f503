package gateway

import (
	"encoding/binary"
	"math"
	"sync/atomic"
	"time"
)

// rtpStats measures one inbound track the way a receiver report does
// (RFC 3550 A.3 and A.8): interarrival jitter, and packets lost as expected
// minus received. observe runs on the track's receive goroutine; the
// results are read atomically from anywhere.
type rtpStats struct {
	clockRate float64

	started     bool
	baseSeq     uint16
	maxSeq      uint16
	cycles      uint32
	received    uint64
	lastTransit float64
	jitter      float64 // in RTP clock units

	jitterBits atomic.Uint64 // jitter in ms, float64 bits
	lost       atomic.Int64
}

func newRTPStats(clockRate uint32) *rtpStats { return &rtpStats{clockRate: float64(clockRate)} }

// observe takes a raw RTP packet (header unparsed) and its arrival time.
func (r *rtpStats) observe(raw []byte, now time.Time) {
	if len(raw) < 12 {
		return
	}
	seq := binary.BigEndian.Uint16(raw[2:4])
	ts := binary.BigEndian.Uint32(raw[4:8])
	arrival := float64(now.UnixNano()) * r.clockRate / 1e9
	transit := arrival - float64(ts)
	r.received++
	if !r.started {
		r.started = true
		r.baseSeq, r.maxSeq = seq, seq
		r.lastTransit = transit
		return
	}
	switch d := seq - r.maxSeq; {
	case d == 0:
	case d < 0x8000: // ahead, maybe across the wrap
		if seq < r.maxSeq {
			r.cycles++
		}
		r.maxSeq = seq
	}
	d := transit - r.lastTransit
	r.lastTransit = transit
	// Transit differences wrap with the 32-bit timestamp; ignore the jump.
	if math.Abs(d) < r.clockRate*10 {
		r.jitter += (math.Abs(d) - r.jitter) / 16
		r.jitterBits.Store(math.Float64bits(r.jitter * 1000 / r.clockRate))
	}
	expected := int64(r.cycles)<<16 + int64(r.maxSeq) - int64(r.baseSeq) + 1
	r.lost.Store(max(0, expected-int64(r.received)))
}

// jitterMs is the interarrival jitter in milliseconds.
func (r *rtpStats) jitterMs() float64 {
	return math.Round(math.Float64frombits(r.jitterBits.Load())*100) / 100
}
