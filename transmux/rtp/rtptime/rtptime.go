// Package rtptime turns 32-bit RTP timestamps into the monotonic millisecond
// timestamps that FLV/RTMP expects.
//
// RTP timestamps start at a random value, wrap around every 2^32 ticks (13.2
// hours at 90 kHz, 24.8 hours at 48 kHz) and can step backwards when packets
// or frames are reordered. FLV timestamps are unsigned 32-bit milliseconds
// that a muxer must never decrease. Unwrapper and Timeline bridge the two.
package rtptime

// Unwrapper extends 32-bit RTP timestamps to int64 across wraparound.
//
// Each timestamp is placed at the int64 value closest to the previous one,
// so a step of less than 2^31 ticks is taken as forward or backward motion,
// whichever is shorter. This handles both the forward wrap at 2^32 and small
// backward steps (reordered frames, B-frames) just below a wrap.
//
// The zero value is ready to use; the first timestamp is returned unchanged.
type Unwrapper struct {
	last    int64
	started bool
}

// Unwrap returns ts extended to 64 bits.
func (u *Unwrapper) Unwrap(ts uint32) int64 {
	if !u.started {
		u.started = true
		u.last = int64(ts)
		return u.last
	}
	// int32 of the modular difference is the closest signed distance.
	u.last += int64(int32(ts - uint32(u.last)))
	return u.last
}

// Reset forgets the history: the next timestamp is returned unchanged.
func (u *Unwrapper) Reset() {
	*u = Unwrapper{}
}

// DefaultClockRate is used by NewTimeline when it is given a clock rate of 0,
// so that a misconfigured track yields plausible video timing instead of a
// division by zero.
const DefaultClockRate = 90000

// Timeline converts RTP timestamps of one track to FLV millisecond
// timestamps.
//
// The first sample is time 0. Later samples are placed by their distance from
// it, rounded to the nearest millisecond, so rounding errors never add up
// over a long stream. The output never decreases: a sample that would map
// before the last emitted time (a late or reordered frame, an audio clock
// that stepped back) gets the last emitted time instead and is counted in
// Clamped.
//
// The result is the FLV timestamp itself: uint32 milliseconds that wrap
// around after about 49.7 days, exactly as the 24+8 bit FLV timestamp field
// does.
//
// A Timeline is not safe for concurrent use.
type Timeline struct {
	clockRate int64
	unwrap    Unwrapper

	started bool
	base    int64 // unwrapped RTP time of the sample mapped to baseMS
	baseMS  int64
	lastMS  int64
	clamped uint64
}

// NewTimeline returns a Timeline for a track with the given RTP clock rate
// (90000 for video, 48000 for Opus). A clock rate of 0 is replaced with
// DefaultClockRate.
func NewTimeline(clockRate uint32) *Timeline {
	if clockRate == 0 {
		clockRate = DefaultClockRate
	}
	return &Timeline{clockRate: int64(clockRate)}
}

// Millis returns the FLV timestamp, in milliseconds since the first sample,
// of the sample with RTP timestamp rtpTS.
func (t *Timeline) Millis(rtpTS uint32) uint32 {
	ext := t.unwrap.Unwrap(rtpTS)
	if !t.started {
		t.started = true
		t.base = ext
		t.lastMS = t.baseMS
		return uint32(t.lastMS)
	}

	ms := t.baseMS + t.ticksToMillis(ext-t.base)
	if ms < t.lastMS {
		t.clamped++
		ms = t.lastMS
	}
	t.lastMS = ms
	return uint32(ms)
}

// ticksToMillis converts a tick count to milliseconds, rounding half away
// from zero. It splits the multiplication so that it cannot overflow for any
// distance an Unwrapper can produce in practice.
func (t *Timeline) ticksToMillis(ticks int64) int64 {
	neg := ticks < 0
	if neg {
		ticks = -ticks
	}
	whole := ticks / t.clockRate * 1000
	frac := (ticks%t.clockRate*1000 + t.clockRate/2) / t.clockRate
	if neg {
		return -(whole + frac)
	}
	return whole + frac
}

// Rebase makes the next sample continue from the last emitted time instead
// of being placed by its RTP distance from the first sample. Call it after a
// discontinuity in the RTP timeline (the publisher restarted, the SSRC
// changed, the reorder buffer reset on a sequence jump): the new RTP
// timestamps are unrelated to the old ones and would otherwise map hours into
// the future or be clamped forever.
func (t *Timeline) Rebase() {
	if !t.started {
		return
	}
	t.started = false
	t.baseMS = t.lastMS
	t.unwrap.Reset()
}

// Clamped returns how many samples mapped before the last emitted time and
// were moved forward to it.
func (t *Timeline) Clamped() uint64 {
	return t.clamped
}
