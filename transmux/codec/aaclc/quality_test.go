package aaclc

import (
	"bytes"
	"encoding/binary"
	"flag"
	"fmt"
	"math"
	"math/cmplx"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"
)

// The quality report compares this encoder with FFmpeg's native AAC
// encoder on stress signals and real recordings, decoded by two decoders
// (FFmpeg and Debian's faad). It runs only when asked, because it takes a
// minute and needs ffmpeg, faad, espeak-ng and the sound packages:
//
//	go test ./transmux/codec/aaclc -run TestQualityReport -quality [-quality.out file.md]
//
// or scripts/aac-quality.sh, which installs what is missing and writes
// docs/aac-quality-latest.md.
var (
	qualityFlag    = flag.Bool("quality", false, "run TestQualityReport (needs ffmpeg, faad, espeak-ng)")
	qualityOut     = flag.String("quality.out", "", "write the quality report (markdown) to this file")
	qualityRates   = flag.String("quality.rates", "64,96,128,160", "bit rates in kbit/s for the quality report")
	qualityOnly    = flag.String("quality.only", "", "comma-separated material names to include (default all)")
	qualitySeconds = flag.Float64("quality.seconds", 6, "length of each synthesized material in seconds")
	qualityPics    = flag.String("quality.pictures", "", "write spectrograms (sox) of the drums and speech-alsa input and 128k decodes to this directory (absolute path)")
	qualityTop     = flag.Int("quality.top", 0, "log the N band-frames with the largest noise-to-mask ratio of each stream (what dominates NMR mean)")
)

const qRate = 48000

// material is a stereo 48 kHz test signal with where it comes from.
type material struct {
	name, source string
	sig          signal
}

// TestQualityReport encodes every material at every rate with both
// encoders, decodes each stream with both decoders and tabulates the
// measures (see qualityMeasures). It asserts only that every stream decodes
// without errors in both decoders and aligns at a stable lag; the numbers
// are for people to read and docs/aac-quality.md to record.
func TestQualityReport(t *testing.T) {
	if !*qualityFlag {
		t.Skip("quality report not requested (-quality)")
	}
	for _, tool := range []string{"ffmpeg", "faad"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is needed for the quality report: %v (scripts/deps.sh installs it)", tool, err)
		}
	}
	var rates []int
	for _, f := range strings.Split(*qualityRates, ",") {
		k, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil {
			t.Fatalf("-quality.rates: %v", err)
		}
		rates = append(rates, k*1000)
	}
	mats := qualityMaterials(t, *qualitySeconds)
	if *qualityOnly != "" {
		want := map[string]bool{}
		for _, n := range strings.Split(*qualityOnly, ",") {
			want[strings.TrimSpace(n)] = true
		}
		var keep []material
		for _, m := range mats {
			if want[m.name] {
				keep = append(keep, m)
			}
		}
		mats = keep
	}

	var rows []qualityRow
	for _, m := range mats {
		onsets := findOnsets(m.sig)
		for _, rate := range rates {
			for _, enc := range []string{"ours", "ffmpeg"} {
				row := qualityRow{material: m.name, rate: rate, encoder: enc, onsets: len(onsets)}
				var stream []byte
				var frames int
				var aus [][]byte
				start := time.Now()
				if enc == "ours" {
					fr := encodeSignal(t, Config{SampleRate: qRate, Channels: 2, Bitrate: rate}, m.sig)
					row.encodeTime = time.Since(start)
					stream, frames, aus = adts(t, qRate, 2, fr), len(fr), fr
					bits := 0
					for _, f := range fr {
						bits += 8 * len(f)
					}
					row.kbps = float64(bits) / float64(frames) * qRate / FrameSamples / 1000
				} else {
					stream = ffmpegEncode(t, m.sig, rate)
					row.encodeTime = time.Since(start)
					var pkts mpeg4audio.ADTSPackets
					if err := pkts.Unmarshal(stream); err != nil {
						t.Fatalf("%s: ffmpeg's ADTS: %v", m.name, err)
					}
					bits := 0
					for _, p := range pkts {
						bits += 8 * len(p.AU)
					}
					frames = len(pkts)
					for _, p := range pkts {
						aus = append(aus, p.AU)
					}
					row.kbps = float64(bits) / float64(frames) * qRate / FrameSamples / 1000
				}
				for di, dec := range []func(testing.TB, []byte) ([]int16, string){decodeFFmpeg, decodeFaad} {
					pcm, errs := dec(t, stream)
					if errs != "" {
						t.Errorf("%s %dk %s: decoder %d: %s", m.name, rate/1000, enc, di, errs)
						row.errors[di] = strings.Count(strings.TrimSpace(errs), "\n") + 1
					}
					lag := alignLag(m.sig, pcm)
					row.lag[di] = lag
					if di == 0 && rate == 128000 && *qualityPics != "" && (m.name == "drums" || m.name == "speech-alsa") {
						spectrogram(t, m.sig.pcm, m.name+"-input", m.name+": input")
						spectrogram(t, pcm[2*lag:], m.name+"-"+enc, fmt.Sprintf("%s: %s encoder at 128k, decoded by FFmpeg", m.name, enc))
					}
					if di == 0 {
						var top []bandFrame
						row.qualityMeasures, top = measure(m.sig, pcm, lag, onsets)
						if *qualityTop > 0 {
							logTopBandFrames(t, row, top, aus, lag, *qualityTop)
						}
					} else {
						// faad's decode is a cross-check: its SNR must match.
						row.faadSNR = snr(m.sig.pcm, pcm, 2, lag, 0)
					}
				}
				if enc == "ours" && (row.lag[0] != FrameSamples) {
					t.Errorf("%s %dk: our stream aligns at lag %d in FFmpeg, want %d", m.name, rate/1000, row.lag[0], FrameSamples)
				}
				rows = append(rows, row)
				t.Logf("%s", row.line())
			}
		}
	}
	report := qualityReport(mats, rates, rows)
	t.Logf("\n%s", report)
	if *qualityOut != "" {
		if err := os.WriteFile(*qualityOut, []byte(report), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// qualityMeasures are computed on a decode aligned to the input.
type qualityMeasures struct {
	snr, segSNR float64 // dB
	nmr         float64 // mean noise-to-mask ratio, dB
	nmrMax      float64 // worst band-frame NMR (95th percentile), dB
	preEcho     float64 // mean error energy 20–5 ms before onsets relative to the onset's 20 ms, dB
	bandwidth   float64 // Hz, on the decoded spectrum
}

type qualityRow struct {
	material   string
	rate       int
	encoder    string
	kbps       float64
	encodeTime time.Duration
	onsets     int
	lag        [2]int // FFmpeg, faad
	errors     [2]int
	faadSNR    float64
	qualityMeasures
}

func (r qualityRow) line() string {
	pre := "–"
	if r.onsets > 0 {
		pre = fmtDB(r.preEcho)
	}
	return fmt.Sprintf("| %s | %d | %s | %.1f | %.1f | %.1f | %.1f | %.1f | %s | %.1f | %d/%d | %d/%d | %.1f |",
		r.material, r.rate/1000, r.encoder, r.kbps, r.snr, r.segSNR, r.nmr, r.nmrMax, pre, r.bandwidth/1000,
		r.lag[0], r.lag[1], r.errors[0], r.errors[1], r.faadSNR)
}

func fmtDB(v float64) string {
	if v < -99 {
		return "< −99"
	}
	return fmt.Sprintf("%.1f", v)
}

func qualityReport(mats []material, rates []int, rows []qualityRow) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Materials (48 kHz stereo):\n\n")
	for _, m := range mats {
		fmt.Fprintf(&b, "- **%s**: %s (%.1f s, %d onsets)\n", m.name, m.source,
			float64(len(m.sig.pcm))/2/qRate, len(findOnsets(m.sig)))
	}
	fmt.Fprintf(&b, "\n| material | kbit/s | encoder | real kbit/s | SNR | segSNR | NMR mean | NMR p95 | pre-echo | BW kHz | lag ff/faad | errors ff/faad | SNR faad |\n")
	fmt.Fprintf(&b, "|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range rows {
		fmt.Fprintf(&b, "%s\n", r.line())
	}
	fmt.Fprintf(&b, "\nMeans over the materials (pre-echo over those with onsets):\n\n")
	fmt.Fprintf(&b, "| kbit/s | encoder | real kbit/s | SNR | segSNR | NMR mean | pre-echo | BW kHz | encode ms/s |\n|---|---|---|---|---|---|---|---|---|\n")
	for _, rate := range rates {
		for _, enc := range []string{"ours", "ffmpeg"} {
			var n, np int
			var sum qualityMeasures
			var kbps, ms, secs float64
			for i, r := range rows {
				if r.rate != rate || r.encoder != enc {
					continue
				}
				n++
				kbps += r.kbps
				sum.snr += r.snr
				sum.segSNR += r.segSNR
				sum.nmr += r.nmr
				sum.bandwidth += r.bandwidth
				if r.onsets > 0 {
					np++
					sum.preEcho += max(r.preEcho, -100)
				}
				ms += float64(r.encodeTime.Microseconds()) / 1000
				for _, m := range mats {
					if m.name == rows[i].material {
						secs += float64(len(m.sig.pcm)) / 2 / qRate
					}
				}
			}
			if n == 0 {
				continue
			}
			fn := float64(n)
			fmt.Fprintf(&b, "| %d | %s | %.1f | %.1f | %.1f | %.1f | %s | %.1f | %.1f |\n", rate/1000, enc, kbps/fn,
				sum.snr/fn, sum.segSNR/fn, sum.nmr/fn, fmtDB(sum.preEcho/float64(max(np, 1))), sum.bandwidth/fn/1000, ms/secs)
		}
	}
	return b.String()
}

// spectrogram renders the left channel of stereo pcm to
// <-quality.pictures>/<name>.png with sox (monochrome, small).
func spectrogram(t testing.TB, pcm []int16, name, title string) {
	t.Helper()
	raw := filepath.Join(t.TempDir(), name+".raw")
	if err := os.WriteFile(raw, pcmToBytes(pcm), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(*qualityPics, name+".png")
	cmd := exec.Command("sox", "-t", "raw", "-r", "48000", "-e", "signed", "-b", "16", "-c", "2", raw, "-n",
		"remix", "1", "trim", "0", "3", "spectrogram", "-m", "-x", "480", "-y", "129", "-z", "90", "-t", title, "-o", out)
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("sox spectrogram: %v: %s", err, msg)
	}
}

// ffmpegEncode encodes s with FFmpeg's native AAC encoder to ADTS.
func ffmpegEncode(t testing.TB, s signal, bitrate int) []byte {
	t.Helper()
	dir := t.TempDir()
	raw := filepath.Join(dir, "in.raw")
	enc := filepath.Join(dir, "ref.aac")
	if err := os.WriteFile(raw, pcmToBytes(s.pcm), 0o644); err != nil {
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
	return data
}

func pcmToBytes(pcm []int16) []byte {
	b := make([]byte, 2*len(pcm))
	for i, v := range pcm {
		binary.LittleEndian.PutUint16(b[2*i:], uint16(v))
	}
	return b
}

// decodeFFmpeg decodes stereo ADTS with FFmpeg; the second result is the
// decoder's error output.
func decodeFFmpeg(t testing.TB, data []byte) ([]int16, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "in.aac")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("ffmpeg", "-nostdin", "-v", "error", "-f", "aac", "-i", path, "-f", "s16le", "-ac", "2", "-ar", "48000", "-")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return bytesToPCM(stdout.Bytes()), fmt.Sprintf("ffmpeg: %v: %s", err, stderr.String())
	}
	return bytesToPCM(stdout.Bytes()), stderr.String()
}

// decodeFaad decodes stereo ADTS with faad (libfaad2's command line tool)
// to raw 16-bit PCM. faad prints a banner and a summary on stderr; errors
// are the lines that say so.
func decodeFaad(t testing.TB, data []byte) ([]int16, string) {
	t.Helper()
	return decodeFaadAs(t, data, 2)
}

// decodeFaadAs is decodeFaad for a stream of the given channel count.
// faad writes a mono stream as two identical channels; the result is
// mono then.
func decodeFaadAs(t testing.TB, data []byte, channels int) ([]int16, string) {
	t.Helper()
	pcm, errs := decodeFaadRaw(t, data)
	if channels == 1 {
		for i := range len(pcm) / 2 {
			if pcm[2*i] != pcm[2*i+1] {
				errs += fmt.Sprintf("\nfaad: mono stream decoded to different channels at sample %d", i)
				break
			}
			pcm[i] = pcm[2*i]
		}
		pcm = pcm[:len(pcm)/2]
	}
	return pcm, errs
}

func decodeFaadRaw(t testing.TB, data []byte) ([]int16, string) {
	t.Helper()
	dir := t.TempDir()
	in, out := filepath.Join(dir, "in.aac"), filepath.Join(dir, "out.raw")
	if err := os.WriteFile(in, data, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("faad", "-q", "-f", "2", "-b", "1", "-o", out, in)
	msg, err := cmd.CombinedOutput()
	var errs []string
	for _, l := range strings.Split(string(msg), "\n") {
		if strings.Contains(strings.ToLower(l), "error") {
			errs = append(errs, strings.TrimSpace(l))
		}
	}
	if err != nil {
		errs = append(errs, fmt.Sprintf("faad: %v", err))
	}
	b, rerr := os.ReadFile(out)
	if rerr != nil {
		errs = append(errs, rerr.Error())
	}
	return bytesToPCM(b), strings.Join(errs, "\n")
}

// alignLag finds the delay (in samples per channel, 0…4096) of decoded
// against the input by cross-correlation of the channel sums over the
// whole signal, computed with FFTs.
func alignLag(orig signal, dec []int16) int {
	n := len(orig.pcm) / 2
	m := len(dec) / 2
	size := 1
	for size < n+m {
		size *= 2
	}
	a := make([]complex128, size)
	b := make([]complex128, size)
	for i := range n {
		a[i] = complex(float64(orig.pcm[2*i])+float64(orig.pcm[2*i+1]), 0)
	}
	for i := range m {
		b[i] = complex(float64(dec[2*i])+float64(dec[2*i+1]), 0)
	}
	fftC(a, false)
	fftC(b, false)
	for i := range a {
		a[i] = b[i] * cmplx.Conj(a[i])
	}
	fftC(a, true)
	best, bestV := 0, math.Inf(-1)
	for lag := 0; lag <= 4096 && lag < size; lag++ {
		if v := real(a[lag]); v > bestV {
			best, bestV = lag, v
		}
	}
	return best
}

// fftC is an in-place radix-2 FFT (inverse unscaled); len(x) is a power of 2.
func fftC(x []complex128, inverse bool) {
	n := len(x)
	for i, j := 1, 0; i < n; i++ {
		bit := n >> 1
		for ; j&bit != 0; bit >>= 1 {
			j ^= bit
		}
		j |= bit
		if i < j {
			x[i], x[j] = x[j], x[i]
		}
	}
	sign := -1.0
	if inverse {
		sign = 1
	}
	for size := 2; size <= n; size *= 2 {
		w := cmplx.Exp(complex(0, sign*2*math.Pi/float64(size)))
		for start := 0; start < n; start += size {
			wk := complex(1, 0)
			for k := range size / 2 {
				u, v := x[start+k], x[start+k+size/2]*wk
				x[start+k], x[start+k+size/2] = u+v, u-v
				wk *= w
			}
		}
	}
}

// measure computes the qualityMeasures of dec (delayed by lag) against orig.
//
//   - SNR over the whole signal, both channels.
//   - Segmental SNR: per 1024-sample segment and channel with signal above
//     −60 dBFS, the SNR clamped to [−10, 60] dB, averaged.
//   - NMR under a simple masking model: 2048-point Hann FFTs every 1024
//     samples; signal and error energy per critical band (Zwicker's Bark
//     scale, 25 bands up to 20 kHz); the mask is the signal's band energy
//     spread by 25 dB/Bark downwards and 10 dB/Bark upwards, lowered by
//     (14.5 + z) dB (Johnston's tone-masking offset, the cautious one),
//     floored at the threshold of hearing (Terhardt, 0 dBFS = 96 dB SPL).
//     NMR mean is 10·log10 of the mean noise/mask ratio over bands and
//     frames with signal; p95 is the 95th percentile of the band NMRs.
//   - Pre-echo: for each onset (findOnsets), the error energy in the 5–20
//     ms before it relative to the signal energy in the 20 ms from it,
//     averaged over onsets in dB.
//   - Bandwidth: the highest frequency at which the decode's long-term
//     spectrum (in 100 Hz bins) is within 60 dB of its peak.
func measure(orig signal, dec []int16, lag int, onsets []int) (qualityMeasures, []bandFrame) {
	n := len(orig.pcm) / 2
	at := func(i, ch int) float64 {
		j := i + lag
		if j < 0 || 2*j+ch >= len(dec) {
			return 0
		}
		return float64(dec[2*j+ch])
	}
	var q qualityMeasures
	var sig, noise float64
	var segSum float64
	var segN int
	const seg = 1024
	for s := 0; s+seg <= n; s += seg {
		for ch := range 2 {
			var ss, nn float64
			for i := s; i < s+seg; i++ {
				x := float64(orig.pcm[2*i+ch])
				e := at(i, ch) - x
				ss += x * x
				nn += e * e
			}
			sig += ss
			noise += nn
			if ss/seg > 32768*32768*1e-6 {
				segSum += min(max(10*math.Log10(ss/max(nn, 1e-3)), -10), 60)
				segN++
			}
		}
	}
	q.snr = 10 * math.Log10(sig/max(noise, 1e-9))
	if segN > 0 {
		q.segSNR = segSum / float64(segN)
	}

	var pre float64
	for _, on := range onsets {
		w5, w20 := qRate*5/1000, qRate*20/1000
		var e, s float64
		for i := max(on-w20, 0); i < on-w5; i++ {
			for ch := range 2 {
				d := at(i, ch) - float64(orig.pcm[2*i+ch])
				e += d * d
			}
		}
		for i := on; i < min(on+w20, n); i++ {
			for ch := range 2 {
				x := float64(orig.pcm[2*i+ch])
				s += x * x
			}
		}
		pre += max(10*math.Log10(max(e, 1e-12)/s), -120)
	}
	if len(onsets) > 0 {
		q.preEcho = pre / float64(len(onsets))
	}

	var bfs []bandFrame
	q.nmr, q.nmrMax, q.bandwidth, bfs = nmrAndBandwidth(orig, at)
	return q, bfs
}

// bandFrame is one term of NMR mean: a critical band of one channel in
// the analysis frame starting at input sample start.
type bandFrame struct {
	start, ch, band int
	ratio           float64 // noise / mask
	signal          float64 // band energy relative to the mask's full scale, dB
}

// logTopBandFrames logs the n band-frames of largest NMR with their share
// of the mean, and the window sequence (of the first channel's ics_info)
// and size of the two access units whose output the analysis frame covers.
func logTopBandFrames(t testing.TB, row qualityRow, bfs []bandFrame, aus [][]byte, lag, n int) {
	t.Helper()
	var sum float64
	for _, b := range bfs {
		sum += b.ratio
	}
	sorted := append([]bandFrame(nil), bfs...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].ratio > sorted[j].ratio })
	var b strings.Builder
	fmt.Fprintf(&b, "%s %dk %s: NMR mean %.1f dB over %d band-frames; top %d:\n", row.material, row.rate/1000, row.encoder,
		10*math.Log10(sum/float64(len(bfs))), len(bfs), n)
	fmt.Fprintf(&b, "  frame  ms    ch band  NMR dB  sig dB share  AU seq/bits (two AUs)\n")
	var cum float64
	for _, bf := range sorted[:min(n, len(sorted))] {
		cum += bf.ratio / sum
		k := (bf.start + lag) / FrameSamples
		desc := ""
		for _, j := range []int{k, k + 1} {
			if j < len(aus) {
				desc += fmt.Sprintf(" %s/%d", auSequence(aus[j]), 8*len(aus[j]))
			}
		}
		fmt.Fprintf(&b, "  %5d %6.0f %d %4d %7.1f %7.1f %5.1f%% %s\n", bf.start/FrameSamples, float64(bf.start)*1000/qRate,
			bf.ch, bf.band, 10*math.Log10(bf.ratio), bf.signal, 100*bf.ratio/sum, desc)
	}
	fmt.Fprintf(&b, "  top %d hold %.1f%% of the mean\n  per band, mean NMR dB (share):", n, 100*cum)
	var perBand [25]float64
	var perBandN [25]int
	for _, bf := range bfs {
		perBand[bf.band] += bf.ratio
		perBandN[bf.band]++
	}
	for band, v := range perBand {
		if perBandN[band] > 0 {
			fmt.Fprintf(&b, " %d:%.1f(%.0f%%)", band, 10*math.Log10(v/float64(perBandN[band])), 100*v/sum)
		}
	}
	t.Logf("%s", b.String())
}

// auSequence reads the window sequence of the first ics_info of a CPE or
// SCE raw_data_block: L(ong), S(tart), 8 (short), E (stop); a pair without
// a common window is marked with "|".
func auSequence(au []byte) string {
	if len(au) < 3 {
		return "?"
	}
	bit := func(i int) int { return int(au[i/8]>>(7-i%8)) & 1 }
	pos := 3 + 4
	mark := ""
	if au[0]>>5 == idCPE {
		if bit(pos) == 0 {
			mark = "|"
			pos += 1 + 8 // common_window, global_gain
		} else {
			pos++
		}
	} else {
		pos += 8
	}
	seq := bit(pos+1)<<1 | bit(pos+2)
	return mark + string("LS8E"[seq])
}

const nmrFFT = 2048

func nmrAndBandwidth(orig signal, dec func(i, ch int) float64) (mean, p95, bw float64, bfs []bandFrame) {
	n := len(orig.pcm) / 2
	var hann [nmrFFT]float64
	for i := range hann {
		hann[i] = 0.5 - 0.5*math.Cos(2*math.Pi*(float64(i)+0.5)/nmrFFT)
	}
	binHz := float64(qRate) / nmrFFT
	// Critical band of each bin, and band constants.
	const bands = 25
	var bandOf [nmrFFT/2 + 1]int
	for k := range bandOf {
		z := bark(2 * float64(k) * binHz)
		bandOf[k] = min(int(z), bands-1)
	}
	var athBand [bands]float64
	for b := range athBand {
		athBand[b] = math.Inf(1)
	}
	// Energy of a full-scale sine in one bin of this FFT: (32768·N/4)².
	fullScale := math.Pow(32768*nmrFFT/4, 2)
	for k := 1; k < len(bandOf); k++ {
		f := max(float64(k)*binHz, 20) / 1000
		db := 3.64*math.Pow(f, -0.8) - 6.5*math.Exp(-0.6*(f-3.3)*(f-3.3)) + 1e-3*f*f*f*f
		athBand[bandOf[k]] = min(athBand[bandOf[k]], fullScale*math.Pow(10, (db-96)/10))
	}
	var ratios []float64
	var sumRatio float64
	longTerm := make([]float64, nmrFFT/2+1)
	x := make([]complex128, nmrFFT)
	y := make([]complex128, nmrFFT)
	for s := 0; s+nmrFFT <= n; s += nmrFFT / 2 {
		for ch := range 2 {
			for i := range nmrFFT {
				o := float64(orig.pcm[2*(s+i)+ch])
				d := dec(s+i, ch)
				x[i] = complex(o*hann[i], 0)
				y[i] = complex((d-o)*hann[i], 0)
			}
			// The decode's spectrum for the bandwidth is x + y.
			var xs, ys [bands]float64
			fftC(x, false)
			fftC(y, false)
			for k := 1; k <= nmrFFT/2; k++ {
				px := real(x[k])*real(x[k]) + imag(x[k])*imag(x[k])
				py := real(y[k])*real(y[k]) + imag(y[k])*imag(y[k])
				dd := x[k] + y[k]
				longTerm[k] += real(dd)*real(dd) + imag(dd)*imag(dd)
				xs[bandOf[k]] += px
				ys[bandOf[k]] += py
			}
			var mask [bands]float64
			for b := range bands {
				for j := range bands {
					dz := float64(b - j)
					var att float64
					if dz >= 0 { // masker j below band b: upward spread
						att = -10 * dz
					} else {
						att = 25 * dz
					}
					mask[b] += xs[j] * math.Pow(10, att/10)
				}
				mask[b] *= math.Pow(10, -(14.5+float64(b))/10)
				mask[b] = max(mask[b], athBand[b])
			}
			var total float64
			for b := range bands {
				total += xs[b]
			}
			if total < fullScale*1e-7 {
				continue
			}
			for b := range bands {
				r := ys[b] / mask[b]
				sumRatio += r
				ratios = append(ratios, r)
				bfs = append(bfs, bandFrame{s, ch, b, r, 10 * math.Log10(max(xs[b], 1e-12)/fullScale)})
			}
		}
	}
	if len(ratios) == 0 {
		return math.NaN(), math.NaN(), 0, nil
	}
	sort.Float64s(ratios)
	mean = 10 * math.Log10(max(sumRatio/float64(len(ratios)), 1e-12))
	p95 = 10 * math.Log10(max(ratios[len(ratios)*95/100], 1e-12))

	const group = 100.0
	groups := make([]float64, int(float64(qRate)/2/group)+1)
	for k, v := range longTerm {
		groups[int(float64(k)*binHz/group)] += v
	}
	peak := 0.0
	for _, v := range groups {
		peak = max(peak, v)
	}
	for g := len(groups) - 1; g >= 0; g-- {
		if groups[g] > peak*1e-6 {
			bw = float64(g+1) * group
			break
		}
	}
	return mean, p95, bw, bfs
}

// findOnsets returns the sample positions of attacks in s: 1 ms blocks
// (channels summed in energy) whose energy is 10 dB above the mean of the
// preceding 20 ms and above −50 dBFS, at least 100 ms apart. The 5–20 ms
// window before each is where pre-echo is measured.
func findOnsets(s signal) []int {
	const blk = qRate / 1000
	n := len(s.pcm) / 2 / blk
	e := make([]float64, n)
	for b := range n {
		for i := b * blk; i < (b+1)*blk; i++ {
			l, r := float64(s.pcm[2*i]), float64(s.pcm[2*i+1])
			e[b] += l*l + r*r
		}
	}
	floor := 2 * blk * 32768 * 32768 * 1e-5
	var out []int
	last := -1000
	for b := 20; b < n; b++ {
		var prev float64
		for j := b - 20; j < b; j++ {
			prev += e[j]
		}
		prev /= 20
		if e[b] > floor && e[b] > 10*prev && b-last >= 100 {
			out = append(out, b*blk)
			last = b
		}
	}
	return out
}

// Materials.

func qualityMaterials(t testing.TB, seconds float64) []material {
	t.Helper()
	n := int(seconds * qRate)
	mats := []material{
		{"clicks", "synthesized: 1-sample clicks, alternating polarity, every 250 ms, over silence", clicks(n)},
		{"transient", "synthesized: 1 s silence, then a castanet-like burst (white noise, 0.3 ms rise, 30 ms decay), repeated every 1.5 s", transient(n)},
		{"glockenspiel", "synthesized: struck bars (inharmonic partials 1, 2.76, 5.40, 8.93 × f0, 1 ms attack, 0.3–0.8 s decays), a note every 300 ms", glockenspiel(n)},
		{"drums", "synthesized: a drum loop at 120 bpm (pitch-dropping sine kick, noise+tone snare, high-passed noise hi-hats)", drums(n)},
		{"sweep", "synthesized: log sine sweep 20 Hz–20 kHz at −10 dBFS, both channels", sweep(qRate, 2, seconds, 20, 20000)},
		{"pink", "synthesized: pink Gaussian noise −15 dBFS RMS, independent channels", noise(qRate, 2, seconds, -15, true, 2)},
		{"panned", "synthesized: glockenspiel hard left, drums hard right", panned(n)},
		{"dual-mono", "synthesized: the drum loop plus glockenspiel, identical in both channels (a mono microphone)", dualMono(n)},
	}
	if m, err := fileMaterial("speech-alsa", "recorded speech: alsa-utils' /usr/share/sounds/alsa/{Front_Left,Front_Center,Front_Right,Rear_Left}.wav, mono (dual-mono stereo)",
		"/usr/share/sounds/alsa/Front_Left.wav", "/usr/share/sounds/alsa/Front_Center.wav",
		"/usr/share/sounds/alsa/Front_Right.wav", "/usr/share/sounds/alsa/Rear_Left.wav"); err == nil {
		mats = append(mats, m)
	} else {
		t.Logf("speech-alsa left out: %v", err)
	}
	sfx := "/usr/share/sounds/freedesktop/stereo/"
	if m, err := fileMaterial("effects", "recorded/produced sound effects from sound-theme-freedesktop: camera-shutter, trash-empty, bell, complete, message, dialog-information (.oga, stereo, resampled to 48 kHz)",
		sfx+"camera-shutter.oga", sfx+"trash-empty.oga", sfx+"bell.oga", sfx+"complete.oga", sfx+"message.oga", sfx+"dialog-information.oga"); err == nil {
		mats = append(mats, m)
	} else {
		t.Logf("effects left out: %v", err)
	}
	if m, err := espeakMaterial(t); err == nil {
		mats = append(mats, m)
	} else {
		t.Logf("speech-espeak left out: %v", err)
	}
	return mats
}

// fileMaterial decodes the files with ffmpeg to 48 kHz stereo and joins
// them with 100 ms of silence between.
func fileMaterial(name, source string, files ...string) (material, error) {
	var pcm []int16
	for _, f := range files {
		out, err := exec.Command("ffmpeg", "-nostdin", "-v", "error", "-i", f, "-f", "s16le", "-ac", "2", "-ar", "48000", "-").Output()
		if err != nil {
			return material{}, fmt.Errorf("decoding %s: %w", f, err)
		}
		pcm = append(pcm, bytesToPCM(out)...)
		pcm = append(pcm, make([]int16, 2*qRate/10)...)
	}
	return material{name, source, signal{qRate, 2, pcm}}, nil
}

func espeakMaterial(t testing.TB) (material, error) {
	path := filepath.Join(t.TempDir(), "speech.wav")
	text := "Good evening, and welcome to the broadcast. Tonight we test how speech survives the encoder, " +
		"with sharp consonants like t, k, p and s."
	if out, err := exec.Command("espeak-ng", "-w", path, text).CombinedOutput(); err != nil {
		return material{}, fmt.Errorf("espeak-ng: %w: %s", err, out)
	}
	return fileMaterial("speech-espeak", "synthesized speech: espeak-ng (22.05 kHz mono, resampled, dual-mono stereo), a 9 s sentence", path)
}

func clip16(v float64) int16 { return int16(max(min(math.Round(v), 32767), -32768)) }

func clicks(n int) signal {
	pcm := make([]int16, 2*n)
	for i, k := qRate/8, 0; i < n; i, k = i+qRate/4, k+1 {
		v := int16(24000)
		if k%2 == 1 {
			v = -24000
		}
		pcm[2*i], pcm[2*i+1] = v, v
	}
	return signal{qRate, 2, pcm}
}

func transient(n int) signal {
	rng := rand.New(rand.NewPCG(9, 9))
	pcm := make([]int16, 2*n)
	for start := qRate + 317; start < n; start += 3 * qRate / 2 {
		for i := 0; i < qRate/10 && start+i < n; i++ {
			t := float64(i) / qRate
			env := math.Min(t/0.0003, 1) * math.Exp(-t/0.030)
			for ch := range 2 {
				pcm[2*(start+i)+ch] = clip16(12000 * env * rng.NormFloat64())
			}
		}
	}
	return signal{qRate, 2, pcm}
}

// glockMono is a sequence of struck bars, one every 300 ms, as float.
func glockMono(n int) []float64 {
	out := make([]float64, n)
	notes := []float64{784, 988, 1175, 1568, 1319, 1047, 880, 1568}
	partials := []struct{ ratio, amp, decay float64 }{{1, 1, 0.8}, {2.76, 0.5, 0.4}, {5.40, 0.25, 0.2}, {8.93, 0.12, 0.1}}
	for k, start := 0, qRate/10; start < n; k, start = k+1, start+qRate*3/10 {
		f0 := notes[k%len(notes)]
		for i := 0; i < 2*qRate && start+i < n; i++ {
			t := float64(i) / qRate
			att := math.Min(t/0.001, 1)
			v := 0.0
			for _, p := range partials {
				if f0*p.ratio < 20000 {
					v += p.amp * math.Exp(-t/p.decay) * math.Sin(2*math.Pi*f0*p.ratio*t)
				}
			}
			out[start+i] += 5000 * att * v
		}
	}
	return out
}

func drumsMono(n int) []float64 {
	rng := rand.New(rand.NewPCG(4, 4))
	out := make([]float64, n)
	beat := qRate / 2 // 120 bpm
	var hp float64    // one-pole high-pass state for the hi-hat
	var prev float64
	for b, start := 0, qRate/20; start < n; b, start = b+1, start+beat/2 {
		for i := 0; i < qRate/2 && start+i < n; i++ {
			t := float64(i) / qRate
			v := 0.0
			if b%4 == 0 { // kick on beats 1 and 3
				f := 50 + 100*math.Exp(-t/0.03)
				v += 14000 * math.Exp(-t/0.15) * math.Sin(2*math.Pi*f*t)
			}
			if b%4 == 2 { // snare on 2 and 4
				v += 7000*math.Exp(-t/0.08)*rng.NormFloat64() + 5000*math.Exp(-t/0.05)*math.Sin(2*math.Pi*200*t)
			}
			// hi-hat every eighth
			w := rng.NormFloat64()
			hp = 0.6 * (hp + w - prev)
			prev = w
			v += 3000 * math.Exp(-t/0.02) * hp
			out[start+i] += v * math.Min(t/0.0005, 1)
		}
	}
	return out
}

func drums(n int) signal {
	d := drumsMono(n)
	pcm := make([]int16, 2*n)
	for i, v := range d {
		pcm[2*i], pcm[2*i+1] = clip16(v), clip16(v)
	}
	return signal{qRate, 2, pcm}
}

func glockenspiel(n int) signal {
	g := glockMono(n)
	pcm := make([]int16, 2*n)
	for i, v := range g {
		pcm[2*i], pcm[2*i+1] = clip16(v), clip16(v)
	}
	return signal{qRate, 2, pcm}
}

func panned(n int) signal {
	g, d := glockMono(n), drumsMono(n)
	pcm := make([]int16, 2*n)
	for i := range n {
		pcm[2*i], pcm[2*i+1] = clip16(g[i]), clip16(d[i])
	}
	return signal{qRate, 2, pcm}
}

func dualMono(n int) signal {
	g, d := glockMono(n), drumsMono(n)
	pcm := make([]int16, 2*n)
	for i := range n {
		v := clip16(0.7*g[i] + 0.7*d[i])
		pcm[2*i], pcm[2*i+1] = v, v
	}
	return signal{qRate, 2, pcm}
}
