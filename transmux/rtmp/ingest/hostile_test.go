package ingest

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"github.com/castbridge/castbridge/transmux/format/flv/flvtest"
	"github.com/castbridge/castbridge/transmux/rtmp/chunk"
	"github.com/castbridge/castbridge/transmux/rtmp/rtmppush"
)

// clientHandshake does the simple RTMP handshake as a client.
func clientHandshake(t *testing.T, c net.Conn) {
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
	if _, err := c.Write(s[1 : 1+1536]); err != nil { // C2 echoes S1
		t.Fatal(err)
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
