package webrtcin

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"testing"
	"time"
)

func newLimitListener(t *testing.T, maxConns int, idle time.Duration) *limitListener {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ll := &limitListener{Listener: ln, slots: make(chan struct{}, maxConns), idle: idle, log: slog.New(slog.DiscardHandler)}
	t.Cleanup(func() { _ = ll.Close() })
	return ll
}

// acceptAsync accepts one connection on a goroutine.
func acceptAsync(ll *limitListener) <-chan net.Conn {
	ch := make(chan net.Conn, 1)
	go func() {
		c, err := ll.Accept()
		if err != nil {
			close(ch)
			return
		}
		ch <- c
	}()
	return ch
}

// TestLimitListenerCapsConnections: beyond the cap a new connection is
// closed at once; closing an accepted one frees its slot.
func TestLimitListenerCapsConnections(t *testing.T) {
	ll := newLimitListener(t, 2, time.Minute)
	var clients, served []net.Conn
	for range 2 {
		accepted := acceptAsync(ll)
		c, err := net.Dial("tcp4", ll.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		clients = append(clients, c)
		served = append(served, <-accepted)
	}
	defer func() {
		for _, c := range append(clients, served...) {
			_ = c.Close()
		}
	}()

	accepted := acceptAsync(ll)
	over, err := net.Dial("tcp4", ll.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer over.Close()
	_ = over.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := over.Read(make([]byte, 1)); !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) && !isReset(err) {
		t.Fatalf("a third connection over a cap of 2: read %d, %v; want it closed by the gateway", n, err)
	}
	if got := ll.refused.Load(); got != 1 {
		t.Errorf("refused = %d, want 1", got)
	}

	// A freed slot takes the next connection (Accept is still waiting).
	_ = served[0].Close()
	_ = served[0].Close() // twice: the slot is given back once
	c, err := net.Dial("tcp4", ll.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	select {
	case sc := <-accepted:
		if sc == nil {
			t.Fatal("accept failed")
		}
		defer sc.Close()
		if got := len(ll.slots); got != 2 {
			t.Errorf("slots in use = %d, want 2", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a connection was not accepted after a slot was freed")
	}
}

func isReset(err error) bool {
	var oe *net.OpError
	return errors.As(err, &oe) && !oe.Timeout()
}

// TestLimitConnDeadlines: a connection reads under pion's own deadline
// while one is set, and under the idle deadline otherwise; the idle
// deadline moves on with every read.
func TestLimitConnDeadlines(t *testing.T) {
	const idle = 300 * time.Millisecond
	ll := newLimitListener(t, 4, idle)
	accepted := acceptAsync(ll)
	client, err := net.Dial("tcp4", ll.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	sc := <-accepted
	defer sc.Close()

	// pion's first-STUN deadline, longer than idle, is kept.
	if err := sc.SetReadDeadline(time.Now().Add(3 * idle)); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = sc.Read(make([]byte, 1))
	if took := time.Since(start); !errors.Is(err, os.ErrDeadlineExceeded) || took < 2*idle {
		t.Fatalf("under an explicit deadline of %v: %v after %v", 3*idle, err, took)
	}

	// Cleared: the idle deadline applies, pushed on by data.
	if err := sc.SetReadDeadline(time.Time{}); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1)
	for range 4 { // 4 × idle/2: longer than idle in all, but never idle
		time.Sleep(idle / 2)
		if _, err := client.Write([]byte{1}); err != nil {
			t.Fatal(err)
		}
		if _, err := sc.Read(buf); err != nil {
			t.Fatalf("a connection receiving every %v ended: %v", idle/2, err)
		}
	}
	start = time.Now()
	_, err = sc.Read(buf)
	if took := time.Since(start); !errors.Is(err, os.ErrDeadlineExceeded) || took > 5*idle {
		t.Fatalf("a quiet connection: %v after %v, want a deadline error after about %v", err, took, idle)
	}
}
