package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

type sseEvent struct {
	id, name string
	data     map[string]any
}

// sseClient reads a stream's events in the background.
type sseClient struct {
	mu         sync.Mutex
	events     []sseEvent
	keepAlives int
	done       chan struct{}
	cancel     context.CancelFunc
}

func (h *harness) listen(id, query string) *sseClient {
	h.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", h.srv.URL+"/v1/streams/"+id+"/events"+query, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		h.t.Fatalf("events: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	c := &sseClient{done: make(chan struct{}), cancel: cancel}
	go func() {
		defer close(c.done)
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		var cur sseEvent
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if cur.name != "" {
					c.mu.Lock()
					c.events = append(c.events, cur)
					c.mu.Unlock()
				}
				cur = sseEvent{}
			case strings.HasPrefix(line, ": keep-alive"):
				c.mu.Lock()
				c.keepAlives++
				c.mu.Unlock()
			case strings.HasPrefix(line, "id: "):
				cur.id = line[4:]
			case strings.HasPrefix(line, "event: "):
				cur.name = line[7:]
			case strings.HasPrefix(line, "data: "):
				_ = json.Unmarshal([]byte(line[6:]), &cur.data)
			}
		}
	}()
	h.t.Cleanup(c.close)
	return c
}

func (c *sseClient) close() {
	c.cancel()
	<-c.done
}

func (c *sseClient) names(skipStats bool) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, e := range c.events {
		if skipStats && e.name == "ReceivedWebRTCStats" {
			continue
		}
		out = append(out, e.name)
	}
	return out
}

func (c *sseClient) all() []sseEvent {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]sseEvent(nil), c.events...)
}

// waitFor waits until an event of that name arrived.
func (c *sseClient) waitFor(t *testing.T, name string, timeout time.Duration) sseEvent {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		for _, e := range c.all() {
			if e.name == name {
				return e
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no %s event within %v; got %v", name, timeout, c.names(true))
	return sseEvent{}
}
