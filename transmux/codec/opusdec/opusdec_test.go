package opusdec

import (
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/pion/webrtc/v3/pkg/media/oggreader"

	"github.com/castbridge/castbridge/transmux/format/mediafile"
)

var testFile = mediafile.TestdataPath("audio.ogg")

func readPackets(t testing.TB) [][]byte {
	t.Helper()
	pkts, err := mediafile.ReadOpusFile(testFile)
	if err != nil {
		t.Fatal(err)
	}
	out := make([][]byte, len(pkts))
	for i, p := range pkts {
		out[i] = p.Data
	}
	return out
}

// goertzel returns the power of frequency f in one channel of interleaved
// stereo PCM.
func goertzel(pcm []int16, channel int, f float64) float64 {
	k := 2 * math.Cos(2*math.Pi*f/SampleRate)
	var s1, s2 float64
	for i := channel; i < len(pcm); i += Channels {
		s0 := float64(pcm[i]) + k*s1 - s2
		s2, s1 = s1, s0
	}
	return s1*s1 + s2*s2 - k*s1*s2
}

// zeroCrossFreq estimates a tone's frequency from its rising zero crossings.
func zeroCrossFreq(pcm []int16, channel int) float64 {
	n, crossings := 0, 0
	prev := int16(0)
	for i := channel; i < len(pcm); i += Channels {
		if prev < 0 && pcm[i] >= 0 {
			crossings++
		}
		prev = pcm[i]
		n++
	}
	return float64(crossings) * SampleRate / float64(n)
}

func checkTones(t *testing.T, pcm []int16) {
	t.Helper()
	// One second from the middle, away from the encoder's start-up.
	mid := pcm[2*SampleRate*Channels : 3*SampleRate*Channels]
	for ch, want := range []float64{440, 660} {
		if got := zeroCrossFreq(mid, ch); math.Abs(got-want) > 2 {
			t.Errorf("channel %d: tone at %.1f Hz, want %.0f", ch, got, want)
		}
		other := 1100 - want
		if p, q := goertzel(mid, ch, want), goertzel(mid, ch, other); p < 1000*q {
			t.Errorf("channel %d: %v Hz power %.3g not dominant over %v Hz %.3g", ch, want, p, other, q)
		}
	}
}

func TestDecodeFile(t *testing.T) {
	pkts := readPackets(t)
	d, err := New()
	if err != nil {
		t.Fatal(err)
	}
	var pcm []int16
	for i, p := range pkts {
		before := len(pcm)
		if pcm, err = d.Decode(p, pcm); err != nil {
			t.Fatalf("packet %d: %v", i, err)
		}
		if got := (len(pcm) - before) / Channels; got != PacketSamples(p) {
			t.Fatalf("packet %d: %d samples, TOC says %d", i, got, PacketSamples(p))
		}
	}
	// The Ogg stream says which decoded samples are the 5 s of content:
	// pre-skip at the start (the encoder's look-ahead) and the final
	// granule position, which trims the padding of the last packet.
	preSkip, lastGranule := oggTrim(t)
	if got, want := len(pcm)/Channels, len(pkts)*960; got != want {
		t.Fatalf("decoded %d samples per channel, want %d", got, want)
	}
	content := min(int64(len(pcm)/Channels), int64(lastGranule)) - int64(preSkip)
	if content != 5*SampleRate {
		t.Fatalf("decoded %d samples of content (pre-skip %d, last granule %d), want %d",
			content, preSkip, lastGranule, 5*SampleRate)
	}
	checkTones(t, pcm[preSkip*Channels:])
}

func oggTrim(t *testing.T) (preSkip int, lastGranule uint64) {
	t.Helper()
	f, err := os.Open(testFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, h, err := oggreader.NewWith(f)
	if err != nil {
		t.Fatal(err)
	}
	for {
		_, ph, err := r.ParseNextPage()
		if err != nil {
			break
		}
		lastGranule = ph.GranulePosition
	}
	return int(h.PreSkip), lastGranule
}

// streamDuration pushes packets (nil = lost) through a Stream with RTP times
// starting at base and returns the PCM.
func streamPCM(t *testing.T, pkts [][]byte, base uint32) []int16 {
	t.Helper()
	s, err := NewStream()
	if err != nil {
		t.Fatal(err)
	}
	var pcm []int16
	ts := int64(base)
	for _, p := range pkts {
		n := 960
		if p != nil {
			n = PacketSamples(p)
			if pcm, _, err = s.Push(ts, p, pcm); err != nil {
				t.Fatal(err)
			}
		}
		ts += int64(n)
	}
	return pcm
}

func TestLossKeepsDuration(t *testing.T) {
	pkts := readPackets(t)
	rng := rand.New(rand.NewPCG(1, 2))
	lost := 0
	for i := 1; i < len(pkts)-1; i++ { // a lost last packet is undetectable
		if rng.Float64() < 0.05 {
			pkts[i] = nil
			lost++
		}
	}
	if lost < 5 {
		t.Fatalf("only %d packets lost", lost)
	}
	pcm := streamPCM(t, pkts, math.MaxUint32-10000)
	if got, want := len(pcm)/Channels, len(pkts)*960; got != want {
		t.Fatalf("%d lost: %d samples per channel, want %d", lost, got, want)
	}
}

func TestDTXKeepsDuration(t *testing.T) {
	pkts := readPackets(t)
	// A second of DTX: nothing, then a TOC-only packet, then nothing.
	toc := pkts[120][:1]
	for i := 100; i < 150; i++ {
		pkts[i] = nil
	}
	pkts[120] = toc
	pcm := streamPCM(t, pkts, 12345)
	if got, want := len(pcm)/Channels, len(pkts)*960; got != want {
		t.Fatalf("%d samples per channel, want %d", got, want)
	}
	// Concealment fades out: the gap ends in silence.
	for i := 145 * 960 * Channels; i < 150*960*Channels; i++ {
		if pcm[i] != 0 {
			t.Fatalf("sample %d in the DTX gap is %d, want silence", i/Channels, pcm[i])
		}
	}
	// The tones are intact after the gap.
	checkTones(t, pcm[SampleRate*12/10*Channels:])
}

func TestConcealFades(t *testing.T) {
	d, _ := New()
	pkts := readPackets(t)
	var pcm []int16
	for _, p := range pkts[:10] {
		pcm, _ = d.Decode(p, pcm)
	}
	n := len(pcm)
	pcm = d.Conceal(960, pcm)
	c := pcm[n:]
	if len(c) != 960*Channels {
		t.Fatalf("conceal gave %d values", len(c))
	}
	var early, late int
	for i := range fadeSamples / 4 * Channels {
		early = max(early, abs(int(c[i])))
	}
	for i := fadeSamples * Channels; i < len(c); i++ {
		late = max(late, abs(int(c[i])))
	}
	if early < 1000 || late != 0 {
		t.Fatalf("fade: early peak %d, after the fade %d", early, late)
	}
	if got := d.Conceal(0, nil); len(got) != 0 {
		t.Fatal("Conceal(0) appended samples")
	}
}

func abs(x int) int { return max(x, -x) }

func TestBadInput(t *testing.T) {
	d, _ := New()
	if _, err := d.Decode(nil, nil); err == nil {
		t.Fatal("empty payload decoded")
	}
	for _, p := range [][]byte{{0xff}, {0x03}, {0xfc, 0xff, 0xff, 0xff}, {0x78, 0xff, 0xfe, 0x00, 0x13}} {
		out, err := d.Decode(p, make([]int16, 4))
		if err == nil && len(out) != 4+PacketSamples(p)*Channels {
			t.Fatalf("%x: %d values without error", p, len(out))
		}
		if err != nil && len(out) != 4 {
			t.Fatalf("%x: dst changed on error", p)
		}
	}
	s, _ := NewStream()
	out, _, err := s.Push(0, []byte{0x78, 0xff, 0xfe, 0x00, 0x13, 0x55}, nil)
	if err == nil {
		t.Log("garbage decoded without error")
	}
	if len(out) != 960*Channels {
		t.Fatalf("stream after a bad packet: %d values, want %d", len(out), 960*Channels)
	}
}

func TestMonoUpmix(t *testing.T) {
	ffmpeg, err := exec.LookPath("ffmpeg")
	if err != nil {
		t.Skip("ffmpeg not installed (Debian package ffmpeg)")
	}
	path := filepath.Join(t.TempDir(), "mono.ogg")
	out, err := exec.Command(ffmpeg, "-hide_banner", "-loglevel", "error", "-f", "lavfi",
		"-i", "sine=frequency=1000:sample_rate=48000:duration=1", "-ac", "1",
		"-c:a", "libopus", "-b:a", "32k", path).CombinedOutput()
	if err != nil {
		t.Skipf("ffmpeg cannot encode Opus here: %v: %s", err, out)
	}
	pkts, err := mediafile.ReadOpusFile(path)
	if err != nil {
		t.Fatal(err)
	}
	d, _ := New()
	var pcm []int16
	for _, p := range pkts {
		if pcm, err = d.Decode(p.Data, pcm); err != nil {
			t.Fatal(err)
		}
	}
	if len(pcm) < SampleRate*Channels {
		t.Fatalf("%d values for 1 s", len(pcm))
	}
	for i := 0; i < len(pcm); i += 2 {
		if pcm[i] != pcm[i+1] {
			t.Fatalf("mono upmix: sample %d is %d/%d", i/2, pcm[i], pcm[i+1])
		}
	}
	mid := pcm[SampleRate/4*Channels : SampleRate*3/4*Channels]
	if f := zeroCrossFreq(mid, 0); math.Abs(f-1000) > 4 {
		t.Fatalf("mono tone at %.1f Hz, want 1000", f)
	}
}

func TestFiller(t *testing.T) {
	var f Filler
	steps := []struct {
		ts      int64
		n       int
		want    Placement
		comment string
	}{
		{1000, 960, Placement{}, "first"},
		{1960, 960, Placement{}, "next"},
		{3880, 960, Placement{Gap: 960}, "one lost"},
		{3880, 960, Placement{Drop: true}, "duplicate"},
		{2920, 960, Placement{Drop: true}, "late after its gap was filled"},
		{4840 + 19200, 960, Placement{Gap: 19200}, "DTX 400 ms"},
		{4840 + 19200 + 960 + 20*SampleRate, 960, Placement{Jump: true}, "20 s jump"},
		{4840 + 19200 + 960 + 20*SampleRate + 960, 960, Placement{}, "after the jump"},
	}
	for _, s := range steps {
		if got := f.Place(s.ts, s.n); got != s.want {
			t.Fatalf("%s: %+v, want %+v", s.comment, got, s.want)
		}
	}
	f.Reset()
	if _, ok := f.Next(); ok {
		t.Fatal("Reset kept the timeline")
	}
}

func TestDecodeNoAllocs(t *testing.T) {
	pkts := readPackets(t)
	s, _ := NewStream()
	dst := make([]int16, 0, 2*MaxPacketSamples*Channels)
	ts := int64(0)
	i := 0
	allocs := testing.AllocsPerRun(500, func() {
		p := pkts[i%len(pkts)]
		if i%20 == 7 {
			ts += 960 // a loss now and then: concealment too
		}
		dst, _, _ = s.Push(ts, p, dst[:0])
		ts += 960
		i++
	})
	if allocs != 0 {
		t.Fatalf("%.1f allocations per packet", allocs)
	}
}

func BenchmarkDecode(b *testing.B) {
	pkts := readPackets(b)
	d, _ := New()
	dst := make([]int16, 0, MaxPacketSamples*Channels)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		dst, _ = d.Decode(pkts[i%len(pkts)], dst[:0])
		i++
	}
	// One packet is 20 ms of audio: report the share of a core one stream uses.
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/20e6*100, "%core/stream")
}
