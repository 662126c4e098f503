package cluster_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/castbridge/castbridge/gateway/cluster"
	"github.com/castbridge/castbridge/gateway/gatewaytest"
	"go.uber.org/goleak"
)

const secret = "0123456789abcdef-cluster"

// redisProcess ignores the goroutines waiting on redis-server, which
// t.Cleanup ends after the leak check.
var redisProcess = []goleak.Option{goleak.IgnoreCurrent(),
	goleak.IgnoreAnyFunction("github.com/castbridge/castbridge/gateway/gatewaytest.(*Redis).start.func1"),
	goleak.IgnoreAnyFunction("os/exec.(*Cmd).Start.func2")}

// fakeGateway is a node's load and streams, as the manager reports them.
type fakeGateway struct {
	mu       sync.Mutex
	streams  []string
	max      int
	draining bool
}

func (g *fakeGateway) load() cluster.Load {
	g.mu.Lock()
	defer g.mu.Unlock()
	return cluster.Load{Streams: len(g.streams), MaxStreams: g.max, Draining: g.draining}
}

func (g *fakeGateway) ids() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.streams)
}

func (g *fakeGateway) set(f func(g *fakeGateway)) {
	g.mu.Lock()
	f(g)
	g.mu.Unlock()
}

func newNode(t *testing.T, url, id string, ttl time.Duration, g *fakeGateway) *cluster.Node {
	t.Helper()
	n, err := cluster.New(cluster.Config{RedisURL: url, NodeID: id, APIURL: "http://" + id + ".test:8080", Secret: secret,
		TTL: ttl, Load: g.load, Streams: g.ids})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func waitFor(t *testing.T, what string, within time.Duration, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > within {
			t.Fatalf("%s: not within %v", what, within)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return time.Since(start)
}

// TestRegistry: nodes register with their load, own their streams, place
// publishers on the least-loaded node with room, and a node that stops
// heartbeating (as a killed one) leaves the registry with its streams
// within the TTL; one that closes leaves at once.
func TestRegistry(t *testing.T) {
	defer goleak.VerifyNone(t, redisProcess...)
	rd := gatewaytest.StartRedis(t)
	ctx := context.Background()
	const ttl = 900 * time.Millisecond
	ga, gb, gc := &fakeGateway{max: 1}, &fakeGateway{}, &fakeGateway{}
	a, b, c := newNode(t, rd.URL(), "a", ttl, ga), newNode(t, rd.URL(), "b", ttl, gb), newNode(t, rd.URL(), "c", ttl, gc)
	for _, n := range []*cluster.Node{a, b, c} {
		n.Start(ctx)
	}
	defer a.Close(ctx)
	defer c.Close(ctx)

	nodes, err := a.Nodes(ctx)
	if err != nil || len(nodes) != 3 || nodes[0].ID != "a" || nodes[1].APIURL != "http://b.test:8080" || nodes[0].MaxStreams != 1 {
		t.Fatalf("nodes: %+v %v", nodes, err)
	}
	if st := a.Status(); !st.RedisUp || st.Node != "a" {
		t.Fatalf("status: %+v", st)
	}

	// a takes one stream: claimed at once, then full.
	ga.set(func(g *fakeGateway) { g.streams = []string{"st_a1"} })
	if err := a.Claim(ctx, "st_a1"); err != nil {
		t.Fatal(err)
	}
	a.Changed()
	gb.set(func(g *fakeGateway) { g.streams = []string{"st_b1", "st_b2"} })
	b.Changed()
	waitFor(t, "b's streams registered", time.Second, func() bool {
		o, err := c.Owner(ctx, "st_b2")
		return err == nil && o.ID == "b"
	})
	if o, err := b.Owner(ctx, "st_a1"); err != nil || o.ID != "a" || o.APIURL != "http://a.test:8080" {
		t.Fatalf("owner of st_a1: %+v %v", o, err)
	}
	if _, err := a.Owner(ctx, "st_none"); !errors.Is(err, cluster.ErrNotFound) {
		t.Fatalf("unknown stream: %v", err)
	}
	// Least loaded with room: from a, c (0 streams) over b (2).
	waitFor(t, "loads reported", time.Second, func() bool {
		p, err := a.Place(ctx)
		return err == nil && p.ID == "c"
	})
	// c drains: it leaves placement at once; b is next.
	gc.set(func(g *fakeGateway) { g.draining = true })
	c.Changed()
	waitFor(t, "c out of placement", 300*time.Millisecond, func() bool {
		p, err := a.Place(ctx)
		return err == nil && p.ID == "b"
	})
	// From b, a is full and c draining: no room.
	if p, err := b.Place(ctx); !errors.Is(err, cluster.ErrNoRoom) {
		t.Fatalf("b's placement: %+v %v", p, err)
	}

	// A stream claimed and gone before any heartbeat saw it loses its key
	// at the next one.
	if err := c.Claim(ctx, "st_brief"); err != nil {
		t.Fatal(err)
	}
	c.Changed()
	waitFor(t, "st_brief's key deleted", 300*time.Millisecond, func() bool {
		_, err := a.Owner(ctx, "st_brief")
		return errors.Is(err, cluster.ErrNotFound)
	})
	// A stream that ends loses its key at once.
	gb.set(func(g *fakeGateway) { g.streams = []string{"st_b2"} })
	b.Changed()
	waitFor(t, "st_b1's key deleted", 300*time.Millisecond, func() bool {
		_, err := a.Owner(ctx, "st_b1")
		return errors.Is(err, cluster.ErrNotFound)
	})

	// b dies: its heartbeat stops (Close would deregister, so stop it by
	// closing its Redis view of nothing: a node whose process is killed
	// writes nothing more). Simulated here by a Close with a dead context,
	// which stops the heartbeat and cannot delete anything.
	dead, cancel := context.WithCancel(ctx)
	cancel()
	_ = b.Close(dead)
	gone := waitFor(t, "b gone", ttl+500*time.Millisecond, func() bool {
		_, err := a.Owner(ctx, "st_b2")
		nodes, _ := a.Nodes(ctx)
		return errors.Is(err, cluster.ErrNotFound) && len(nodes) == 2
	})
	t.Logf("a node that stopped heartbeating was gone after %v (TTL %v)", gone, ttl)

	// c closes cleanly: it leaves at once.
	if err := c.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if nodes, _ := a.Nodes(ctx); len(nodes) != 1 || nodes[0].ID != "a" {
		t.Fatalf("after c closed: %+v", nodes)
	}
}

// TestRedisOutage: with Redis gone the node reports it, lookups say
// unavailable (not "not found"), and when Redis returns, empty, the node
// registers itself and its streams again.
func TestRedisOutage(t *testing.T) {
	defer goleak.VerifyNone(t, redisProcess...)
	rd := gatewaytest.StartRedis(t)
	ctx := context.Background()
	ga := &fakeGateway{streams: []string{"st_1", "st_2"}}
	a := newNode(t, rd.URL(), "a", 600*time.Millisecond, ga)
	a.Start(ctx)
	defer a.Close(ctx)
	if o, err := a.Owner(ctx, "st_2"); err != nil || o.ID != "a" {
		t.Fatalf("owner: %+v %v", o, err)
	}
	rd.Stop()
	waitFor(t, "outage noticed", 2*time.Second, func() bool { return !a.Status().RedisUp })
	if st := a.Status(); st.DownSince.IsZero() {
		t.Errorf("no downSince: %+v", st)
	}
	if _, err := a.Owner(ctx, "st_1"); !errors.Is(err, cluster.ErrUnavailable) {
		t.Errorf("owner during the outage: %v", err)
	}
	if _, err := a.Place(ctx); !errors.Is(err, cluster.ErrUnavailable) {
		t.Errorf("placement during the outage: %v", err)
	}
	rd.Start() // a new, empty server
	back := waitFor(t, "re-registered", 2*time.Second, func() bool {
		o, err := a.Owner(ctx, "st_1")
		return err == nil && o.ID == "a" && a.Status().RedisUp
	})
	t.Logf("re-registered %v after Redis came back", back)
}

// TestSignature: a signed request verifies on a node with the same secret,
// and not with another secret, nor once its method, path or caller
// address was changed, nor without the hop.
func TestSignature(t *testing.T) {
	g := &fakeGateway{}
	a := newNode(t, "redis://127.0.0.1:1/0", "a", 0, g)
	b := newNode(t, "redis://127.0.0.1:1/0", "b", 0, g)
	other, err := cluster.New(cluster.Config{RedisURL: "redis://127.0.0.1:1/0", NodeID: "x", APIURL: "http://x", Secret: "another-secret-of-16+"})
	if err != nil {
		t.Fatal(err)
	}
	mk := func() *http.Request {
		r := httptest.NewRequest(http.MethodGet, "http://b.test:8080/v1/streams/st_1/stats?x=1", nil)
		a.Sign(r, "198.51.100.7:5000")
		return r
	}
	r := mk()
	if node, remote, err := b.Verify(r); err != nil || node != "a" || remote != "198.51.100.7:5000" {
		t.Fatalf("verify: %q %q %v", node, remote, err)
	}
	if _, _, err := other.Verify(mk()); !errors.Is(err, cluster.ErrBadSignature) {
		t.Errorf("another secret: %v", err)
	}
	for name, change := range map[string]func(r *http.Request){
		"method": func(r *http.Request) { r.Method = http.MethodDelete },
		"path":   func(r *http.Request) { r.URL.Path = "/v1/streams/st_2/stats" },
		"query":  func(r *http.Request) { r.URL.RawQuery = "x=2" },
		"remote": func(r *http.Request) { r.Header.Set(cluster.RemoteAddrHeader, "203.0.113.1:1") },
		"node":   func(r *http.Request) { r.Header.Set(cluster.HopHeader, "c") },
		"no sig": func(r *http.Request) { r.Header.Del(cluster.AuthHeader) },
		"junk":   func(r *http.Request) { r.Header.Set(cluster.AuthHeader, "abc") },
	} {
		r := mk()
		change(r)
		if _, _, err := b.Verify(r); !errors.Is(err, cluster.ErrBadSignature) {
			t.Errorf("%s changed: %v", name, err)
		}
	}
	for _, cfg := range []cluster.Config{
		{RedisURL: "redis://127.0.0.1:1", NodeID: "a", APIURL: "http://a", Secret: "short"},
		{RedisURL: "http://127.0.0.1:1", NodeID: "a", APIURL: "http://a", Secret: secret},
		{RedisURL: "redis://127.0.0.1:1", APIURL: "http://a", Secret: secret},
	} {
		if _, err := cluster.New(cfg); err == nil {
			t.Errorf("accepted %+v", cfg)
		}
	}
	_, err = cluster.New(cluster.Config{RedisURL: "redis://u:S3CRETPW@[::1", NodeID: "a", APIURL: "http://a", Secret: secret})
	if err == nil || strings.Contains(err.Error(), "S3CRETPW") {
		t.Errorf("bad URL: %v", err)
	}
}
