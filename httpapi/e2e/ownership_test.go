package e2e

import (
	"context"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"
)

// TestCloseAbortsDials: a stream closed while its broadcast still dials an
// ingest that accepts TCP but never speaks RTMP closes at once. The dial
// ends with the stream instead of running out the publish timeout (5 s
// here), and nothing of the stream is left behind (TestMain's leak check).
func TestCloseAbortsDials(t *testing.T) {
	parallel(t, light)
	h := newHarness(t, harnessOptions{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu    sync.Mutex
		conns []net.Conn
	)
	accepted := make(chan struct{}, 1)
	served := make(chan struct{})
	go func() {
		defer close(served)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			select {
			case accepted <- struct{}{}:
			default:
			}
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		<-served
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			_ = c.Close()
		}
	})

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pub, sv := h.offerWithBroadcast(ctx, map[string]any{"output": "rtmp://" + ln.Addr().String() + "/live/silent"})
	if err := pub.SetAnswer(sv.SDP); err != nil {
		t.Fatal(err)
	}
	pub.Start(ctx)
	select {
	case <-accepted: // media flows and the broadcast is dialing
	case <-time.After(15 * time.Second):
		t.Fatal("the gateway never dialed the ingest")
	}
	time.Sleep(200 * time.Millisecond) // inside the RTMP handshake's wait
	began := time.Now()
	if st, raw := h.call("DELETE", "/v1/streams/"+sv.ID, nil, nil); st != http.StatusNoContent {
		t.Fatalf("delete: %d %s", st, raw)
	}
	took := time.Since(began)
	t.Logf("stream closed %v into a dial that would wait 5 s", took)
	if took > 2500*time.Millisecond {
		t.Errorf("closing the stream waited %v for its dial", took)
	}
	h.expectError("GET", "/v1/streams/"+sv.ID, nil, http.StatusNotFound, "NOT_FOUND")
}
