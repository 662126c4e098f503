// Package rtptime turns 32-bit RTP timestamps into the monotonic millisecond
// timestamps that FLV/RTMP expects.
//
// RTP timestamps start at a random value, wrap around every 2^32 ticks (13.2
// hours at 90 kHz, 24.8 hours at 48 kHz) and can step backwards when packets
// or frames are reordered. FLV timestamps are unsigned 32-bit milliseconds
// that a muxer must never decrease. Unwrapper and Timeline bridge the two.
package rtptime

import "time"

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

// Continuity turns a track's RTP timestamps into one continuous timeline
// when the publisher's jump with no new SSRC: a looping file source that
// restarts its timestamps at 0 while its sequence numbers go on, an
// encoder that restarted. Without it a jump back freezes the output at
// the last time for the jump's length (every frame clamped to it), and a
// jump ahead leaps the output forward.
//
// A step is a jump when the timestamps go back by more than MaxBack (B-
// frames and reordering go back by a few frames at most) or ahead by more
// than MaxAhead beyond the arrival time that passed (a track that paused
// comes back with its timestamps as far ahead as the pause was long, and
// is no jump). A jump is rebased: the sample continues one interval (the
// last forward step, a frame or a packet) after the sample before it.
//
// The output is the unwrapped, rebased RTP time; its low 32 bits can be
// given to anything that expects RTP timestamps of the track (Timeline,
// an A/V sync), as long as the track's Sender Reports are moved by Offset
// too. Not safe for concurrent use.
type Continuity struct {
	clockRate int64
	// MaxBack and MaxAhead, in ticks; NewContinuity sets 300 ms and 1 s.
	MaxBack, MaxAhead int64

	unwrap   Unwrapper
	started  bool
	offset   int64 // continuous = unwrapped + offset
	last     int64 // continuous time of the newest sample
	lastArr  int64 // its arrival, unix ns
	interval int64 // the last forward step, ticks
	jumps    uint64
}

// NewContinuity returns a Continuity for a track of the given clock rate (0
// means DefaultClockRate).
func NewContinuity(clockRate uint32) *Continuity {
	if clockRate == 0 {
		clockRate = DefaultClockRate
	}
	r := int64(clockRate)
	return &Continuity{clockRate: r, MaxBack: r * 3 / 10, MaxAhead: r, interval: r / 30}
}

// Map returns the continuous time of the sample with RTP timestamp ts that
// arrived at arrivalNs (unix ns).
func (c *Continuity) Map(ts uint32, arrivalNs int64) int64 {
	ext := c.unwrap.Unwrap(ts)
	if !c.started {
		c.started = true
		c.last, c.lastArr = ext, arrivalNs
		return ext
	}
	cont := ext + c.offset
	step := cont - c.last
	elapsed := max(arrivalNs-c.lastArr, 0) / int64(time.Millisecond) * c.clockRate / 1000
	if step < -c.MaxBack || step > elapsed+c.MaxAhead {
		c.jumps++
		c.offset = c.last + c.interval - ext
		cont = c.last + c.interval
		step = c.interval
	}
	if step > 0 {
		if step <= c.clockRate {
			c.interval = step
		}
		c.last, c.lastArr = cont, arrivalNs
	}
	return cont
}

// Offset is what is added to the track's unwrapped RTP times: the sum of
// the rebased jumps. A Sender Report's RTP time (the publisher's timeline)
// plus Offset is on the continuous timeline.
func (c *Continuity) Offset() int64 { return c.offset }

// Jumps is how many jumps were rebased.
func (c *Continuity) Jumps() uint64 { return c.jumps }
