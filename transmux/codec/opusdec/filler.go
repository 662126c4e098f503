package opusdec

// DefaultMaxGap is the largest RTP gap (in 48 kHz samples, 10 s) that
// Filler reports as missing audio. A bigger jump is not a pause but a
// discontinuity (a publisher restart, a broken sender clock), and filling it
// would put seconds of silence into the output.
const DefaultMaxGap = 10 * SampleRate

// Placement says where a packet goes on the PCM timeline.
type Placement struct {
	// Gap is how many samples per channel are missing before the packet
	// (lost packets or a DTX pause): Conceal them before decoding it.
	Gap int
	// Drop is set for a packet that starts before the end of audio already
	// placed (a duplicate, or one that arrived after its gap was filled):
	// skip it, its time is already covered.
	Drop bool
	// Jump is set when the RTP time moved by more than MaxGap, forwards or
	// backwards: nothing is filled and the timeline continues from this
	// packet, so the caller should re-anchor its RTP-to-output mapping.
	Jump bool
}

// Filler tracks where the next packet of a track is expected on the RTP
// clock and reports the gap before each packet, so the PCM timeline stays as
// long as the RTP timeline (loss and DTX included).
//
// Timestamps are unwrapped 48 kHz RTP times (rtptime.Unwrapper), in the order
// packets are decoded (after the reorder buffer). The zero value is ready to
// use with DefaultMaxGap.
type Filler struct {
	// MaxGap overrides DefaultMaxGap when positive.
	MaxGap int

	next    int64 // RTP time right after the audio placed so far
	started bool
}

// Place reports where the packet with RTP time ts and duration samples goes
// and, unless it is dropped, advances the expected time past it.
func (f *Filler) Place(ts int64, samples int) Placement {
	if !f.started {
		f.started = true
		f.next = ts + int64(samples)
		return Placement{}
	}
	maxGap := int64(f.MaxGap)
	if maxGap <= 0 {
		maxGap = DefaultMaxGap
	}
	gap := ts - f.next
	switch {
	case gap > maxGap || gap < -maxGap:
		f.next = ts + int64(samples)
		return Placement{Jump: true}
	case gap < 0:
		return Placement{Drop: true}
	}
	f.next = ts + int64(samples)
	return Placement{Gap: int(gap)}
}

// Next returns the RTP time at which the next packet is expected, and false
// before the first packet.
func (f *Filler) Next() (int64, bool) { return f.next, f.started }

// Reset forgets the history: the next packet starts a new timeline.
func (f *Filler) Reset() { f.next, f.started = 0, false }
