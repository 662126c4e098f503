package webrtcin

import (
	"encoding/binary"
	"math"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
)

// RTPStats measures one inbound track the way a receiver report does
// (RFC 3550 A.3 and A.8): interarrival jitter, and packets lost as expected
// minus received. observe runs on the track's receive goroutine; the
// results are read atomically from anywhere.
type RTPStats struct {
	clockRate float64

	started     bool
	baseSeq     uint16
	maxSeq      uint16
	cycles      uint32
	received    uint64
	lastTransit float64
	jitter      float64 // in RTP clock units

	expected int64

	// receiver report state (receive goroutine)
	nextReport    time.Time
	expectedPrior int64
	receivedPrior uint64

	// the publisher's last Sender Report, set by the RTCP goroutine
	srNTP atomic.Uint32 // middle 32 bits of its NTP time (RFC 3550 LSR)
	srAt  atomic.Int64  // its arrival, unix nanoseconds

	jitterBits atomic.Uint64 // jitter in ms, float64 bits
	lost       atomic.Int64
}

// receiverReportInterval is how often a reception report goes to the
// publisher (pion's report interceptor used the same).
const receiverReportInterval = time.Second

func NewRTPStats(clockRate uint32) *RTPStats { return &RTPStats{clockRate: float64(clockRate)} }

// Observe takes a raw RTP packet (header unparsed) and its arrival time.
func (r *RTPStats) Observe(raw []byte, now time.Time) {
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
		r.expected = 1
		r.nextReport = now.Add(receiverReportInterval)
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
	r.expected = int64(r.cycles)<<16 + int64(r.maxSeq) - int64(r.baseSeq) + 1
	r.lost.Store(max(0, r.expected-int64(r.received)))
}

// OnSenderReport notes the publisher's SR for the LSR/DLSR fields.
func (r *RTPStats) OnSenderReport(ntp uint64, at time.Time) {
	r.srNTP.Store(uint32(ntp >> 16))
	r.srAt.Store(at.UnixNano())
}

// Report returns the reception report for ssrc (RFC 3550 6.4.1) when one is
// due, and starts the next interval.
func (r *RTPStats) Report(ssrc uint32, now time.Time) (rtcp.ReceptionReport, bool) {
	if !r.started || now.Before(r.nextReport) {
		return rtcp.ReceptionReport{}, false
	}
	r.nextReport = now.Add(receiverReportInterval)
	expInterval := r.expected - r.expectedPrior
	lostInterval := expInterval - int64(r.received-r.receivedPrior)
	r.expectedPrior, r.receivedPrior = r.expected, r.received
	var fraction uint8
	if expInterval > 0 && lostInterval > 0 {
		fraction = uint8(min(255, lostInterval<<8/expInterval))
	}
	rep := rtcp.ReceptionReport{
		SSRC:               ssrc,
		FractionLost:       fraction,
		TotalLost:          uint32(min(max(r.expected-int64(r.received), 0), 0x7fffff)),
		LastSequenceNumber: r.cycles<<16 | uint32(r.maxSeq),
		Jitter:             uint32(r.jitter),
	}
	if at := r.srAt.Load(); at != 0 {
		rep.LastSenderReport = r.srNTP.Load()
		rep.Delay = uint32(now.Sub(time.Unix(0, at)) * 65536 / time.Second)
	}
	return rep, true
}

// Lost is the number of packets lost: expected minus received.
func (r *RTPStats) Lost() uint64 { return uint64(r.lost.Load()) }

// JitterMs is the interarrival jitter in milliseconds.
func (r *RTPStats) JitterMs() float64 {
	return math.Round(math.Float64frombits(r.jitterBits.Load())*100) / 100
}
