package rtmppush_test

import (
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/castbridge/castbridge/transmux/rtmp/rtmppush"
)

// trickleIngest accepts one connection and trickles what it sends, a byte
// every interval: with full, the whole S0+S1+S2 and then the start of a
// chunk that never completes; without, S0+S1+S2 only. It never finishes
// anything the client waits for. closed receives when the client hung up.
func trickleIngest(t *testing.T, full bool, interval time.Duration) (string, <-chan time.Time) {
	t.Helper()
	closed := make(chan time.Time, 1)
	addr := fakeIngest(t, func(c net.Conn, c1 []byte) {
		out := s0s1s2(c1)
		if full {
			// The chunk header of a 200-byte command on csid 3, and no more.
			out = append(out, 0x03, 0, 0, 0, 0, 0, 200, 20, 0, 0, 0, 0, 0x02, 0, 7)
		} else {
			out = out[:1+1536] // S0+S1, never S2
		}
		gone := make(chan struct{})
		go func() {
			_, _ = io.Copy(io.Discard, c) // C2, connect...: until the client hangs up
			closed <- time.Now()
			close(gone)
		}()
		defer func() { c.Close(); <-gone }() // joined before fakeIngest's goroutine ends
		start := 0
		if full {
			start = 1 + 2*1536 // the handshake at once, then the trickle
			if _, err := c.Write(out[:start]); err != nil {
				return
			}
		}
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for i := start; i < len(out); i++ {
			if _, err := c.Write(out[i : i+1]); err != nil {
				return
			}
			select {
			case <-tick.C:
			case <-gone:
				return
			}
		}
		<-gone
	})
	return addr, closed
}

// TestSlowIngest: an ingest that trickles its handshake a byte at a time,
// or completes it and then trickles a reply that never ends, fails the
// dial with ErrTimeout at the publish timeout (one deadline for the whole
// sequence, which bytes arriving do not push back); the connection is
// closed, and the reader goroutine has ended (TestMain's leak check).
func TestSlowIngest(t *testing.T) {
	const timeout = 400 * time.Millisecond
	for _, tc := range []struct {
		name string
		full bool
	}{{"trickled handshake", false}, {"trickled connect reply", true}} {
		t.Run(tc.name, func(t *testing.T) {
			addr, closed := trickleIngest(t, tc.full, 40*time.Millisecond)
			start := time.Now()
			p, err := rtmppush.Dial(context.Background(), rtmppush.Config{Endpoint: endpoint(t, "rtmp://"+addr+"/live/key"), PublishTimeout: timeout})
			took := time.Since(start)
			if err == nil {
				p.Close()
				t.Fatal("the dial succeeded")
			}
			if !errors.Is(err, rtmppush.ErrTimeout) {
				t.Fatalf("err = %v, want ErrTimeout", err)
			}
			if took < timeout || took > timeout+time.Second {
				t.Errorf("the dial failed after %v, want about %v", took, timeout)
			}
			select {
			case at := <-closed:
				if d := at.Sub(start); d > timeout+time.Second {
					t.Errorf("the connection was closed %v after the dial began", d)
				}
			case <-time.After(3 * time.Second):
				t.Fatal("the failed dial left its connection open")
			}
			t.Logf("%s: ErrTimeout after %v (publish timeout %v)", tc.name, took, timeout)
		})
	}
}
