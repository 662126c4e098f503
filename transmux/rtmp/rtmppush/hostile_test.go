package rtmppush_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/castbridge/castbridge/transmux/format/flv"
	"github.com/castbridge/castbridge/transmux/format/flv/flvtest"
	"github.com/castbridge/castbridge/transmux/rtmp/chunk"
	"github.com/castbridge/castbridge/transmux/rtmp/rtmppush"
)

// fakeIngest accepts one connection on loopback, reads the client's
// C0+C1 and hands both to serve, on a goroutine the test's cleanup joins.
func fakeIngest(t *testing.T, serve func(c net.Conn, c1 []byte)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(30 * time.Second))
		c1 := make([]byte, 1+1536)
		if _, err := io.ReadFull(c, c1); err != nil {
			return
		}
		serve(c, c1)
	})
	return ln.Addr().String()
}

// s0s1s2 is a server's simple handshake answer to C0+C1 (S2 echoes C1).
func s0s1s2(c1 []byte) []byte {
	s := append([]byte{3}, make([]byte, 1536)...)
	return append(s, c1[1:]...)
}

// hostileIngest accepts one connection, does the server's handshake, and
// answers whatever comes with reply (a command message body).
func hostileIngest(t *testing.T, reply []byte) string {
	t.Helper()
	return fakeIngest(t, func(c net.Conn, c1 []byte) {
		if _, err := c.Write(s0s1s2(c1)); err != nil {
			return
		}
		if _, err := io.ReadFull(c, make([]byte, 1536)); err != nil { // C2
			return
		}
		bw := bufio.NewWriter(c)
		w := chunk.NewWriter(bw)
		_ = w.WriteMessage(2, chunk.TypeSetChunkSize, 0, 0, []byte{0x00, 0xff, 0xff, 0xff})
		w.SetChunkSize(chunk.MaxChunkSize)
		_ = w.WriteMessage(3, 20, 0, 0, reply)
		_ = w.Flush()
		_, _ = io.Copy(io.Discard, c) // until the client hangs up
	})
}

// TestHostileIngest: an ingest that answers connect with a _result nested
// a million (7 MB) or a thousand objects deep fails the dial with a clear
// error at once; it used to overflow the stack and end the process.
func TestHostileIngest(t *testing.T) {
	for _, depth := range []int{1_000_000, 1000} {
		addr := hostileIngest(t, flvtest.NestedCommand("_result", depth))
		start := time.Now()
		_, err := rtmppush.Dial(context.Background(), rtmppush.Config{
			Endpoint: endpoint(t, "rtmp://"+addr+"/live/key"), PublishTimeout: 5 * time.Second})
		if err == nil {
			t.Fatalf("depth %d: the dial succeeded", depth)
		}
		// Over the size limit it is refused from the chunk header; within
		// it, by the decoder's depth limit.
		if !errors.Is(err, chunk.ErrProtocol) && !errors.Is(err, flv.ErrMalformedData) {
			t.Errorf("depth %d: err %v, want the command refused", depth, err)
		}
		if strings.Contains(err.Error(), "/key") {
			t.Errorf("the error shows the stream key: %v", err)
		}
		if d := time.Since(start); d > 4*time.Second {
			t.Errorf("depth %d: failing took %v (it waited for the publish timeout)", depth, d)
		}
	}
}
