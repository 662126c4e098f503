package ingest

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/castbridge/castbridge/transmux/rtmp/rtmppush"
)

// syncBuffer is a log sink safe for the server's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (w *syncBuffer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *syncBuffer) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

func dialPublish(t *testing.T, s *Server, path string) (*rtmppush.Publisher, error) {
	t.Helper()
	ep, err := rtmppush.ParseEndpoint("rtmp://"+s.Addr().String()+path, "")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return rtmppush.Dial(ctx, rtmppush.Config{Endpoint: ep})
}

func TestPublishKey(t *testing.T) {
	dir := t.TempDir()
	logs := &syncBuffer{}
	s, cancel, done := serve(t, Config{Dir: dir, Key: "s3cret-key", Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	defer func() { cancel(); <-done }()

	for _, path := range []string{"/live/cam", "/live/cam?key=wrong", "/live/cam?key=s3cret-ke", "/live/cam?key=s3cret-keyy", "/live/s3cret-key"} {
		_, err := dialPublish(t, s, path)
		var rej *rtmppush.RejectedError
		if !errors.As(err, &rej) || rej.Code != "NetStream.Publish.BadName" {
			t.Fatalf("publish %s: err = %v, want BadName", path, err)
		}
	}
	p, err := dialPublish(t, s, "/live/cam?key=s3cret-key")
	if err != nil {
		t.Fatalf("publish with the key: %v", err)
	}
	if err := p.WriteVideo(0, []byte{0x17, 0, 0, 0, 0}); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 || entries[0].Name() != "cam.flv" {
		t.Fatalf("recordings %v, want only cam.flv", entries)
	}
	if strings.Contains(logs.String(), "s3cret") {
		t.Fatalf("the key is in the logs:\n%s", logs)
	}
}

func TestMaxConns(t *testing.T) {
	s, cancel, done := serve(t, Config{MaxConns: 2})
	defer func() { cancel(); <-done }()
	var held []net.Conn
	for range 2 {
		c, err := net.Dial("tcp", s.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		clientHandshake(t, c) // accepted and tracked
		held = append(held, c)
	}
	for i := range 5 {
		c, err := net.Dial("tcp", s.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
		_, _ = c.Write(make([]byte, 1+1536))
		if _, err := c.Read(make([]byte, 1)); !errors.Is(err, io.EOF) && !isReset(err) {
			t.Fatalf("connection %d past the cap: read %v, want it closed", i+3, err)
		}
		c.Close()
	}
	if got := s.RefusedConns(); got != 5 {
		t.Fatalf("RefusedConns = %d, want 5", got)
	}
	// A freed slot is usable again.
	held[0].Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		p, err := dialPublish(t, s, "/live/after")
		if err == nil {
			_ = p.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no publish after a slot was freed: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func isReset(err error) bool {
	return err != nil && (strings.Contains(err.Error(), "reset") || strings.Contains(err.Error(), "broken pipe"))
}

func TestIdleTimeout(t *testing.T) {
	s, cancel, done := serve(t, Config{IdleTimeout: 200 * time.Millisecond})
	defer func() { cancel(); <-done }()
	c, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	clientHandshake(t, c)
	start := time.Now()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.Copy(io.Discard, c); err != nil && !isReset(err) {
		t.Fatalf("idle connection: %v, want closed by the server", err)
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Fatalf("idle connection closed after %v, want about 200ms", el)
	}
}

func TestMessageLimits(t *testing.T) {
	var got atomic.Int64
	s, cancel, done := serve(t, Config{MaxAudio: 100, MaxVideo: 1000, MaxData: 200,
		OnMessage: func(_ string, m Message) { got.Add(1) }})
	defer func() { cancel(); <-done }()
	for _, tc := range []struct {
		name  string
		write func(p *rtmppush.Publisher, n int) error
		limit int
	}{
		{"audio", func(p *rtmppush.Publisher, n int) error { return p.WriteAudio(0, make([]byte, n)) }, 100},
		{"video", func(p *rtmppush.Publisher, n int) error { return p.WriteVideo(0, make([]byte, n)) }, 1000},
		{"data", func(p *rtmppush.Publisher, n int) error { return p.WriteData(0, make([]byte, n)) }, 200},
	} {
		got.Store(0)
		p, err := dialPublish(t, s, "/live/"+tc.name)
		if err != nil {
			t.Fatal(err)
		}
		if err := tc.write(p, tc.limit); err != nil {
			t.Fatalf("%s at the limit: %v", tc.name, err)
		}
		_ = tc.write(p, tc.limit+1)
		select {
		case <-p.Done():
		case <-time.After(5 * time.Second):
			t.Fatalf("%s of %d bytes under a %d-byte limit: connection not dropped", tc.name, tc.limit+1, tc.limit)
		}
		p.Abort()
		if n := got.Load(); n != 1 {
			t.Fatalf("%s: %d messages delivered, want only the one at the limit", tc.name, n)
		}
	}
}

func TestRecordingsQuota(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "old.flv"), make([]byte, 4000), 0o644); err != nil {
		t.Fatal(err)
	}
	const quota = 10_000
	logs := &syncBuffer{}
	var delivered atomic.Int64
	ended := make(chan string, 4)
	s, cancel, done := serve(t, Config{Dir: dir, RecordingsMaxBytes: quota,
		Logger:    slog.New(slog.NewTextHandler(logs, nil)),
		OnMessage: func(string, Message) { delivered.Add(1) },
		OnCommand: func(stream, cmd string) {
			if cmd == "deleteStream" {
				ended <- stream
			}
		}})
	waitEnd := func() {
		t.Helper()
		select {
		case <-ended:
		case <-time.After(5 * time.Second):
			t.Fatal("no deleteStream")
		}
	}
	defer func() { cancel(); <-done }()
	if got := s.RecordingsBytes(); got != 4000 {
		t.Fatalf("RecordingsBytes at start = %d, want the 4000 already there", got)
	}
	p, err := dialPublish(t, s, "/live/cam")
	if err != nil {
		t.Fatal(err)
	}
	body := make([]byte, 500)
	body[0] = 0x17
	const n = 40 // 40 × 515 bytes: far past the 6000 left
	for i := range n {
		if err := p.WriteVideo(uint32(i*33), body); err != nil {
			t.Fatalf("write %d: the publish must go on past the quota: %v", i, err)
		}
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	waitEnd()
	if delivered.Load() != n {
		t.Fatalf("%d messages delivered, want all %d: the quota stops recording, not the publish", delivered.Load(), n)
	}
	info, err := os.Stat(filepath.Join(dir, "cam.flv"))
	if err != nil {
		t.Fatal(err)
	}
	// The header and whole tags only: 13 + k×515 ≤ 6000.
	if info.Size() > quota-4000 || (info.Size()-13)%515 != 0 || info.Size() < 13+515 {
		t.Fatalf("cam.flv is %d bytes; want whole tags within the %d left", info.Size(), quota-4000)
	}
	if s.RecordingsBytes() > quota {
		t.Fatalf("RecordingsBytes %d past the quota", s.RecordingsBytes())
	}
	if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "recording stopped") || !strings.Contains(logs.String(), "quota") {
		t.Fatalf("no warning about the quota:\n%s", logs)
	}
	// A new publish with the quota full is accepted, but none of its media
	// is recorded (at most the 13-byte header fits in what is left).
	p, err = dialPublish(t, s, "/live/cam2")
	if err != nil {
		t.Fatalf("publish with the quota full: %v", err)
	}
	if err := p.WriteVideo(0, body); err != nil {
		t.Fatal(err)
	}
	_ = p.Close()
	waitEnd()
	if info, err := os.Stat(filepath.Join(dir, "cam2.flv")); err == nil && info.Size() > 13 {
		t.Fatalf("cam2.flv has %d bytes with the quota full", info.Size())
	}
	if s.RecordingsBytes() > quota {
		t.Fatalf("RecordingsBytes %d past the quota", s.RecordingsBytes())
	}
}
