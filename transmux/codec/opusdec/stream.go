package opusdec

import "fmt"

// Stream decodes one audio track's packets into gap-free PCM: each packet's
// gap is concealed before it is decoded, and a packet that fails to decode
// is concealed for its duration, so the PCM always covers the RTP time.
//
// A Stream is not safe for concurrent use.
type Stream struct {
	dec    *Decoder
	filler Filler

	// Concealed counts the samples per channel filled in for gaps and
	// undecodable packets; Errors counts undecodable packets.
	Concealed int64
	Errors    int64
	// Decoded counts the packets decoded (not skipped).
	Decoded int64
}

// NewStream returns a Stream with a fresh Decoder and the default MaxGap.
func NewStream() (*Stream, error) {
	dec, err := New()
	if err != nil {
		return nil, err
	}
	return &Stream{dec: dec}, nil
}

// Push places the packet with unwrapped 48 kHz RTP time ts on the timeline
// and appends to dst the PCM for its gap (if any) and for the packet.
// Placement tells what happened; an error means the packet was replaced by
// concealment (the PCM is still appended, the timeline stays whole).
func (s *Stream) Push(ts int64, payload []byte, dst []int16) ([]int16, Placement, error) {
	samples := PacketSamples(payload)
	p := s.filler.Place(ts, samples)
	if p.Drop {
		return dst, p, nil
	}
	if p.Gap > 0 {
		dst = s.dec.Conceal(p.Gap, dst)
		s.Concealed += int64(p.Gap)
	}
	if samples == 0 {
		s.Errors++
		return dst, p, fmt.Errorf("opusdec: packet at RTP time %d has no valid TOC", ts)
	}
	s.Decoded++
	out, err := s.dec.Decode(payload, dst)
	if err != nil {
		s.Errors++
		s.Concealed += int64(samples)
		return s.dec.Conceal(samples, dst), p, fmt.Errorf("opusdec: packet at RTP time %d: %w", ts, err)
	}
	return out, p, nil
}

// Skip places the packet with unwrapped RTP time ts on the timeline as
// Push does, without decoding it: for a track whose PCM nobody takes (an
// Opus passthrough alone). The gap it reports is counted as concealed;
// the next Push starts from silence (there is no last audio to fade) and
// whatever decoder state the skipped packets would have built, which an
// Opus decoder recovers from within a frame or two.
func (s *Stream) Skip(ts int64, payload []byte) Placement {
	p := s.filler.Place(ts, PacketSamples(payload))
	if !p.Drop {
		s.Concealed += int64(p.Gap)
		s.dec.lastLen, s.dec.faded = 0, 0
	}
	return p
}

// Silence appends samples per channel of concealment (fading out, then
// silence): for a muted or stopped track, so the output keeps running.
func (s *Stream) Silence(samples int, dst []int16) []int16 {
	return s.dec.Conceal(samples, dst)
}

// Reset forgets the timeline (the next packet starts fresh) but keeps the
// decoder state.
func (s *Stream) Reset() { s.filler.Reset() }
