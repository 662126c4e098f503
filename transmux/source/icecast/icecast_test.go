package icecast

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func encode(t *testing.T, format string, args ...string) []byte {
	t.Helper()
	if _, err := exec.LookPath("ffmpeg"); err != nil {
		t.Skip("ffmpeg not installed (Debian package ffmpeg)")
	}
	full := append([]string{"-hide_banner", "-loglevel", "error", "-f", "lavfi",
		"-i", "sine=frequency=440:sample_rate=44100:duration=3"}, args...)
	full = append(full, "-f", format, "-")
	out, err := exec.Command("ffmpeg", full...).Output()
	if err != nil {
		t.Fatalf("ffmpeg: %v", err)
	}
	return out
}

// server serves body as an endless-looking stream; the first request is
// cut off after a third of it.
func server(t *testing.T, contentType string, body []byte) (*httptest.Server, *atomic.Int32) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Icy-MetaData") != "0" {
			t.Errorf("Icy-MetaData header %q", r.Header.Get("Icy-MetaData"))
		}
		w.Header().Set("Content-Type", contentType)
		if hits.Add(1) == 1 {
			w.Write(body[:len(body)/3])
			w.(http.Flusher).Flush()
			panic(http.ErrAbortHandler) // drop the connection mid-stream
		}
		w.Write(body)
	}))
	t.Cleanup(srv.Close)
	return srv, &hits
}

type got struct {
	frames, samples int
	codec           Codec
	rate, channels  int
	asc             []byte
	maxData         int
}

// collect runs the source until it has seen want samples after reconnecting.
func collect(t *testing.T, url string, want int) got {
	t.Helper()
	src, err := New(Config{URL: url, MinBackoff: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	var g got
	done := errors.New("done")
	err = src.Run(ctx, func(f Frame) error {
		g.frames++
		g.samples += f.Samples
		g.codec, g.rate, g.channels = f.Codec, f.SampleRate, f.Channels
		g.maxData = max(g.maxData, len(f.Data))
		if f.ASC != nil {
			g.asc = append(g.asc[:0], f.ASC...)
		}
		if g.samples >= want {
			return done
		}
		return nil
	})
	if !errors.Is(err, done) {
		t.Fatalf("Run: %v after %d frames", err, g.frames)
	}
	return g
}

func TestMP3Reconnect(t *testing.T) {
	body := encode(t, "mp3", "-ac", "2", "-c:a", "libmp3lame", "-b:a", "128k")
	srv, hits := server(t, "audio/mpeg", body)
	// A third of the stream, the cut, then the whole stream again: more
	// samples than one copy holds means the source reconnected.
	g := collect(t, srv.URL+"/stream.mp3", 3*44100+44100/2)
	if g.codec != MP3 || g.rate != 44100 || g.channels != 2 {
		t.Fatalf("got %+v", g)
	}
	if hits.Load() < 2 {
		t.Fatalf("%d requests: no reconnect", hits.Load())
	}
	t.Logf("%d MP3 frames, %d samples over %d connections", g.frames, g.samples, hits.Load())
}

func TestAACReconnect(t *testing.T) {
	body := encode(t, "adts", "-ac", "2", "-c:a", "aac", "-b:a", "96k")
	srv, hits := server(t, "audio/aac", body)
	g := collect(t, srv.URL, 3*44100+44100/2)
	if g.codec != AAC || g.rate != 44100 || g.channels != 2 {
		t.Fatalf("got %+v", g)
	}
	// AAC LC, 44.1 kHz (index 4), stereo.
	if string(g.asc) != "\x12\x10" {
		t.Fatalf("ASC %x, want 1210", g.asc)
	}
	if hits.Load() < 2 {
		t.Fatalf("%d requests: no reconnect", hits.Load())
	}
}

func TestNotAudio(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		w.Write([]byte("<html>nope</html>"))
	}))
	defer srv.Close()
	if err := Probe(t.Context(), srv.Client(), srv.URL); err == nil {
		t.Fatal("Probe accepted text/html")
	}
	bin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "audio/mpeg")
		w.Write(make([]byte, 100000))
	}))
	defer bin.Close()
	if err := Probe(t.Context(), bin.Client(), bin.URL); err != nil {
		t.Fatalf("Probe: %v", err)
	}
	p := &parser{}
	resp, err := bin.Client().Get(bin.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	p.reset(resp.Body)
	if _, err := p.next(); !errors.Is(err, ErrNotAudio) {
		t.Fatalf("zeros: %v", err)
	}
}

func TestValidate(t *testing.T) {
	for _, u := range []string{"", "ftp://x/y", "http://", "rtmp://host/app", "://bad", "/relative"} {
		if err := Validate(u); !errors.Is(err, ErrInvalidURL) {
			t.Errorf("Validate(%q) = %v", u, err)
		}
	}
	for _, u := range []string{"http://radio.example:8000/live.mp3", "https://user:pw@host/stream?token=x"} {
		if err := Validate(u); err != nil {
			t.Errorf("Validate(%q) = %v", u, err)
		}
	}
	if got := redact("https://user:pw@host/stream?token=x"); got != "https://host/****" {
		t.Fatalf("redact: %s", got)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := Probe(ctx, nil, "http://127.0.0.1:1/"); err == nil {
		t.Fatal("Probe of a closed port succeeded")
	}
}

func TestRunStopsOnCancel(t *testing.T) {
	src, err := New(Config{URL: "http://127.0.0.1:1/", MinBackoff: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	if err := src.Run(ctx, func(Frame) error { return nil }); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Run: %v", err)
	}
}

func BenchmarkParseMP3(b *testing.B) {
	body, err := exec.Command("ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "lavfi",
		"-i", "sine=frequency=440:sample_rate=44100:duration=3", "-c:a", "libmp3lame", "-f", "mp3", "-").Output()
	if err != nil {
		b.Skip("ffmpeg not available")
	}
	p := &parser{}
	r := &loopReader{data: body}
	p.reset(r)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := p.next(); err != nil {
			b.Fatal(err)
		}
	}
}

// loopReader repeats data forever (without its ID3 tag after the first
// pass, like a stream).
type loopReader struct {
	data []byte
	off  int
}

func (l *loopReader) Read(b []byte) (int, error) {
	n := copy(b, l.data[l.off:])
	l.off += n
	if l.off == len(l.data) {
		l.off = 0
	}
	return n, nil
}
