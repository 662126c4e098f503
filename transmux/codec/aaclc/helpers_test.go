package aaclc

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"
)

// signal is interleaved 16-bit PCM with its format.
type signal struct {
	rate, channels int
	pcm            []int16
}

func (s signal) frames() int { return len(s.pcm) / (s.channels * FrameSamples) }

// encodeSignal encodes s frame by frame (padding the last frame with
// silence) plus one trailing silent frame to flush the overlap, each with
// the start of the next as look-ahead.
func encodeSignal(t testing.TB, cfg Config, s signal) [][]byte {
	t.Helper()
	return encodeWith(t, cfg, s, nil)
}

// encodeWith is encodeSignal with a hook that may change the Encoder's
// options (tests compare with a tool switched off) before the first frame.
func encodeWith(t testing.TB, cfg Config, s signal, setup func(*Encoder)) [][]byte {
	t.Helper()
	e, err := NewEncoder(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if setup != nil {
		setup(e)
	}
	n := FrameSamples * s.channels
	pcm := append([]int16(nil), s.pcm...)
	for len(pcm)%n != 0 {
		pcm = append(pcm, 0)
	}
	pcm = append(pcm, make([]int16, n)...)
	var out [][]byte
	for i := 0; i < len(pcm); i += n {
		f, err := e.Encode(nil, pcm[i:i+n], aheadOf(pcm, i+n, s.channels))
		if err != nil {
			t.Fatalf("frame %d: %v", i/n, err)
		}
		if len(f)*8 > maxChannelBits*s.channels {
			t.Fatalf("frame %d: %d bits, over %d", i/n, len(f)*8, maxChannelBits*s.channels)
		}
		out = append(out, f)
	}
	return out
}

// aheadOf is the look-ahead Encode takes with the frame ending at sample
// end of interleaved pcm: the next LookAheadSamples per channel, padded
// with silence past the end.
func aheadOf(pcm []int16, end, channels int) []int16 {
	n := LookAheadSamples * channels
	if end+n <= len(pcm) {
		return pcm[end : end+n]
	}
	a := make([]int16, n)
	if end < len(pcm) {
		copy(a, pcm[end:])
	}
	return a
}

// adts wraps raw frames in ADTS headers so ffmpeg's aac demuxer reads them.
func adts(t testing.TB, rate, channels int, frames [][]byte) []byte {
	t.Helper()
	pkts := make(mpeg4audio.ADTSPackets, len(frames))
	for i, f := range frames {
		pkts[i] = &mpeg4audio.ADTSPacket{
			Type: mpeg4audio.ObjectTypeAACLC, SampleRate: rate, ChannelConfig: uint8(channels), AU: f,
		}
	}
	b, err := pkts.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// needFFmpeg skips the test when ffmpeg is not installed, and fails it
// under CI (CI set in the environment, as the other oracle tests of the
// tree read it): there a missing oracle must not pass as a skipped test.
func needFFmpeg(t testing.TB) {
	t.Helper()
	if _, err := exec.LookPath("ffmpeg"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("ffmpeg not installed, and CI is set: the FFmpeg-oracle tests must run (scripts/deps.sh installs it)")
		}
		t.Skip("ffmpeg not installed")
	}
}

// ffmpegDecode decodes ADTS with ffmpeg to interleaved s16 and fails the
// test on any error output (ffmpeg runs with -v error).
func ffmpegDecode(t testing.TB, data []byte, rate, channels int) []int16 {
	t.Helper()
	path := filepath.Join(t.TempDir(), "in.aac")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("ffmpeg", "-nostdin", "-v", "error", "-f", "aac", "-i", path,
		"-f", "s16le", "-ac", strconv.Itoa(channels), "-ar", strconv.Itoa(rate), "-")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("ffmpeg: %v: %s", err, stderr.String())
	}
	if stderr.Len() > 0 {
		t.Fatalf("ffmpeg reported errors decoding our stream:\n%s", stderr.String())
	}
	return bytesToPCM(stdout.Bytes())
}

func bytesToPCM(b []byte) []int16 {
	pcm := make([]int16, len(b)/2)
	for i := range pcm {
		pcm[i] = int16(binary.LittleEndian.Uint16(b[2*i:]))
	}
	return pcm
}

// ffmpegReference encodes s with FFmpeg's native AAC encoder at the given
// bit rate and decodes it again, for comparison. FFmpeg's encoder adds
// its own priming; the returned delay (in samples) is where the decoded
// signal best matches the input.
func ffmpegReference(t testing.TB, s signal, bitrate int) []int16 {
	t.Helper()
	dir := t.TempDir()
	raw := filepath.Join(dir, "in.raw")
	enc := filepath.Join(dir, "ref.aac")
	b := make([]byte, 2*len(s.pcm))
	for i, v := range s.pcm {
		binary.LittleEndian.PutUint16(b[2*i:], uint16(v))
	}
	if err := os.WriteFile(raw, b, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("ffmpeg", "-nostdin", "-v", "error", "-f", "s16le", "-ar", strconv.Itoa(s.rate),
		"-ac", strconv.Itoa(s.channels), "-i", raw, "-c:a", "aac", "-b:a", strconv.Itoa(bitrate), "-f", "adts", enc)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ffmpeg encode: %v: %s", err, out)
	}
	data, err := os.ReadFile(enc)
	if err != nil {
		t.Fatal(err)
	}
	return ffmpegDecode(t, data, s.rate, s.channels)
}

// snr compares decoded (delayed by delay samples per channel) with the
// original over frames [skip, len−skip) and returns the SNR in dB.
func snr(orig, decoded []int16, channels, delay, skip int) float64 {
	var sig, noise float64
	n := len(orig) / channels
	for i := skip; i < n-skip; i++ {
		j := i + delay
		if j < 0 || j >= len(decoded)/channels {
			continue
		}
		for ch := range channels {
			x := float64(orig[i*channels+ch])
			y := float64(decoded[j*channels+ch])
			sig += x * x
			noise += (x - y) * (x - y)
		}
	}
	return 10 * math.Log10(sig/max(noise, 1e-9))
}

// bestDelay finds the delay in [lo, hi] maximising the SNR.
func bestDelay(orig, decoded []int16, channels, lo, hi, skip int) (int, float64) {
	best, bestSNR := lo, math.Inf(-1)
	for d := lo; d <= hi; d++ {
		if s := snr(orig, decoded, channels, d, skip); s > bestSNR {
			best, bestSNR = d, s
		}
	}
	return best, bestSNR
}

// Test signals.

func sine(rate, channels int, seconds, hz, dbfs float64) signal {
	n := int(seconds * float64(rate))
	a := 32767 * math.Pow(10, dbfs/20)
	pcm := make([]int16, n*channels)
	for i := range n {
		v := int16(math.Round(a * math.Sin(2*math.Pi*hz*float64(i)/float64(rate))))
		for ch := range channels {
			pcm[i*channels+ch] = v
		}
	}
	return signal{rate, channels, pcm}
}

func twoTone(rate int, seconds float64) signal {
	n := int(seconds * float64(rate))
	a := 32767 * math.Pow(10, -10.0/20)
	pcm := make([]int16, 2*n)
	for i := range n {
		t := float64(i) / float64(rate)
		pcm[2*i] = int16(math.Round(a * math.Sin(2*math.Pi*440*t)))
		pcm[2*i+1] = int16(math.Round(a * math.Sin(2*math.Pi*660*t)))
	}
	return signal{rate, 2, pcm}
}

// noise is white (pink=false) or pink Gaussian noise at the given RMS dBFS,
// independent per channel.
func noise(rate, channels int, seconds, dbfs float64, pink bool, seed uint64) signal {
	rng := rand.New(rand.NewPCG(seed, 7))
	n := int(seconds * float64(rate))
	x := make([]float64, n*channels)
	var b [2][7]float64
	for i := range x {
		w := rng.NormFloat64()
		if pink {
			// Paul Kellett's refined pink filter.
			p := &b[i%channels]
			p[0] = 0.99886*p[0] + w*0.0555179
			p[1] = 0.99332*p[1] + w*0.0750759
			p[2] = 0.96900*p[2] + w*0.1538520
			p[3] = 0.86650*p[3] + w*0.3104856
			p[4] = 0.55000*p[4] + w*0.5329522
			p[5] = -0.7616*p[5] - w*0.0168980
			w = p[0] + p[1] + p[2] + p[3] + p[4] + p[5] + p[6] + w*0.5362
			p[6] = w * 0.115926
		}
		x[i] = w
	}
	var pow float64
	for _, v := range x {
		pow += v * v
	}
	g := 32767 * math.Pow(10, dbfs/20) / math.Sqrt(pow/float64(len(x)))
	pcm := make([]int16, len(x))
	for i, v := range x {
		pcm[i] = int16(max(min(math.Round(v*g), 32767), -32768))
	}
	return signal{rate, channels, pcm}
}

// sweep is a logarithmic sine sweep from f0 to f1 Hz at −10 dBFS, the same
// in all channels.
func sweep(rate, channels int, seconds, f0, f1 float64) signal {
	n := int(seconds * float64(rate))
	a := 32767 * math.Pow(10, -10.0/20)
	k := math.Log(f1 / f0)
	pcm := make([]int16, n*channels)
	for i := range n {
		t := float64(i) / float64(rate)
		phase := 2 * math.Pi * f0 * seconds / k * (math.Exp(t/seconds*k) - 1)
		v := int16(math.Round(a * math.Sin(phase)))
		for ch := range channels {
			pcm[i*channels+ch] = v
		}
	}
	return signal{rate, channels, pcm}
}

// music mixes the two tones with pink noise 20 dB below them: tonal
// peaks over a noisy floor, the load the benchmark uses.
func music(rate int, seconds float64) signal {
	s := twoTone(rate, seconds)
	nz := noise(rate, 2, seconds, -30, true, 3)
	for i := range s.pcm {
		s.pcm[i] = int16(max(min(int(s.pcm[i])+int(nz.pcm[i]), 32767), -32768))
	}
	return s
}

func (s signal) String() string {
	return fmt.Sprintf("%d Hz × %d, %.1f s", s.rate, s.channels, float64(len(s.pcm))/float64(s.rate*s.channels))
}

// lowpass filters s in place with a windowed-sinc FIR (Blackman, 255
// taps, zero phase) cutting at hz, so that a noise test signal lies
// inside the coded bandwidth and SNR measures the passband.
func lowpass(s signal, hz float64) signal {
	const taps = 255
	var h [taps]float64
	fc := hz / float64(s.rate)
	sum := 0.0
	for n := range h {
		x := float64(n - taps/2)
		v := 2 * fc
		if x != 0 {
			v = math.Sin(2*math.Pi*fc*x) / (math.Pi * x)
		}
		w := 0.42 - 0.5*math.Cos(2*math.Pi*float64(n)/(taps-1)) + 0.08*math.Cos(4*math.Pi*float64(n)/(taps-1))
		h[n] = v * w
		sum += h[n]
	}
	ch := s.channels
	frames := len(s.pcm) / ch
	out := make([]int16, len(s.pcm))
	for c := range ch {
		for i := range frames {
			acc := 0.0
			for k := range h {
				j := i + k - taps/2
				if j >= 0 && j < frames {
					acc += h[k] / sum * float64(s.pcm[j*ch+c])
				}
			}
			out[i*ch+c] = int16(max(min(math.Round(acc), 32767), -32768))
		}
	}
	return signal{s.rate, ch, out}
}
