package aacenc

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func requireFFmpeg(t testing.TB) {
	t.Helper()
	for _, bin := range []string{"ffmpeg", "ffprobe"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("%s not installed (Debian package ffmpeg; scripts/deps.sh)", bin)
		}
	}
}

// tone returns n stereo samples of a 1 kHz sine starting at sample offset.
func tone(offset, n int) []int16 {
	pcm := make([]int16, n*Channels)
	for i := range n {
		v := int16(8000 * math.Sin(2*math.Pi*1000*float64(offset+i)/SampleRate))
		pcm[2*i], pcm[2*i+1] = v, v
	}
	return pcm
}

// collector records frames as ADTS (so ffmpeg can read them back) and
// their PTS and arrival times.
type collector struct {
	mu     sync.Mutex
	adts   []byte
	pts    []int64
	at     []time.Time
	frames chan struct{}
}

func newCollector() *collector { return &collector{frames: make(chan struct{}, 10000)} }

func (c *collector) onFrame(f Frame) {
	pkts := mpeg4audio.ADTSPackets{{Type: mpeg4audio.ObjectTypeAACLC, SampleRate: SampleRate, ChannelConfig: 2, AU: f.Data}}
	b, err := pkts.Marshal()
	if err != nil {
		panic(err)
	}
	c.mu.Lock()
	c.adts = append(c.adts, b...)
	c.pts = append(c.pts, f.PTS)
	c.at = append(c.at, time.Now())
	c.mu.Unlock()
	c.frames <- struct{}{}
}

func (c *collector) snapshot() ([]byte, []int64, []time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.adts), slices.Clone(c.pts), slices.Clone(c.at)
}

type probe struct {
	CodecName  string `json:"codec_name"`
	Profile    string `json:"profile"`
	SampleRate string `json:"sample_rate"`
	Channels   int    `json:"channels"`
	Frames     string `json:"nb_read_frames"`
}

func ffprobe(t *testing.T, path string) probe {
	t.Helper()
	out, err := exec.Command("ffprobe", "-v", "error", "-count_frames", "-show_streams", "-of", "json", path).Output()
	if err != nil {
		t.Fatalf("ffprobe: %v", err)
	}
	var res struct{ Streams []probe }
	if err := json.Unmarshal(out, &res); err != nil || len(res.Streams) != 1 {
		t.Fatalf("ffprobe %s: %v", out, err)
	}
	return res.Streams[0]
}

// decodePCM decodes ADTS with ffmpeg to interleaved s16le stereo.
func decodePCM(t *testing.T, adts []byte) []int16 {
	t.Helper()
	cmd := exec.Command("ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "aac", "-i", "pipe:0", "-f", "s16le", "-ac", "2", "pipe:1")
	cmd.Stdin = bytes.NewReader(adts)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("ffmpeg decode: %v", err)
	}
	pcm := make([]int16, len(out)/2)
	for i := range pcm {
		pcm[i] = int16(binary.LittleEndian.Uint16(out[2*i:]))
	}
	return pcm
}

func TestEncodeTone(t *testing.T) {
	requireFFmpeg(t)
	c := newCollector()
	// Written faster than real time: a queue for all of it.
	e, err := New(t.Context(), Config{OnFrame: c.onFrame, BufferSamples: 6 * SampleRate})
	if err != nil {
		t.Fatal(err)
	}
	// Half a second of silence, then 4.5 s of tone: where the tone starts
	// in the decoded output shows whether PTS is where the audio belongs.
	const total = 5 * SampleRate
	const onset = SampleRate / 2
	for off := 0; off < total; off += 960 {
		pcm := tone(off, 960)
		if off < onset {
			clear(pcm)
		}
		if err := e.Write(pcm); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if err := e.Write(make([]int16, 2)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Write after Close: %v", err)
	}
	adts, pts, _ := c.snapshot()
	// 5 s is 234.4 frames; the last one is padded.
	if n := len(pts); n < total/FrameSamples || n > total/FrameSamples+3 {
		t.Fatalf("%d frames for %d samples", n, total)
	}
	for i, p := range pts {
		if p != int64(i)*FrameSamples {
			t.Fatalf("frame %d PTS %d, want %d", i, p, i*FrameSamples)
		}
	}
	if asc := e.AudioSpecificConfig(); !bytes.Equal(asc, []byte{0x11, 0x90}) {
		t.Fatalf("AudioSpecificConfig %x, want 1190 (AAC LC 48 kHz stereo)", asc)
	}

	path := filepath.Join(t.TempDir(), "out.aac")
	if err := os.WriteFile(path, adts, 0o644); err != nil {
		t.Fatal(err)
	}
	p := ffprobe(t, path)
	if p.CodecName != "aac" || p.Profile != "LC" || p.SampleRate != "48000" || p.Channels != 2 {
		t.Fatalf("ffprobe: %+v", p)
	}
	if n, _ := strconv.Atoi(p.Frames); n != len(pts) {
		t.Fatalf("ffprobe read %d frames, %d delivered", n, len(pts))
	}
	pcm := decodePCM(t, adts)
	dur := float64(len(pcm)/2) / SampleRate
	if dur < 5 || dur > 5.07 {
		t.Fatalf("decoded duration %.3f s, want 5 s plus priming", dur)
	}
	first := -1
	for i := 0; i < len(pcm); i += 2 {
		if pcm[i] > 2000 || pcm[i] < -2000 {
			first = i / 2
			break
		}
	}
	t.Logf("frames %d, decoded samples %d, tone onset at %d", len(pts), len(pcm)/2, first)
	// The decoded audio lines up with the input: PTS k*1024 is where the
	// frame's audio belongs (within 1 ms).
	if delay := first - onset; delay < -48 || delay > 48 {
		t.Fatalf("tone starts at decoded sample %d: %d samples off the input", first, delay)
	}
	crossings := 0
	seg := pcm[2*SampleRate*2 : 3*SampleRate*2]
	for i := 2; i < len(seg); i += 2 {
		if seg[i-2] < 0 && seg[i] >= 0 {
			crossings++
		}
	}
	if crossings < 995 || crossings > 1005 {
		t.Fatalf("decoded tone has %d rising zero crossings per second, want 1000", crossings)
	}
}

func TestMissingFFmpeg(t *testing.T) {
	_, err := New(t.Context(), Config{FFmpegPath: "/nonexistent/ffmpeg"})
	if !errors.Is(err, ErrFFmpegMissing) || !strings.Contains(err.Error(), "Debian package ffmpeg") {
		t.Fatalf("err = %v", err)
	}
	t.Setenv("PATH", t.TempDir())
	if _, err := New(t.Context(), Config{}); !errors.Is(err, ErrFFmpegMissing) {
		t.Fatalf("empty PATH: err = %v", err)
	}
}

// children lists processes whose parent is this test process (zombies
// included: they still have their parent).
func children(t *testing.T) []string {
	t.Helper()
	dirs, err := filepath.Glob("/proc/[0-9]*/stat")
	if err != nil {
		t.Fatal(err)
	}
	self := os.Getpid()
	var out []string
	for _, d := range dirs {
		b, err := os.ReadFile(d)
		if err != nil {
			continue
		}
		s := string(b)
		end := strings.LastIndexByte(s, ')')
		if end < 0 {
			continue
		}
		f := strings.Fields(s[end+2:])
		if len(f) > 1 && f[1] == strconv.Itoa(self) {
			out = append(out, s[:end+3])
		}
	}
	return out
}

// pace writes 20 ms chunks in real time for d, starting at sample offset,
// recording when each chunk went in.
func pace(t testing.TB, e *Encoder, offset int, d time.Duration, written map[int]time.Time) int {
	start := time.Now()
	n := offset
	for i := 0; time.Since(start) < d; i++ {
		if err := e.Write(tone(n, 960)); err != nil {
			t.Fatal(err)
		}
		if written != nil {
			written[n+960] = time.Now()
		}
		n += 960
		time.Sleep(time.Until(start.Add(time.Duration(i+1) * 20 * time.Millisecond)))
	}
	return n
}

func TestRestartAfterKill(t *testing.T) {
	requireFFmpeg(t)
	c := newCollector()
	restarted := make(chan error, 4)
	e, err := New(t.Context(), Config{OnFrame: c.onFrame, OnRestart: func(err error) { restarted <- err }})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	n := pace(t, e, 0, time.Second, nil)
	pid := e.PID()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-restarted:
		t.Logf("restart cause: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("no restart after kill -9")
	}
	n = pace(t, e, n, time.Second, nil)
	if e.PID() == pid || e.PID() == 0 {
		t.Fatalf("pid %d after restart (was %d)", e.PID(), pid)
	}
	e.Close()
	_, pts, _ := c.snapshot()
	jumps := 0
	for i := 1; i < len(pts); i++ {
		if pts[i] <= pts[i-1] {
			t.Fatalf("PTS went back: %d after %d", pts[i], pts[i-1])
		}
		if pts[i]-pts[i-1] != FrameSamples {
			jumps++
		}
	}
	last := pts[len(pts)-1]
	// Every sample is accounted for: the last frame covers the end of the
	// input (plus priming), whatever the dead process swallowed.
	if last < int64(n)-3*FrameSamples || last > int64(n)+2*FrameSamples {
		t.Fatalf("last PTS %d for %d samples written", last, n)
	}
	if jumps > 1 {
		t.Fatalf("%d PTS jumps, want at most the one at the restart", jumps)
	}
	if e.Restarts() != 1 {
		t.Fatalf("%d restarts", e.Restarts())
	}
}

func TestCloseLeavesNoProcess(t *testing.T) {
	requireFFmpeg(t)
	e, err := New(t.Context(), Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Write(tone(0, 4800)); err != nil {
		t.Fatal(err)
	}
	if len(children(t)) == 0 {
		t.Fatal("no ffmpeg child while running")
	}
	e.Close()
	if c := children(t); len(c) != 0 {
		t.Fatalf("children left after Close: %v", c)
	}
	// Cancelling the context kills the process too; Close still waits.
	ctx, cancel := context.WithCancel(t.Context())
	e, err = New(ctx, Config{})
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	e.Close()
	if c := children(t); len(c) != 0 {
		t.Fatalf("children left after cancel: %v", c)
	}
}

// TestLatency feeds PCM in real time and measures how long after the last
// input sample of a frame the frame comes out.
func TestLatency(t *testing.T) {
	requireFFmpeg(t)
	if testing.Short() {
		t.Skip("real-time test")
	}
	c := newCollector()
	e, err := New(t.Context(), Config{OnFrame: c.onFrame})
	if err != nil {
		t.Fatal(err)
	}
	written := map[int]time.Time{}
	pace(t, e, 0, 3*time.Second, written)
	time.Sleep(200 * time.Millisecond)
	_, pts, at := c.snapshot()
	e.Close()
	var lat []time.Duration
	for i, p := range pts {
		// Frame with PTS p holds input up to sample p+1024; find the
		// chunk that completed that sample.
		end := int(p) + FrameSamples
		end += (960 - end%960) % 960
		if w, ok := written[end]; ok && end > 0 {
			lat = append(lat, at[i].Sub(w))
		}
	}
	if len(lat) < 100 {
		t.Fatalf("only %d frames measured", len(lat))
	}
	slices.Sort(lat)
	p50, p99 := lat[len(lat)/2], lat[len(lat)*99/100]
	t.Logf("PCM-in to frame-out latency over %d frames: p50 %v, p99 %v, max %v", len(lat), p50, p99, lat[len(lat)-1])
	if p50 > 100*time.Millisecond {
		t.Fatalf("median latency %v", p50)
	}
}

func TestWriteNoAllocs(t *testing.T) {
	requireFFmpeg(t)
	e, err := New(t.Context(), Config{OnFrame: func(Frame) {}})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	pcm := tone(0, 960)
	if a := testing.AllocsPerRun(200, func() { _ = e.Write(pcm) }); a != 0 {
		t.Fatalf("%.1f allocations per Write", a)
	}
	if err := e.Write(pcm[:3]); err == nil {
		t.Fatal("odd sample count accepted")
	}
}

// procCPU returns user+system CPU of a process from /proc/<pid>/stat.
func procCPU(tb testing.TB, pid int) time.Duration {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		tb.Fatal(err)
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / 100 // USER_HZ
}

func selfCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkCPUPerStream runs one encoder for 10 s of real-time-paced PCM
// and reports the CPU it costs as a percentage of one core: the ffmpeg
// child (from /proc) and this process (getrusage; includes the pacing
// loop and the tone generator, so it is an upper bound for the Go side).
func BenchmarkCPUPerStream(b *testing.B) {
	requireFFmpeg(b)
	for b.Loop() {
		frames := 0
		e, err := New(b.Context(), Config{OnFrame: func(Frame) { frames++ }})
		if err != nil {
			b.Fatal(err)
		}
		pcm := tone(0, 960)
		pid := e.PID()
		c0, g0, t0 := procCPU(b, pid), selfCPU(), time.Now()
		start := time.Now()
		for i := 0; i < 500; i++ {
			_ = e.Write(pcm)
			time.Sleep(time.Until(start.Add(time.Duration(i+1) * 20 * time.Millisecond)))
		}
		c1, g1, wall := procCPU(b, pid), selfCPU(), time.Since(t0)
		e.Close()
		b.ReportMetric(float64(c1-c0)/float64(wall)*100, "ffmpeg_%core")
		b.ReportMetric(float64(g1-g0)/float64(wall)*100, "go_%core")
		b.ReportMetric(float64(frames), "frames")
	}
}
