// Package aaclc is a pure-Go AAC-LC encoder (ISO/IEC 14496-3) for the
// gateway's audio path: 16-bit PCM at 32, 44.1 or 48 kHz, mono or stereo,
// in; raw AAC frames (raw_data_block, as FLV/RTMP carries them) out.
//
// What it does, per 1024-sample frame:
//
//   - a long-window MDCT (KBD window) computed with a 512-point complex
//     FFT; KBD because its sidelobes fall off fast, so a tone does not
//     leak into (and cost bits in) distant bands;
//   - block switching (blocks.go): an attack detector on the differenced
//     input, 576 samples ahead of the frame it decides, switches to eight
//     short windows (EIGHT_SHORT, through LONG_START and back through
//     LONG_STOP) so that an attack's quantization noise stays within a
//     few ms of it; short windows are
//     grouped until the energy rises (the attack starts a new group);
//   - a simple noise-allocation model: each scalefactor band may take noise
//     in proportion to a masking level (its energy density spread to its
//     neighbours at 15 dB/Bark upwards and 27 dB/Bark downwards, raised
//     to the power 0.6), floored by the absolute threshold of hearing; one
//     global offset scales that noise and rate control searches it
//     (galloping plus bisection, at most 16 bit-counting passes); a frame
//     that reaches its floors with half its bits to spare (a quiet
//     passage) lowers the floor by 12 dB and searches again;
//   - a low-pass by bit rate per channel (17.5 kHz at 64 kbit/s per
//     channel, 15.5 kHz at 48, 20 kHz at 96): higher bands are not coded;
//   - |x|^(3/4) quantization with the rounding offset 0.4054, magnitudes
//     up to 8191;
//   - Huffman coding with sections chosen by dynamic programming over the
//     bands (a band may move to a larger codebook to join a section),
//     escape codebook 11, all-zero bands as ZERO_HCB and max_sfb cut after
//     the last coded band (digital silence costs 6 bytes a stereo frame,
//     and about 6 µs: a window over silence skips the MDCT);
//   - stereo as a channel pair element with a common window, each band
//     coded as L/R or as mid/side, whichever the bit estimate of stereo.go
//     finds cheaper for the same noise (dual-mono costs about one
//     channel); a channel without the other's attack (hard-panned
//     sources) keeps its long windows, and the pair then has a window
//     each and no M/S; mono as a single channel element.
//
// What it does not do: TNS on short windows, PNS, intensity stereo,
// prediction, a real psychoacoustic model, and a signalled bit
// reservoir. Rate control keeps a running bit balance instead: a frame may
// borrow a quarter of the bits earlier frames left unused, so the average
// rate holds to the target while a frame never exceeds the 6144 bits per
// channel a decoder's input buffer holds. Signals that need fewer bits
// than the target at the finest quantization (pure tones, silence) get
// fewer: the rate is an upper bound on average, not padded.
//
// Delay: frame n (0-based) carries input samples [(n−1)·1024, n·1024). A
// standard decoder (FFmpeg) that outputs every frame therefore returns the
// input delayed by exactly 1024 samples, and frame 0 decodes to silence,
// apart from the pre-echo of any sound at the very start of the input (a
// hard onset at sample 0 leaves noise about 30 dB below it). Each frame
// also takes the first LookAheadSamples of the next frame's input, for
// the window decision (blocks.go): a caller can encode frame n once that
// much of frame n+1 is in, 576 samples of latency more than the frame's
// own. To get out all of the input, follow it with a frame of silence.
//
// An Encoder holds the MDCT overlap and the rate-control state and is used
// by one goroutine. Encode allocates nothing once dst has room for a frame.
package aaclc

import (
	"errors"
	"fmt"
	"math"
)

// FrameSamples is the number of samples per channel in one AAC frame.
const FrameSamples = 1024

// DefaultBitrate is used when Config.Bitrate is 0.
const DefaultBitrate = 128000

// maxChannelBits is the largest frame a decoder must accept per channel
// (the minimum decoder input buffer, §4.5.3.1).
const maxChannelBits = 6144

// minChannelBitrate is the lowest rate per channel accepted: below it the
// coded bandwidth would be only a few kHz.
const minChannelBitrate = 16000

// Config selects the stream format.
type Config struct {
	// SampleRate in Hz: 32000, 44100 or 48000.
	SampleRate int
	// Channels is 1 (mono, SCE) or 2 (stereo, CPE).
	Channels int
	// Bitrate in bit/s for all channels; DefaultBitrate when 0.
	Bitrate int
}

// ErrPCMLength is returned by Encode for a pcm slice that is not exactly
// one frame.
var ErrPCMLength = errors.New("aaclc: pcm must hold FrameSamples and ahead LookAheadSamples samples per channel")

// Encoder turns PCM frames into raw AAC-LC frames.
type Encoder struct {
	cfg      Config
	freqIdx  int      // sampling_frequency_index
	swb      []uint16 // scalefactor band edges
	maxSFB   int      // bands below the low-pass cut-off
	long     layout   // bands of long, start and stop frames
	common   bool     // the pair's channels share this frame's window
	chans    []channel
	mdct     *mdct
	sections sectionScratch
	bw       bitWriter

	frameBits float64 // target bits per frame
	balance   float64 // bits earlier frames left unused (≥ 0)
	maxBits   int     // hard limit per frame
	offset    int     // last frame's global scalefactor offset

	msUsed   [maxBands]bool // band codes M/S (channel pairs)
	noMS     bool           // tests: plain L/R, for comparison
	noShort  bool           // tests: long windows only, for comparison
	noTNS    bool           // tests: no TNS, for comparison
	noRelief bool           // tests: no lowered floor for quiet frames

	tnsLo, tnsHi int // long bands TNS filters
}

// NewEncoder validates cfg and returns an Encoder for it.
func NewEncoder(cfg Config) (*Encoder, error) {
	if cfg.Bitrate == 0 {
		cfg.Bitrate = DefaultBitrate
	}
	e := &Encoder{cfg: cfg}
	switch cfg.SampleRate {
	case 48000:
		e.freqIdx, e.swb = 3, swbOffsetLong48[:]
	case 44100:
		e.freqIdx, e.swb = 4, swbOffsetLong48[:]
	case 32000:
		e.freqIdx, e.swb = 5, swbOffsetLong32[:]
	default:
		return nil, fmt.Errorf("aaclc: unsupported sample rate %d Hz (want 32000, 44100 or 48000)", cfg.SampleRate)
	}
	if cfg.Channels != 1 && cfg.Channels != 2 {
		return nil, fmt.Errorf("aaclc: unsupported channel count %d (want 1 or 2)", cfg.Channels)
	}
	maxRate := maxChannelBits * cfg.SampleRate / FrameSamples * cfg.Channels
	minRate := minChannelBitrate * cfg.Channels
	if cfg.Bitrate < minRate || cfg.Bitrate > maxRate {
		return nil, fmt.Errorf("aaclc: bit rate %d out of range [%d, %d] for %d channel(s) at %d Hz",
			cfg.Bitrate, minRate, maxRate, cfg.Channels, cfg.SampleRate)
	}
	cutoff := lowpassHz(cfg.Bitrate / cfg.Channels)
	for e.maxSFB < len(e.swb)-1 && float64(e.swb[e.maxSFB])*float64(cfg.SampleRate)/(2*FrameSamples) < cutoff {
		e.maxSFB++
	}
	e.long = newLongLayout(e.swb, e.maxSFB, cfg.SampleRate)
	e.tnsHi = min(e.maxSFB, tnsMaxBandsLong(e.freqIdx))
	for e.tnsLo < e.tnsHi && float64(e.swb[e.tnsLo])*float64(cfg.SampleRate)/(2*FrameSamples) < tnsStartHz {
		e.tnsLo++
	}
	e.chans = make([]channel, cfg.Channels)
	for ch := range e.chans {
		c := &e.chans[ch]
		c.prev, c.cur = &c.blocks[0], &c.blocks[1]
		c.curZero = true
		c.short = newShortLayout(cutoff, cfg.SampleRate)
		c.lay = &e.long
	}
	e.mdct = newMDCT()
	e.frameBits = float64(cfg.Bitrate) * FrameSamples / float64(cfg.SampleRate)
	e.maxBits = maxChannelBits * cfg.Channels
	return e, nil
}

// lowpassHz is the audio bandwidth coded at a bit rate per channel:
// narrower at low rates so that the remaining bands keep enough bits.
// FFmpeg's aac encoder cuts at min(rate·15/32 − 5500, 3000 + rate/4,
// 12000 + rate/16) Hz of its rate per channel raised by 15% for PNS: 11.8
// kHz at 32 kbit/s, 16.6 kHz at 64, 17.8 kHz at 80. This table is a little
// wider from 48 kbit/s per channel on (17.5 kHz at 64, 128 kbit/s stereo):
// M/S, and rate control that finds the finest offset that fits, leave
// bits for it, and at 128k a cut at 16.5 kHz was audible as dullness next
// to FFmpeg's stream.
func lowpassHz(channelRate int) float64 {
	points := [...]struct{ rate, hz float64 }{
		{16000, 6000}, {32000, 12000}, {48000, 15500}, {64000, 17500}, {80000, 19000}, {96000, 20000},
	}
	r := float64(channelRate)
	if r <= points[0].rate {
		return points[0].hz
	}
	for i := 1; i < len(points); i++ {
		if r <= points[i].rate {
			a, b := points[i-1], points[i]
			return a.hz + (b.hz-a.hz)*(r-a.rate)/(b.rate-a.rate)
		}
	}
	return points[len(points)-1].hz
}

// athMinHz and athMaxHz bound the frequencies at which the threshold of
// hearing is read, flattening Terhardt's curve below and above them.
// Above: the curve climbs 30 dB from 14 to 17 kHz (to −13 dBFS at 17 kHz
// with full scale at 96 dB SPL), so almost any real signal fell under the
// floor and was not coded; flat from 12 kHz (21 dB SPL) the quiet
// passages of recorded speech keep their top octave. Below: the curve
// climbs 17 dB from 500 Hz to 100 Hz, where speech and drums have their
// energy, and its floor was most of the noise (and pre-echo) in quiet
// passages. Level-independent reproduction (the listener's volume is
// unknown) argues for the flatter floor.
const (
	athMinHz = 500
	athMaxHz = 12000
)

// athFullScaleDB is the sound pressure level taken for a full-scale sine.
// 104 rather than the 96 that 16 bits span: a listener turns up quiet
// material. In the quality report it lowered the pre-echo of recorded
// speech by 3–6 dB (the noise in the quiet passage before each onset) and
// raised segmental SNR on drums and effects by 1–2 dB.
const athFullScaleDB = 104

// athEnergy is the energy of MDCT lines (in this encoder's scale) that a
// sound at the absolute threshold of hearing has in [f0, f1) Hz: Terhardt's
// approximation at the band's most sensitive frequency, with full scale
// taken as athFullScaleDB. A full-scale sine's lines carry 2^21·(32768²/2).
func athEnergy(f0, f1 float64) float64 {
	db := math.Inf(1)
	for i := range 5 {
		f := min(max(f0+(f1-f0)*float64(i)/4, athMinHz), athMaxHz) / 1000
		db = min(db, 3.64*math.Pow(f, -0.8)-6.5*math.Exp(-0.6*(f-3.3)*(f-3.3))+1e-3*f*f*f*f)
	}
	return math.Exp2(50) * math.Pow(10, (db-athFullScaleDB)/10)
}

// AudioSpecificConfig returns the 2-byte AudioSpecificConfig (object type
// 2, AAC-LC; 1024-sample frames) for the FLV sequence header.
func (e *Encoder) AudioSpecificConfig() []byte {
	v := uint16(2)<<11 | uint16(e.freqIdx)<<7 | uint16(e.cfg.Channels)<<3
	return []byte{byte(v >> 8), byte(v)}
}
