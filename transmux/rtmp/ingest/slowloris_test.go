package ingest

import (
	"bufio"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/castbridge/castbridge/transmux/rtmp/chunk"
	"github.com/castbridge/castbridge/transmux/rtmp/rtmppush"
)

// slowClient is a hostile client holding a connection open with a handshake
// it never finishes. held reports, once the server cut it, how long the
// server kept it from the dial.
type slowClient struct {
	held chan time.Duration
}

// dialSlow opens a connection and, with trickle, sends C0+C1 one byte every
// interval; without, it sends C0+C1 at once, reads S0+S1+S2 and never sends
// C2. It stops when the server closes the connection, or when stop closes.
func dialSlow(t *testing.T, wg *sync.WaitGroup, addr string, trickle bool, interval time.Duration, stop <-chan struct{}) *slowClient {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	sc := &slowClient{held: make(chan time.Duration, 1)}
	c1 := make([]byte, 1+1536)
	c1[0] = 3
	if !trickle {
		if _, err := c.Write(c1); err != nil {
			t.Fatal(err)
		}
	}
	cut := make(chan struct{})
	wg.Add(2)
	go func() { // reads until the server closes
		defer wg.Done()
		_, _ = io.Copy(io.Discard, c)
		sc.held <- time.Since(start)
		close(cut)
	}()
	go func() { // trickles, then waits for the end
		defer wg.Done()
		defer c.Close()
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for i := 0; trickle && i < len(c1); i++ {
			if _, err := c.Write(c1[i : i+1]); err != nil {
				break
			}
			select {
			case <-tick.C:
			case <-cut:
				return
			case <-stop:
				return
			}
		}
		select {
		case <-cut:
		case <-stop:
		}
	}()
	return sc
}

// TestSlowHandshakes: clients that trickle the handshake a byte at a time,
// or never send C2, are cut when the handshake timeout passes (one deadline
// from the accept, not one per byte); while they hold their slots, the
// connection cap holds (more are refused at once), a real publisher in the
// last slot gets every frame through, and once they are cut their slots
// serve new publishers.
func TestSlowHandshakes(t *testing.T) {
	const (
		maxConns = 8
		slow     = maxConns - 1 // one slot left for the publisher
		timeout  = time.Second
	)
	var videos atomic.Int64
	s, cancel, done := serve(t, Config{MaxConns: maxConns, HandshakeTimeout: timeout, OnMessage: func(_ string, m Message) {
		if m.Type == 9 {
			videos.Add(1)
		}
	}})
	defer func() { cancel(); <-done }()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	defer func() { close(stop); wg.Wait() }()

	var clients []*slowClient
	for i := range slow {
		// Most trickle a byte every 150 ms (C0+C1 would take ~4 minutes);
		// two take the server's S0+S1+S2 and never answer C2.
		clients = append(clients, dialSlow(t, &wg, s.Addr().String(), i >= 2, 150*time.Millisecond, stop))
	}
	// Wait until the server tracks them all.
	for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		s.mu.Lock()
		n := len(s.conns)
		s.mu.Unlock()
		if n == slow {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the server tracks %d connections, want %d", n, slow)
		}
	}

	// The publisher in the last slot: every frame arrives.
	p, err := dialPublish(t, s, "/live/real")
	if err != nil {
		t.Fatalf("a publisher beside %d slow handshakes: %v", slow, err)
	}
	// The cap holds: a ninth connection is closed at once.
	for range 3 {
		c, err := net.Dial("tcp", s.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(timeout / 2))
		if _, err := c.Read(make([]byte, 1)); err == nil || isTimeout(err) {
			t.Errorf("a connection past the cap was kept: %v", err)
		}
		c.Close()
	}
	if got := s.RefusedConns(); got != 3 {
		t.Errorf("RefusedConns = %d, want 3", got)
	}
	const frames = 50
	if err := p.WriteVideo(0, []byte{0x17, 0, 0, 0, 0}); err != nil { // sequence header
		t.Fatal(err)
	}
	for i := 1; i < frames; i++ {
		if err := p.WriteVideo(uint32(i*33), []byte{0x27, 1, 0, 0, 0, 0, 0, 0, 1, 0x41}); err != nil {
			t.Fatal(err)
		}
	}

	// Every slow client is cut after the timeout, not before, and not
	// much later (one deadline: no byte pushed it back).
	var longest time.Duration
	for i, c := range clients {
		select {
		case d := <-c.held:
			if d < timeout-50*time.Millisecond || d > timeout+1500*time.Millisecond {
				t.Errorf("slow client %d held %v, want about %v", i, d, timeout)
			}
			longest = max(longest, d)
		case <-time.After(timeout + 5*time.Second):
			t.Fatalf("slow client %d still held %v after the handshake timeout", i, timeout+5*time.Second)
		}
	}
	t.Logf("%d slow handshakes held at most %v (handshake timeout %v)", slow, longest, timeout)

	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(2 * time.Second); videos.Load() < frames && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if got := videos.Load(); got != frames {
		t.Errorf("the publisher beside the slow handshakes got %d of %d frames through", got, frames)
	}

	// Their slots serve again: as many publishers as the cap at once.
	var pubs []*rtmppush.Publisher
	deadline := time.Now().Add(5 * time.Second)
	for i := 0; i < maxConns; {
		p, err := dialPublish(t, s, "/live/after"+string(rune('a'+i)))
		if err != nil {
			if time.Now().After(deadline) { // the closed publisher's slot frees asynchronously
				t.Fatalf("publisher %d after the slow clients were cut: %v", i, err)
			}
			time.Sleep(20 * time.Millisecond)
			continue
		}
		pubs = append(pubs, p)
		i++
	}
	for _, p := range pubs {
		_ = p.Close()
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// amf0String is an AMF0 string value.
func amf0String(s string) []byte { return append([]byte{0x02, byte(len(s) >> 8), byte(len(s))}, s...) }

// TestClientThatNeverReads: a client that sends createStream in a loop and
// never reads the answers loses its connection at once. It used to keep
// it, and a core, for as long as it liked: go-rtmp allowed 2^32 message
// streams, scanning from 0 for a free id on every createStream (memory
// without bound, quadratic CPU), and once the client's buffers were full
// go-rtmp's writer blocked on the replies with no deadline (held over 40 s
// with a 2 s idle timeout).
func TestClientThatNeverReads(t *testing.T) {
	const idle = 500 * time.Millisecond
	s, cancel, done := serve(t, Config{IdleTimeout: idle})
	defer func() { cancel(); <-done }()
	connect := append(amf0String("connect"), 0x00, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0, 0x03, 0x00, 0x03, 'a', 'p', 'p')
	connect = append(append(connect, amf0String("live")...), 0, 0, 9)
	createStream := append(amf0String("createStream"), 0x00, 0x40, 0, 0, 0, 0, 0, 0, 0, 0x05)
	for _, tc := range []struct {
		name    string
		payload []byte
		within  time.Duration
	}{
		{"createStream loop", createStream, time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
				return rc.Control(func(fd uintptr) { _ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 2048) })
			}}
			c, err := d.Dial("tcp", s.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			clientHandshake(t, c)
			bw := bufio.NewWriter(c)
			w := chunk.NewWriter(bw)
			if err := w.WriteMessage(3, 20, 0, 0, connect); err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			sent := 0
			// Until the server hangs up or stops reading (the write stalls).
			for time.Since(start) < 10*time.Second {
				_ = c.SetWriteDeadline(time.Now().Add(time.Second))
				err := w.WriteMessage(3, 20, 0, 0, tc.payload)
				if err == nil {
					err = bw.Flush()
				}
				if err != nil {
					break
				}
				sent++
			}
			for deadline := start.Add(tc.within + 2*time.Second); ; time.Sleep(20 * time.Millisecond) {
				s.mu.Lock()
				n := len(s.conns)
				s.mu.Unlock()
				if n == 0 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("the server still holds the connection %v after the client began (%d sent)", time.Since(start), sent)
				}
			}
			took := time.Since(start)
			t.Logf("a client that never reads (%s, %d sent) was cut after %v", tc.name, sent, took.Round(10*time.Millisecond))
			if took > tc.within {
				t.Errorf("cut after %v, want within %v", took, tc.within)
			}
		})
	}
	// Others are served.
	p, err := dialPublish(t, s, "/live/after")
	if err != nil {
		t.Fatalf("a publisher after the ones that never read: %v", err)
	}
	_ = p.Close()
}
