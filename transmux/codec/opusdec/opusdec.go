// Package opusdec turns the Opus payloads of a WebRTC audio track into a
// gap-free 48 kHz stereo PCM stream, ready for an AAC encoder.
//
// RTMP ingests want AAC, so Opus has to be decoded; and because AAC frames
// are timestamped from the count of samples fed to the encoder, the PCM
// timeline must never shrink: lost packets and DTX pauses are filled
// (Decoder.Conceal, placed by Filler) so that N seconds published are N
// seconds of PCM. Stream bundles the two for the common case.
package opusdec

import (
	"errors"
	"fmt"
	"slices"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/opus"
	pionopus "github.com/pion/opus"
)

// Output format of every Decoder: 48 kHz, two interleaved channels.
const (
	SampleRate = 48000
	Channels   = 2
	// MaxPacketSamples is the longest Opus packet (120 ms) in samples per
	// channel; dst needs room for MaxPacketSamples*Channels values to
	// decode any packet without growing.
	MaxPacketSamples = 5760
)

// fadeSamples is how long (per channel) concealment takes to fade the last
// decoded audio down to silence: 10 ms is short enough not to sound like an
// echo of the last frame and long enough to avoid a click.
const fadeSamples = SampleRate / 100

// ErrEmptyPayload is returned by Decode for a zero-length payload, which
// carries no Opus TOC and so no duration.
var ErrEmptyPayload = errors.New("opusdec: empty Opus payload")

// Decoder decodes Opus packets to 48 kHz stereo int16 PCM. Mono packets are
// upmixed by the underlying decoder (both channels carry the same signal).
//
// pion/opus v0.1.0 has no packet loss concealment, so Conceal fades the last
// decoded audio out over 10 ms and then emits silence. Packets that carry
// no coded frame (TOC-only packets, as Opus DTX sends) are treated the same
// way, since the reference decoder runs PLC for them too.
//
// A Decoder is not safe for concurrent use. Decode and Conceal do not
// allocate when dst has enough capacity.
type Decoder struct {
	dec pionopus.Decoder

	// last holds the most recent decoded (or concealed) interleaved PCM,
	// the material Conceal fades out.
	last    [MaxPacketSamples * Channels]int16
	lastLen int // valid values in last
	// faded counts samples per channel already faded since the last
	// decoded packet; past fadeSamples only silence comes out.
	faded int
}

// New returns a Decoder for 48 kHz stereo output.
func New() (*Decoder, error) {
	dec, err := pionopus.NewDecoderWithOutput(SampleRate, Channels)
	if err != nil {
		return nil, fmt.Errorf("opusdec: create decoder: %w", err)
	}
	return &Decoder{dec: dec}, nil
}

// PacketSamples returns the duration of an Opus packet in samples per
// channel at 48 kHz, read from its TOC, or 0 when the payload is not a
// valid Opus packet.
func PacketSamples(payload []byte) int {
	n := opus.PacketDuration2(payload)
	if n <= 0 || n > MaxPacketSamples {
		return 0
	}
	return int(n)
}

// Decode decodes one Opus packet and appends its interleaved stereo PCM to
// dst, returning the extended slice. On error dst is returned unchanged; the
// caller should then Conceal the packet's duration (PacketSamples) so the
// timeline keeps its length.
func (d *Decoder) Decode(payload []byte, dst []int16) ([]int16, error) {
	if len(payload) == 0 {
		return dst, ErrEmptyPayload
	}
	samples := PacketSamples(payload)
	if samples == 0 {
		return dst, fmt.Errorf("opusdec: invalid Opus TOC 0x%02x", payload[0])
	}
	if len(payload) == 1 {
		// A TOC without frame data: DTX or a deliberately empty frame.
		return d.Conceal(samples, dst), nil
	}
	start := len(dst)
	dst = slices.Grow(dst, samples*Channels)
	out := dst[start : start+samples*Channels]
	n, err := d.dec.DecodeToInt16(payload, out)
	if err != nil {
		return dst[:start], fmt.Errorf("opusdec: decode %d-byte packet (TOC 0x%02x): %w", len(payload), payload[0], err)
	}
	out = out[:n*Channels]
	d.lastLen = copy(d.last[:], out)
	d.faded = 0
	return dst[:start+len(out)], nil
}

// Conceal appends samples (per channel) of stand-in audio for a lost packet
// or a DTX pause: the last decoded audio repeated with a linear fade to zero
// over 10 ms, then silence. Consecutive calls continue the same fade.
func (d *Decoder) Conceal(samples int, dst []int16) []int16 {
	if samples <= 0 {
		return dst
	}
	start := len(dst)
	dst = slices.Grow(dst, samples*Channels)
	dst = dst[:start+samples*Channels]
	out := dst[start:]
	frames := d.lastLen / Channels
	i := 0
	for ; i < samples && d.faded < fadeSamples && frames > 0; i++ {
		src := (d.faded % frames) * Channels
		// gain falls from 1 to 0 across fadeSamples.
		g := int32(fadeSamples - d.faded)
		for c := range Channels {
			out[i*Channels+c] = int16(int32(d.last[src+c]) * g / fadeSamples)
		}
		d.faded++
	}
	clear(out[i*Channels:])
	return dst
}
