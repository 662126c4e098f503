package e2e

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/castbridge/castbridge/gateway/gatewaytest"
)

// slowIngest is a hostile ingest: it accepts TCP and trickles S0+S1 a byte
// every 100 ms (a full handshake would take minutes), or never answers at
// all. It records how long the gateway kept each connection.
type slowIngest struct {
	ln     net.Listener
	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  []net.Conn
	closed chan time.Duration // one per connection, when the gateway hung up
}

func newSlowIngest(t *testing.T, trickle bool) *slowIngest {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &slowIngest{ln: ln, closed: make(chan time.Duration, 16)}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns = append(s.conns, c)
			s.mu.Unlock()
			s.wg.Add(1)
			go s.serve(c, trickle)
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		s.mu.Lock()
		for _, c := range s.conns {
			_ = c.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
	})
	return s
}

func (s *slowIngest) serve(c net.Conn, trickle bool) {
	defer s.wg.Done()
	start := time.Now()
	gone := make(chan struct{})
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		_, _ = io.Copy(io.Discard, c)
		s.closed <- time.Since(start)
		close(gone)
	}()
	if !trickle {
		<-gone
		return
	}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	s0s1 := append([]byte{3}, make([]byte, 1536)...)
	for i := range s0s1 {
		if _, err := c.Write(s0s1[i : i+1]); err != nil {
			return
		}
		select {
		case <-tick.C:
		case <-gone:
			return
		}
	}
}

// TestSlowIngest: targets added to a live broadcast that point at an
// ingest trickling its handshake, or at one that never answers, fail
// within the publish timeout (5 s here) with the gateway hanging up on
// them; the broadcast's own target keeps every frame meanwhile, and no
// goroutine of theirs is left (TestMain's leak check).
func TestSlowIngest(t *testing.T) {
	parallel(t, light)
	h := newHarness(t, harnessOptions{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, id := h.publish(ctx, gatewaytest.PublisherConfig{VideoFile: testdata("video.h264"), Loop: true})
	ids := h.broadcastTo(id, map[string]any{"output": h.ingestURL() + "/good"})
	goodID := ids[h.ingestURL()+"/good"]
	before := h.waitFrames("good", 15, 10*time.Second)

	const publishTimeout = 5 * time.Second
	trickle, mute := newSlowIngest(t, true), newSlowIngest(t, false)
	var wg sync.WaitGroup
	for name, ing := range map[string]*slowIngest{"trickle": trickle, "mute": mute} {
		wg.Go(func() {
			start := time.Now()
			st, raw := h.call("POST", "/v1/streams/"+id+"/broadcast/targets", map[string]any{"output": "rtmp://" + ing.ln.Addr().String() + "/live/" + name}, nil)
			took := time.Since(start)
			t.Logf("%s ingest: %d after %v: %s", name, st, took, raw)
			if st != http.StatusBadGateway || !strings.Contains(string(raw), `"INGEST_UNREACHABLE"`) {
				t.Errorf("%s ingest: %d %s, want 502 INGEST_UNREACHABLE", name, st, raw)
			}
			if took < publishTimeout-100*time.Millisecond || took > publishTimeout+2*time.Second {
				t.Errorf("%s ingest: the add answered after %v, want the publish timeout %v", name, took, publishTimeout)
			}
			select {
			case held := <-ing.closed:
				t.Logf("%s ingest: the gateway hung up after %v", name, held)
				if held > publishTimeout+2*time.Second {
					t.Errorf("%s ingest: held %v", name, held)
				}
			case <-time.After(3 * time.Second):
				t.Errorf("%s ingest: the gateway kept the connection after the add failed", name)
			}
		})
	}
	wg.Wait()

	// The good target went on meanwhile: frames at the clip's pace (more
	// than 5 s of it arrived, at ≥ 25 fps), none dropped, and it is the
	// only target.
	after := h.waitFrames("good", before+100, 5*time.Second)
	if after < before+100 {
		t.Errorf("the good target got %d frames while the slow ingests were dialed", after-before)
	}
	sent := h.framesSent(id) // errors on any dropped frame
	if len(sent) != 1 || sent[goodID] == 0 {
		t.Errorf("targets after the failed adds: %v, want only %s", sent, goodID)
	}
	h.call("DELETE", "/v1/streams/"+id+"/broadcast", nil, nil)
	if got := h.videoFrames("good"); got < sent[goodID] {
		t.Errorf("the good ingest recorded %d frames, the gateway sent %d", got, sent[goodID])
	}
}
