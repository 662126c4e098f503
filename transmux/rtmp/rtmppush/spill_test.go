package rtmppush_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/castbridge/castbridge/transmux/rtmp/ingest"
	"github.com/castbridge/castbridge/transmux/rtmp/rtmppush"
)

// tlsTerminator accepts TLS connections on a local port and relays each
// to addr in the clear, until the test ends.
func tlsTerminator(t *testing.T, addr string, cert tls.Certificate) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				up, err := net.Dial("tcp", addr)
				if err != nil {
					return
				}
				defer up.Close()
				go func() { _, _ = io.Copy(up, c); up.(*net.TCPConn).CloseWrite() }()
				_, _ = io.Copy(c, up)
			}()
		}
	}()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return port
}

// TestNonBlockingWrites: while the ingest reads nothing, non-blocking
// writes of 6 MiB (far more than the sockets' buffers) all return at once,
// the rest kept back; Drain, once the ingest reads again, delivers every
// message whole and in order, over RTMP and over RTMPS (the spill is below
// TLS).
func TestNonBlockingWrites(t *testing.T) {
	cert, pool := selfSigned(t)
	for _, useTLS := range []bool{false, true} {
		name := "rtmp"
		if useTLS {
			name = "rtmps"
		}
		t.Run(name, func(t *testing.T) {
			gate := make(chan struct{})
			var gateOnce sync.Once
			openGate := func() { gateOnce.Do(func() { close(gate) }) }
			defer openGate()
			var mu sync.Mutex
			var got []ingest.Message
			srv, err := ingest.Listen(ingest.Config{
				Addr: "127.0.0.1:0",
				OnMessage: func(_ string, m ingest.Message) {
					mu.Lock()
					got = append(got, m)
					mu.Unlock()
					<-gate // the first message stops the ingest reading
				},
			})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- srv.Serve(ctx) }()
			defer func() { openGate(); cancel(); <-done }()
			url := "rtmp://" + srv.Addr().String() + "/live/nb"
			if useTLS {
				url = "rtmps://127.0.0.1:" + tlsTerminator(t, srv.Addr().String(), cert) + "/live/nb"
			}
			p, err := rtmppush.Dial(context.Background(), rtmppush.Config{Endpoint: endpoint(t, url),
				TLSConfig: &tls.Config{RootCAs: pool}, SendBuffer: 64 << 10})
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			if !p.CanWriteNonBlocking() {
				t.Fatal("a TCP connection cannot write without blocking")
			}
			const n, size = 200, 32 << 10
			body := func(i int) []byte {
				b := bytes.Repeat([]byte{byte(i)}, size)
				b[0] = 0x27 // an AVC inter frame
				binary.BigEndian.PutUint32(b[1:], uint32(i))
				return b
			}
			p.SetNonBlocking(true)
			start := time.Now()
			for i := range n {
				if err := p.WriteVideo(uint32(i), body(i)); err != nil {
					t.Fatalf("write %d: %v", i, err)
				}
			}
			took := time.Since(start)
			p.SetNonBlocking(false)
			if took > time.Second {
				t.Errorf("%d non-blocking writes of %d KiB took %v with the ingest not reading", n, size>>10, took)
			}
			if p.Spilled() == 0 {
				t.Fatal("nothing kept back with the ingest not reading")
			}
			t.Logf("%d writes in %v, %d KiB kept back", n, took, p.Spilled()>>10)
			openGate()
			if err := p.Drain(); err != nil {
				t.Fatal(err)
			}
			if p.Spilled() != 0 {
				t.Fatalf("%d bytes left after Drain", p.Spilled())
			}
			waitFor(t, "every message", func() bool { mu.Lock(); defer mu.Unlock(); return len(got) >= n })
			mu.Lock()
			defer mu.Unlock()
			for i, m := range got[:n] {
				if m.Timestamp != uint32(i) || !bytes.Equal(m.Body, body(i)) {
					t.Fatalf("message %d: timestamp %d, %d bytes, want %d and the body written", i, m.Timestamp, len(m.Body), i)
				}
			}
		})
	}
}
