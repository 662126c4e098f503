package httpapi

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"testing"
	"time"
)

func serveLimited(t *testing.T, l Limits) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		_, _ = io.WriteString(w, "ok")
	}), l)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(LimitListener(ln, l))
	}()
	t.Cleanup(func() { _ = srv.Close(); <-done })
	return ln.Addr().String()
}

// closedWithin reports whether the server closes c within d.
func closedWithin(c net.Conn, d time.Duration) bool {
	_ = c.SetReadDeadline(time.Now().Add(d))
	_, err := io.Copy(io.Discard, c)
	return !errors.Is(err, os.ErrDeadlineExceeded)
}

// TestServerLimits: a client that sends its body slowly, one that keeps an
// idle connection, and one over the connection cap are all let go.
func TestServerLimits(t *testing.T) {
	addr := serveLimited(t, Limits{ReadTimeout: 300 * time.Millisecond, IdleTimeout: 300 * time.Millisecond})

	// Slow body: headers promise 1000 bytes, one arrives.
	slow, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	_, _ = io.WriteString(slow, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\na")
	if !closedWithin(slow, 3*time.Second) {
		t.Error("a slow body held its connection past the read timeout")
	}

	// Idle keep-alive: one request, then nothing.
	idle, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	_, _ = io.WriteString(idle, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(idle), nil)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("first request: %v %v", resp, err)
	}
	resp.Body.Close()
	if !closedWithin(idle, 3*time.Second) {
		t.Error("an idle keep-alive connection was kept past the idle timeout")
	}

	// The cap (with the default timeouts, so that only the cap lets go):
	// two open connections; a third is closed at once, and once one of the
	// two goes, a new one is served.
	addr = serveLimited(t, Limits{MaxConns: 2})
	var open []net.Conn
	for range 2 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_, _ = io.WriteString(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n") // hold it open
		open = append(open, c)
	}
	time.Sleep(50 * time.Millisecond)
	over, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer over.Close()
	if !closedWithin(over, 250*time.Millisecond) {
		t.Error("a connection over the cap was kept")
	}
	open[0].Close()
	time.Sleep(50 * time.Millisecond)
	resp, err = http.Get("http://" + addr + "/")
	if err != nil {
		t.Fatalf("after a slot freed: %v", err)
	}
	resp.Body.Close()
}

func TestServerDefaults(t *testing.T) {
	srv := NewServer(http.NotFoundHandler(), Limits{})
	if srv.ReadHeaderTimeout != defaultReadHeaderTimeout || srv.ReadTimeout != defaultReadTimeout ||
		srv.WriteTimeout != defaultWriteTimeout || srv.IdleTimeout != defaultIdleTimeout || srv.MaxHeaderBytes != defaultMaxHeaderBytes {
		t.Errorf("defaults: %+v", srv)
	}
}
