// Package avsync places the audio and video of one publisher on a shared
// millisecond timeline, aligned by RTCP Sender Reports.
//
// Each track's RTP clock starts at a random value and runs at its own rate;
// only Sender Reports (NTP wall time <-> RTP time, per track, from one
// sender clock) say which audio sample goes with which video frame. Before
// the first SR, and for publishers that never send one (OBS over WHIP),
// tracks are placed by arrival time. During a track's first StartWindow of
// media its mapping follows the best estimate at once: the first packets
// are the most delayed (they wait for the receiver to set up the track),
// and a slow slew from them left the first seconds of a stream off by
// whatever that delay was, a different amount each run. After that, new
// estimates (SRs arriving) are slewed into at most 1 ms per 100 ms of
// media, so the output never jumps by more than a frame.
package avsync

import (
	"time"

	"github.com/pion/rtcp"
)

// Track identifies a track added to a Sync.
type Track int

// DefaultSlew is the fastest a track's mapping moves towards a new
// estimate: 1 ms per 100 ms of media, inaudible and invisible.
const DefaultSlew = 0.01

// StartWindow is how much of a track's media its mapping follows the
// estimate without slewing: the least-delayed packet so far, or the first
// SR. What it moves then is where the stream starts, before anyone has
// watched much of it.
const StartWindow = 2 * time.Second

// FirstSRWindow: a track's first Sender Report, when it comes within this
// much of its media, moves the mapping to the SRs at once, not at the slew
// rate. Arrival times cannot see how much longer one track took to leave
// the sender (video encodes slower than audio); the SRs can, and slewing
// into them from a few seconds in left the A/V offset wrong for seconds
// more. Later SRs are slewed into.
const FirstSRWindow = 4 * time.Second

// Sync maps the RTP times of a publisher's tracks onto one timeline whose
// 0 is the first sample of any track.
//
// Internally every track maps its RTP time onto the receiver's clock (ns):
// by arrival before SRs (the smallest arrival-minus-media-time seen, i.e.
// the least-delayed packet); by the SR's NTP time plus one sender-to-
// receiver clock offset shared by all tracks once SRs are known, so the
// relative placement of the tracks comes from the SRs alone.
//
// A Sync is not safe for concurrent use; the caller serialises Observe and
// OnSenderReport (the stream's media goroutine, say).
type Sync struct {
	slew   float64
	tracks []track

	originSet bool
	origin    int64 // receiver-clock ns of output 0

	// senderOffset is receiver-clock ns minus sender NTP ns, estimated as
	// the smallest value seen over all packets of tracks with an SR.
	senderOffset    int64
	senderOffsetSet bool
}

type track struct {
	rate int64

	started bool
	lastRTP int64 // unwrapped RTP time of the last packet
	first   int64 // unwrapped RTP time of the first packet

	// Arrival mapping: receiver ns = arrivalOff + media(rtp - first).
	arrivalOff int64

	// Latest SR, RTP unwrapped against the track's packets.
	hasSR   bool
	srNTP   int64 // sender NTP in ns
	srRTP   int64
	pending *rtcp.SenderReport // SR received before the first packet
	srTaken bool               // the mapping has moved to the SRs once (FirstSRWindow)

	// Applied mapping: receiver ns = applied + media(rtp - first), moved
	// towards the target at the slew rate.
	applied    int64
	appliedSet bool
	lastMedia  int64 // media ns at the last slew step

	lastOut int64
	outSet  bool
}

// New returns an empty Sync.
func New() *Sync { return &Sync{slew: DefaultSlew} }

// AddTrack adds a track with the given RTP clock rate (48000 for Opus,
// 90000 for video) and returns its handle.
func (s *Sync) AddTrack(clockRate uint32) Track {
	if clockRate == 0 {
		clockRate = 90000
	}
	s.tracks = append(s.tracks, track{rate: int64(clockRate)})
	return Track(len(s.tracks) - 1)
}

// media converts an RTP tick count to ns without overflowing for any
// realistic stream length.
func (t *track) media(ticks int64) int64 {
	return ticks/t.rate*int64(time.Second) + ticks%t.rate*int64(time.Second)/t.rate
}

func (t *track) unwrap(ts uint32) int64 {
	return t.lastRTP + int64(int32(ts-uint32(t.lastRTP)))
}

// Observe returns the output time in milliseconds of the sample or frame
// with RTP timestamp rtpTS that arrived at arrival. Output times never
// decrease per track. An unknown track returns 0.
func (s *Sync) Observe(tr Track, rtpTS uint32, arrival time.Time) int64 {
	if int(tr) < 0 || int(tr) >= len(s.tracks) {
		return 0
	}
	t := &s.tracks[tr]
	arr := arrival.UnixNano()
	var rtp int64
	if !t.started {
		t.started = true
		rtp = int64(rtpTS)
		t.first, t.lastRTP = rtp, rtp
		t.arrivalOff = arr
		if t.pending != nil {
			s.applySR(t, t.pending)
			t.pending = nil
		}
	} else {
		rtp = t.unwrap(rtpTS)
		if rtp > t.lastRTP {
			t.lastRTP = rtp
		}
	}
	m := t.media(rtp - t.first)

	// Least-delayed packet wins: network and pacing delay only ever add.
	t.arrivalOff = min(t.arrivalOff, arr-m)
	if t.hasSR {
		d := arr - (t.srNTP + t.media(rtp-t.srRTP))
		if !s.senderOffsetSet || d < s.senderOffset {
			s.senderOffset, s.senderOffsetSet = d, true
		}
	}

	target := t.arrivalOff
	if t.hasSR {
		// receiver ns of media time 0 (the first packet) by the SR.
		target = t.srNTP + t.media(t.first-t.srRTP) + s.senderOffset
	}
	firstSR := t.hasSR && !t.srTaken && m < int64(FirstSRWindow)
	if t.hasSR {
		t.srTaken = true
	}
	if !t.appliedSet || m < int64(StartWindow) || firstSR {
		t.applied, t.appliedSet, t.lastMedia = target, true, m
	} else if m > t.lastMedia {
		step := int64(float64(m-t.lastMedia) * s.slew)
		switch diff := target - t.applied; {
		case diff > step:
			t.applied += step
		case diff < -step:
			t.applied -= step
		default:
			t.applied = target
		}
		t.lastMedia = m
	}

	at := t.applied + m
	if !s.originSet {
		s.origin, s.originSet = at, true
	}
	out := max(roundMS(at-s.origin), 0)
	if t.outSet && out < t.lastOut {
		out = t.lastOut
	}
	t.lastOut, t.outSet = out, true
	return out
}

func roundMS(ns int64) int64 {
	if ns < 0 {
		return -((-ns + 500_000) / 1_000_000)
	}
	return (ns + 500_000) / 1_000_000
}

// OnSenderReport records a track's Sender Report. Later SRs replace earlier
// ones (following the sender's clock); a nil report is ignored.
func (s *Sync) OnSenderReport(tr Track, sr *rtcp.SenderReport) {
	if sr == nil || int(tr) < 0 || int(tr) >= len(s.tracks) {
		return
	}
	t := &s.tracks[tr]
	if !t.started {
		c := *sr
		t.pending = &c
		return
	}
	s.applySR(t, sr)
}

func (s *Sync) applySR(t *track, sr *rtcp.SenderReport) {
	t.srNTP = ntpToNanos(sr.NTPTime)
	t.srRTP = t.unwrap(sr.RTPTime)
	t.hasSR = true
}

// HasSenderReport reports whether the track is placed by SRs.
func (s *Sync) HasSenderReport(tr Track) bool {
	return int(tr) >= 0 && int(tr) < len(s.tracks) && s.tracks[tr].hasSR
}

// ntpToNanos converts a 64-bit NTP timestamp (32.32 fixed point seconds
// since 1900) to ns; the epoch does not matter, only differences are used.
func ntpToNanos(ntp uint64) int64 {
	sec := int64(ntp >> 32)
	frac := int64((ntp & 0xffffffff) * uint64(time.Second) >> 32)
	return sec*int64(time.Second) + frac
}
