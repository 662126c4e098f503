// Package aacenc encodes 48 kHz stereo PCM to AAC-LC with FFmpeg's native
// aac encoder running as an owned child process.
//
// RTMP ingests (YouTube, Twitch, Facebook) expect AAC and no Go AAC encoder
// of usable quality exists, so PCM goes to `ffmpeg` on stdin and ADTS comes
// back on stdout. The Encoder owns that process: it restarts it when it dies
// (timestamps keep counting forward), and Close ends it and waits for it,
// so no process or goroutine outlives the Encoder.
//
// Timestamps come from the count of samples fed, never from the process:
// frame k of the stream starts at sample k*1024, and after a restart the
// count continues from the samples handed to the new process. Decoded by
// FFmpeg, the audio of a frame lines up with the input at its PTS to within
// a few samples (TestEncodeTone measures it), so PTS can go straight onto
// the A/V timeline.
package aacenc

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os/exec"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"
)

// Input format the encoder expects, and AAC's frame length.
const (
	SampleRate   = 48000
	Channels     = 2
	FrameSamples = 1024

	// DefaultBitrate is used when Config.Bitrate is 0.
	DefaultBitrate = 128000
	// DefaultBuffer is the PCM queue between Write and the process
	// (per channel samples, 2 s): far more than real-time encoding needs,
	// so only a stalled process (or a producer far ahead of real time)
	// overflows it.
	DefaultBuffer = 2 * SampleRate

	// maxSilence is the longest run of unqueued samples replaced by
	// silence; beyond it the process is taken as stalled and replaced.
	maxSilence = 10 * SampleRate
)

// Errors callers may test for.
var (
	ErrFFmpegMissing = errors.New("ffmpeg not found: install the Debian package ffmpeg (apt-get install ffmpeg) or set the FFmpeg path")
	ErrClosed        = errors.New("aacenc: encoder closed")
	// ErrOverflow is the restart cause when more than 10 s of PCM could
	// not be queued: the process is stalled, so it is replaced.
	ErrOverflow = errors.New("aacenc: ffmpeg stalled, PCM queue overflowed")
)

// Frame is one AAC access unit.
type Frame struct {
	// Data is the raw AAC frame without ADTS header. It is only valid
	// during the OnFrame call: the buffer is reused.
	Data []byte
	// PTS is the frame's start in 48 kHz samples from the first sample
	// written: frame k starts at k*1024, and it keeps counting across
	// process restarts (samples lost in a dying process leave a gap).
	PTS int64
}

// Config configures an Encoder.
type Config struct {
	// Bitrate in bit/s; DefaultBitrate when 0.
	Bitrate int
	// FFmpegPath is the ffmpeg binary; looked up in PATH when empty.
	FFmpegPath string
	// Logger receives process events and ffmpeg's error output;
	// slog.Default() when nil.
	Logger *slog.Logger
	// OnFrame receives every frame, in order, from the encoder's reader
	// goroutine. It should be quick (copy into an FLV tag and queue it):
	// while it runs ffmpeg's output is not read.
	OnFrame func(Frame)
	// OnRestart is called (from the encoder's goroutine) with the cause
	// each time the process ended unexpectedly and is being restarted.
	OnRestart func(error)
	// BufferSamples overrides DefaultBuffer (per channel samples).
	BufferSamples int
}

// Encoder feeds PCM to an ffmpeg process and delivers AAC frames.
type Encoder struct {
	cfg    Config
	path   string
	log    *slog.Logger
	cancel context.CancelFunc
	done   chan struct{}

	queue *ring
	asc   atomic.Pointer[[]byte]
	pid   atomic.Int64

	closeOnce sync.Once
	drain     chan struct{} // closed by Close: finish the queue, then stop
	restarts  atomic.Int64
	dropped   atomic.Int64
}

// New starts the ffmpeg process and the goroutines that feed and read it.
// It fails when ffmpeg cannot be found or started. ctx bounds the
// encoder's life: when it ends the process is killed (Close must still be
// called to wait for it).
func New(ctx context.Context, cfg Config) (*Encoder, error) {
	path := cfg.FFmpegPath
	if path == "" {
		path = "ffmpeg"
	}
	resolved, err := exec.LookPath(path)
	if err != nil {
		return nil, fmt.Errorf("aacenc: %w (%v)", ErrFFmpegMissing, err)
	}
	if cfg.Bitrate <= 0 {
		cfg.Bitrate = DefaultBitrate
	}
	if cfg.BufferSamples <= 0 {
		cfg.BufferSamples = DefaultBuffer
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	ctx, cancel := context.WithCancel(ctx)
	e := &Encoder{
		cfg:    cfg,
		path:   resolved,
		log:    log.With("component", "aacenc", "bitrate", cfg.Bitrate),
		cancel: cancel,
		done:   make(chan struct{}),
		queue:  newRing(cfg.BufferSamples * Channels),
		drain:  make(chan struct{}),
	}
	p, err := e.start(ctx, 0)
	if err != nil {
		cancel()
		return nil, err
	}
	go e.supervise(ctx, p)
	return e, nil
}

// Write queues interleaved stereo PCM for encoding. It never waits for the
// process: when the queue is full the samples are counted as dropped and
// encoded as silence, so timestamps still advance by them. It returns
// ErrClosed after Close.
func (e *Encoder) Write(pcm []int16) error {
	if len(pcm)%Channels != 0 {
		return fmt.Errorf("aacenc: write %d values, not a whole number of stereo samples", len(pcm))
	}
	if !e.queue.write(pcm) {
		return ErrClosed
	}
	return nil
}

// AudioSpecificConfig returns the AudioSpecificConfig read from the first
// ADTS header (the AAC sequence header payload), or nil before the first
// frame. It is set before the first OnFrame call.
func (e *Encoder) AudioSpecificConfig() []byte {
	if p := e.asc.Load(); p != nil {
		return *p
	}
	return nil
}

// PID returns the process id of the current ffmpeg process (0 between
// processes), for CPU accounting.
func (e *Encoder) PID() int { return int(e.pid.Load()) }

// Dropped returns how many samples per channel Write could not queue
// (encoded as silence, or skipped over by a restart).
func (e *Encoder) Dropped() int64 { return e.dropped.Load() }

// Restarts returns how many times the process was restarted.
func (e *Encoder) Restarts() int64 { return e.restarts.Load() }

// Close stops accepting PCM, lets the process encode what was queued (up
// to 2 s), then ends it and waits for it and every goroutine.
func (e *Encoder) Close() error {
	e.closeOnce.Do(func() {
		e.queue.close()
		close(e.drain)
		select {
		case <-e.done:
		case <-time.After(2 * time.Second):
			e.log.Warn("ffmpeg did not finish in time, killing it")
		}
		e.cancel()
		<-e.done
	})
	return nil
}

// proc is one ffmpeg process and its plumbing.
type proc struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	cancel context.CancelFunc
	stderr *tailBuffer
	read   chan error // reader result, buffered
	base   int64      // samples fed to earlier processes
}

func (e *Encoder) start(parent context.Context, base int64) (*proc, error) {
	ctx, cancel := context.WithCancel(parent)
	cmd := exec.CommandContext(ctx, e.path,
		"-hide_banner", "-loglevel", "error", "-nostdin",
		// Raw PCM needs no probing; read and emit as soon as possible.
		"-fflags", "nobuffer", "-probesize", "32", "-analyzeduration", "0",
		"-f", "s16le", "-ar", strconv.Itoa(SampleRate), "-ac", strconv.Itoa(Channels), "-i", "pipe:0",
		"-c:a", "aac", "-b:a", strconv.Itoa(e.cfg.Bitrate),
		"-flush_packets", "1", "-f", "adts", "pipe:1")
	cmd.WaitDelay = time.Second
	stderr := &tailBuffer{}
	cmd.Stderr = stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		cancel()
		return nil, fmt.Errorf("aacenc: stdin pipe: %w", err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		cancel()
		return nil, fmt.Errorf("aacenc: stdout pipe: %w", err)
	}
	if err := cmd.Start(); err != nil {
		cancel()
		return nil, fmt.Errorf("aacenc: start %s: %w", e.path, err)
	}
	p := &proc{cmd: cmd, stdin: stdin, cancel: cancel, stderr: stderr, read: make(chan error, 1), base: base}
	e.pid.Store(int64(cmd.Process.Pid))
	e.log.Debug("ffmpeg started", "pid", cmd.Process.Pid, "pts_base", base)
	go func() { p.read <- e.readFrames(stdout, base) }()
	return p, nil
}

// supervise feeds the current process, replaces it when it dies, and
// returns (closing done) when the encoder is closed or ctx ends.
func (e *Encoder) supervise(ctx context.Context, p *proc) {
	defer close(e.done)
	backoff := 100 * time.Millisecond
	for {
		started := time.Now()
		fed, cause := e.feed(ctx, p)
		err := e.stop(p, cause)
		if ctx.Err() != nil || cause == nil {
			return // closed: the queue was drained (or abandoned on cancel)
		}
		cause = fmt.Errorf("%w (process: %v%s)", cause, err, p.stderr.suffix())
		e.restarts.Add(1)
		e.log.Warn("ffmpeg ended, restarting", "err", cause)
		if e.cfg.OnRestart != nil {
			e.cfg.OnRestart(cause)
		}
		if time.Since(started) > 10*time.Second {
			backoff = 100 * time.Millisecond
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
		// Samples queued while no process ran are skipped, not encoded
		// late: they are counted, so timestamps stay on the sample clock.
		base := p.base + fed + e.queue.discard()/Channels
		for {
			np, err := e.start(ctx, base)
			if err == nil {
				p = np
				break
			}
			e.log.Error("ffmpeg restart failed", "err", err)
			if e.cfg.OnRestart != nil {
				e.cfg.OnRestart(err)
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 5*time.Second)
			base += e.queue.discard() / Channels
		}
	}
}

// feed writes queued PCM to the process until it fails (returns the cause)
// or the encoder is closed and the queue drained (returns nil). fed is
// the number of samples per channel given to this process.
//
// Samples Write could not queue (the producer ran ahead by more than the
// buffer) are replaced by silence so that the encoded timeline keeps the
// sample count; only a gap longer than maxSilence, which means the process
// is stalled rather than slow, replaces the process instead.
func (e *Encoder) feed(ctx context.Context, p *proc) (fed int64, cause error) {
	buf := make([]byte, 4096*Channels*2)
	zeros := make([]byte, len(buf))
	for {
		n, lost, ok := e.queue.read(buf)
		if lost > 0 {
			e.dropped.Add(int64(lost / Channels))
			if lost/Channels > maxSilence {
				return fed, ErrOverflow
			}
			e.log.Warn("PCM queue overflowed, encoding silence in its place", "samples", lost/Channels)
			for lost > 0 {
				c := min(lost*2, len(zeros))
				if _, err := p.stdin.Write(zeros[:c]); err != nil {
					return fed, fmt.Errorf("aacenc: write PCM: %w", err)
				}
				lost -= c / 2
				fed += int64(c / 2 / Channels)
			}
			continue
		}
		if n > 0 {
			if _, err := p.stdin.Write(buf[:n]); err != nil {
				return fed, fmt.Errorf("aacenc: write PCM: %w", err)
			}
			fed += int64(n / 2 / Channels)
			continue
		}
		if !ok {
			return fed, nil // closed and drained
		}
		select {
		case <-e.queue.ready:
		case err := <-p.read:
			p.read <- err
			return fed, fmt.Errorf("aacenc: ffmpeg output ended: %w", errOrEOF(err))
		case <-ctx.Done():
			return fed, nil
		}
	}
}

// stop ends a process: on a clean close it closes stdin and lets ffmpeg
// flush its last frames; otherwise (or if that takes too long) it kills
// it. It always waits for the process and its reader.
func (e *Encoder) stop(p *proc, cause error) error {
	_ = p.stdin.Close()
	if cause != nil {
		p.cancel()
	}
	<-p.read // stdout at EOF: the process is gone or done writing
	p.cancel()
	err := p.cmd.Wait()
	e.pid.Store(0)
	return err
}

func errOrEOF(err error) error {
	if err == nil {
		return io.EOF
	}
	return err
}

// readFrames parses ADTS from the process's stdout and delivers frames
// until EOF or an error. Bytes are read straight out of the bufio buffer,
// so steady-state reading does not allocate.
func (e *Encoder) readFrames(stdout io.Reader, base int64) error {
	r := bufio.NewReaderSize(stdout, 16384)
	var frame int64
	for {
		hdr, err := r.Peek(7)
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		h, err := parseADTS(hdr)
		if err != nil {
			return err
		}
		buf, err := r.Peek(h.length)
		if err != nil {
			return fmt.Errorf("aacenc: truncated ADTS frame: %w", err)
		}
		if e.asc.Load() == nil {
			if err := e.setASC(buf); err != nil {
				return err
			}
		}
		if e.cfg.OnFrame != nil {
			e.cfg.OnFrame(Frame{Data: buf[h.headerLen:], PTS: base + frame*FrameSamples})
		}
		frame += int64(h.blocks)
		if _, err := r.Discard(h.length); err != nil {
			return err
		}
	}
}

func (e *Encoder) setASC(adts []byte) error {
	var pkts mpeg4audio.ADTSPackets
	if err := pkts.Unmarshal(adts); err != nil || len(pkts) == 0 {
		return fmt.Errorf("aacenc: first ADTS frame: %w", errOrEOF(err))
	}
	cfg := mpeg4audio.AudioSpecificConfig{Type: pkts[0].Type, SampleRate: pkts[0].SampleRate, ChannelConfig: pkts[0].ChannelConfig}
	asc, err := cfg.Marshal()
	if err != nil {
		return fmt.Errorf("aacenc: AudioSpecificConfig: %w", err)
	}
	e.asc.Store(&asc)
	return nil
}

type adtsHeader struct {
	length, headerLen, blocks int
}

// parseADTS reads the fields of a 7-byte ADTS header that framing needs.
func parseADTS(b []byte) (adtsHeader, error) {
	if b[0] != 0xff || b[1]&0xf6 != 0xf0 {
		return adtsHeader{}, fmt.Errorf("aacenc: lost ADTS sync (% x)", b[:4])
	}
	h := adtsHeader{
		length:    int(b[3]&0x03)<<11 | int(b[4])<<3 | int(b[5])>>5,
		headerLen: 7,
		blocks:    int(b[6]&0x03) + 1,
	}
	if b[1]&0x01 == 0 {
		h.headerLen = 9 // CRC present
	}
	if h.length <= h.headerLen {
		return adtsHeader{}, fmt.Errorf("aacenc: ADTS frame length %d too short", h.length)
	}
	return h, nil
}

// tailBuffer keeps the last KiB of ffmpeg's stderr for error messages.
type tailBuffer struct {
	mu  sync.Mutex
	buf []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > 1024 {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-1024:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) suffix() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.buf) == 0 {
		return ""
	}
	return "; ffmpeg: " + string(t.buf)
}
