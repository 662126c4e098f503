package ingest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"github.com/yutopp/go-amf0"

	"github.com/castbridge/castbridge/transmux/format/flv/flvtest"
	"github.com/castbridge/castbridge/transmux/rtmp/chunk"
	"github.com/castbridge/castbridge/transmux/rtmp/rtmppush"
)

// clientHandshake does the simple RTMP handshake as a client.
func clientHandshake(t *testing.T, c net.Conn) {
	t.Helper()
	handshakeC2(t, c, func(s1 []byte) []byte { return s1 })
}

// handshakeC2 does the client's handshake with the C2 that c2 makes of S1.
func handshakeC2(t *testing.T, c net.Conn, c2 func(s1 []byte) []byte) {
	t.Helper()
	c1 := make([]byte, 1+1536)
	c1[0] = 3
	if _, err := c.Write(c1); err != nil {
		t.Fatal(err)
	}
	s := make([]byte, 1+1536+1536)
	if _, err := io.ReadFull(c, s); err != nil {
		t.Fatalf("handshake: %v", err)
	}
	if _, err := c.Write(c2(s[1 : 1+1536])); err != nil {
		t.Fatal(err)
	}
}

// TestHandshakeWithoutEcho: a client whose C2 does not echo S1's random
// bytes (SRS's forward, encoders with the digest handshake) is served;
// go-rtmp's strict check reset it.
func TestHandshakeWithoutEcho(t *testing.T) {
	s, cancel, done := serve(t, Config{})
	defer func() { cancel(); <-done }()
	c, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	handshakeC2(t, c, func(s1 []byte) []byte {
		c2 := make([]byte, len(s1))
		copy(c2, s1[:8]) // the times, but random bytes of its own
		for i := 8; i < len(c2); i++ {
			c2[i] = byte(i * 7)
		}
		return c2
	})
	bw := bufio.NewWriter(c)
	w := chunk.NewWriter(bw)
	var cmd bytes.Buffer
	enc := amf0.NewEncoder(&cmd)
	for _, v := range []any{"connect", 1.0, map[string]any{"app": "live", "tcUrl": "rtmp://x/live"}} {
		if err := enc.Encode(v); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.WriteMessage(3, 20, 0, 0, cmd.Bytes()); err != nil {
		t.Fatal(err)
	}
	if err := bw.Flush(); err != nil {
		t.Fatal(err)
	}
	// The server answers connect: window size, peer bandwidth, chunk
	// size and _result.
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	r := chunk.NewReader()
	got := map[uint8]bool{}
	buf := make([]byte, 4096)
	for !got[20] {
		n, err := c.Read(buf)
		if err != nil {
			t.Fatalf("after a handshake without the echo: %v (messages so far %v)", err, got)
		}
		if err := r.Feed(buf[:n], func(m *chunk.Message) error { got[m.TypeID] = true; return nil }); err != nil {
			t.Fatal(err)
		}
	}
}

// TestHostileCommand: a client whose connect nests objects a million deep
// (which overflowed go-amf0's stack and killed the process) or a thousand
// deep loses its connection, and the server goes on serving others.
func TestHostileCommand(t *testing.T) {
	s, cancel, done := serve(t, Config{})
	defer func() { cancel(); <-done }()
	for _, depth := range []int{1_000_000, 1000} {
		c, err := net.Dial("tcp", s.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		clientHandshake(t, c)
		bw := bufio.NewWriter(c)
		w := chunk.NewWriter(bw)
		w.SetChunkSize(chunk.MaxChunkSize)
		setSize := []byte{0x00, 0xff, 0xff, 0xff}
		if err := w.WriteMessage(2, chunk.TypeSetChunkSize, 0, 0, setSize); err != nil {
			t.Fatal(err)
		}
		// The server may cut us off while we still write: that is the point.
		_ = w.WriteMessage(3, 20, 0, 0, flvtest.NestedCommand("connect", depth))
		_ = w.Flush()
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, err = io.Copy(io.Discard, c)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("depth %d: the server kept the connection", depth)
		}
		c.Close()
	}
	// Another publisher is served as before.
	ep, err := rtmppush.ParseEndpoint("rtmp://"+s.Addr().String()+"/live/after", "")
	if err != nil {
		t.Fatal(err)
	}
	p, err := rtmppush.Dial(context.Background(), rtmppush.Config{Endpoint: ep})
	if err != nil {
		t.Fatalf("a publisher after the hostile ones: %v", err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
}
