package httpapi_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/castbridge/castbridge/gateway"
	"github.com/castbridge/castbridge/gateway/cluster"
	"github.com/castbridge/castbridge/gateway/gatewaytest"
	"github.com/castbridge/castbridge/httpapi"
	"github.com/castbridge/castbridge/httpapi/auth"
)

const testClusterSecret = "httpapi-cluster-secret-0123456789"

// noRedirect shows a 307 as it is answered.
var noRedirect = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

func send(t *testing.T, method, url, ctype, body string, hdr map[string]string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := noRedirect.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp, string(raw)
}

// TestHopRefusedOutsideACluster: nobody may pretend to be a node of a
// cluster this gateway is not in.
func TestHopRefusedOutsideACluster(t *testing.T) {
	srv := newServer(t, "")
	resp, body := send(t, http.MethodGet, srv.URL+"/v1/streams", "", "", map[string]string{cluster.HopHeader: "b"})
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "UNAUTHORIZED") {
		t.Fatalf("hop outside a cluster: %d %s", resp.StatusCode, body)
	}
}

// TestClusterNode: one node's API with another node's registry entry
// beside it: placement of a draining node's publishers (307, then 503
// when no node has room), forwarding, hop signatures, readiness and the
// Redis gauge, and an outage.
func TestClusterNode(t *testing.T) {
	rd := gatewaytest.StartRedis(t)
	var m *gateway.Manager
	a, err := cluster.New(cluster.Config{RedisURL: rd.URL(), NodeID: "a", APIURL: "http://127.0.0.1:9", Secret: testClusterSecret, TTL: 900 * time.Millisecond,
		Load: func() cluster.Load { return cluster.Load{Streams: m.Len(), Draining: !m.Ready()} }})
	if err != nil {
		t.Fatal(err)
	}
	srv, mgr := newServerWith(t, func(c *httpapi.Config) { c.Cluster = a }, func(c *gateway.Config) { c.NodeID = "a" })
	m = mgr
	a.Start(context.Background())
	t.Cleanup(func() { _ = a.Close(context.Background()) })
	var bDraining atomic.Bool
	// b is a node whose API is nowhere (port 1 refuses): calls forwarded to
	// it fail; a redirect to it is only a Location.
	b, err := cluster.New(cluster.Config{RedisURL: rd.URL(), NodeID: "b", APIURL: "http://127.0.0.1:1", Secret: testClusterSecret, TTL: 900 * time.Millisecond,
		Load: func() cluster.Load { return cluster.Load{Draining: bDraining.Load()} }})
	if err != nil {
		t.Fatal(err)
	}
	b.Start(context.Background())
	t.Cleanup(func() { _ = b.Close(context.Background()) })

	// Forwarding: a stream b owns is forwarded to b, which is down: 503
	// CLUSTER_UNAVAILABLE with Retry-After, never a 404 or a view.
	if err := b.Claim(context.Background(), "st_onb"); err != nil {
		t.Fatal(err)
	}
	resp, body := send(t, http.MethodGet, srv.URL+"/v1/streams/st_onb/stats", "", "", nil)
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, "CLUSTER_UNAVAILABLE") || resp.Header.Get("Retry-After") == "" {
		t.Errorf("b's stream through a, b down: %d %s", resp.StatusCode, body)
	}
	// A stream no node owns is this node's 404.
	if resp, body := send(t, http.MethodGet, srv.URL+"/v1/streams/st_nobody", "", "", nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("unknown stream: %d %s", resp.StatusCode, body)
	}
	// A hop request is answered here, never forwarded again (no loop):
	// signed by b, it finds no local st_onb and says 404.
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/v1/streams/st_onb", nil)
	b.Sign(req, "192.0.2.1:4000")
	resp, err = noRedirect.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("signed hop for b's stream: %d, want this node's 404", resp.StatusCode)
	}
	// A forged hop is refused.
	resp, body = send(t, http.MethodGet, srv.URL+"/v1/streams/st_onb", "", "", map[string]string{cluster.HopHeader: "b", cluster.AuthHeader: "1.abc"})
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("forged hop: %d %s", resp.StatusCode, body)
	}

	// a drains: new publishers go to b (307, same path), then, b draining
	// too, nowhere (503 LIMIT_EXCEEDED, Retry-After).
	m.Drain()
	resp, body = send(t, http.MethodGet, srv.URL+"/readyz", "", "", nil)
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, `"status":"draining"`) || !strings.Contains(body, `"redis":"up"`) {
		t.Errorf("readyz while draining: %d %s", resp.StatusCode, body)
	}
	for _, path := range []string{"/whip", "/whip/somekey", "/v1/streams"} {
		resp, body = send(t, http.MethodPost, srv.URL+path, "application/sdp", "v=0\r\n", nil)
		if resp.StatusCode != http.StatusTemporaryRedirect || resp.Header.Get("Location") != "http://127.0.0.1:1"+path {
			t.Errorf("POST %s on draining a: %d %q %s", path, resp.StatusCode, resp.Header.Get("Location"), body)
		}
	}
	bDraining.Store(true)
	b.Changed()
	time.Sleep(100 * time.Millisecond)
	resp, body = send(t, http.MethodPost, srv.URL+"/whip", "application/sdp", "v=0\r\n", nil)
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, "LIMIT_EXCEEDED") || resp.Header.Get("Retry-After") == "" {
		t.Errorf("no node with room: %d %s", resp.StatusCode, body)
	}
	if _, body := send(t, http.MethodGet, srv.URL+"/metrics", "", "", nil); !strings.Contains(body, "castbridge_cluster_redis_up 1") ||
		!strings.Contains(body, `castbridge_limit_refusals_total{limit="streams"} 1`) {
		t.Errorf("metrics: %s", body)
	}

	// Redis goes away: a says so (degraded, the gauge), cannot look up
	// b's stream (503, not 404), and cannot place (503).
	rd.Stop()
	deadline := time.Now().Add(3 * time.Second)
	for a.Status().RedisUp && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	_, body = send(t, http.MethodGet, srv.URL+"/readyz", "", "", nil)
	if !strings.Contains(body, `"redis":"unavailable"`) || !strings.Contains(body, `"degraded":true`) || !strings.Contains(body, `"downSince"`) {
		t.Errorf("readyz without Redis: %s", body)
	}
	if _, body := send(t, http.MethodGet, srv.URL+"/metrics", "", "", nil); !strings.Contains(body, "castbridge_cluster_redis_up 0") {
		t.Errorf("metrics without Redis lack the gauge at 0")
	}
	if resp, body := send(t, http.MethodGet, srv.URL+"/v1/streams/st_onb", "", "", nil); resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, "CLUSTER_UNAVAILABLE") {
		t.Errorf("lookup without Redis: %d %s", resp.StatusCode, body)
	}
	if resp, body := send(t, http.MethodPost, srv.URL+"/whip", "application/sdp", "v=0\r\n", nil); resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, "LIMIT_EXCEEDED") {
		t.Errorf("placement without Redis: %d %s", resp.StatusCode, body)
	}
	resp, body = send(t, http.MethodGet, srv.URL+"/v1/streams", "", "", nil)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, `"partial":true`) {
		t.Errorf("list without Redis: %d %s", resp.StatusCode, body)
	}
}

// clusterAPI is one node of a two-node test cluster: its manager, API and
// registry membership, served with the production write timeout shortened.
type clusterAPI struct {
	m    *gateway.Manager
	node *cluster.Node
	url  string
	srv  *http.Server
}

func startClusterAPI(t *testing.T, id, redisURL string, writeTimeout, keepAlive time.Duration, opts ...func(*httpapi.Config)) *clusterAPI {
	t.Helper()
	log := slog.New(slog.NewTextHandler(t.Output(), nil))
	m, err := gateway.NewManager(gateway.Config{ICEIPs: []net.IP{net.IPv4(127, 0, 0, 1).To4()}, NodeID: id, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &clusterAPI{m: m, url: "http://" + ln.Addr().String()}
	c.node, err = cluster.New(cluster.Config{RedisURL: redisURL, NodeID: id, APIURL: c.url, Secret: testClusterSecret,
		Load: func() cluster.Load { return cluster.Load{Streams: m.Len()} }, Streams: func() []string {
			var ids []string
			for _, s := range m.Streams() {
				ids = append(ids, s.ID())
			}
			return ids
		}, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	cfg := httpapi.Config{Manager: m, Cluster: c.node, Logger: log, KeepAlive: keepAlive}
	for _, o := range opts {
		o(&cfg)
	}
	api := httpapi.New(cfg)
	srv := httpapi.NewServer(api, httpapi.Limits{WriteTimeout: writeTimeout, ReadTimeout: writeTimeout})
	srv.RegisterOnShutdown(api.EndForwarded)
	c.srv = srv
	done := make(chan struct{})
	go func() { _ = srv.Serve(ln); close(done) }()
	c.node.Start(context.Background())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = m.Shutdown(ctx)
		_ = c.node.Close(ctx)
		_ = srv.Shutdown(ctx)
		<-done
		api.Close()
	})
	return c
}

// TestForwardedEventsOutliveTimeouts: an event stream forwarded to the
// owner lasts past the forwarding node's read and write timeouts, as a
// local one does, with the owner's keep-alives coming through as they are
// sent.
func TestForwardedEventsOutliveTimeouts(t *testing.T) {
	rd := gatewaytest.StartRedis(t)
	const timeout = 700 * time.Millisecond
	owner := startClusterAPI(t, "owner", rd.URL(), timeout, 200*time.Millisecond)
	front := startClusterAPI(t, "front", rd.URL(), timeout, 200*time.Millisecond)
	body, _ := json.Marshal(map[string]string{"sdp": offer(t)})
	resp, raw := send(t, http.MethodPost, owner.url+"/v1/streams", "application/json", string(body), nil)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("create: %d %s", resp.StatusCode, raw)
	}
	var created struct{ ID string }
	_ = json.Unmarshal([]byte(raw), &created)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, front.url+"/v1/streams/"+created.ID+"/events", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("events through front: %v %v", err, resp)
	}
	defer resp.Body.Close()
	lines := make(chan time.Time, 64)
	var wg sync.WaitGroup
	wg.Go(func() {
		defer close(lines)
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), ":") { // a keep-alive comment
				lines <- time.Now()
			}
		}
	})
	start := time.Now()
	var last time.Time
	n := 0
	for at := range lines {
		n, last = n+1, at
		if at.Sub(start) > 4*timeout {
			break
		}
	}
	cancel()
	wg.Wait()
	if last.Sub(start) < 4*timeout || n < 8 {
		t.Fatalf("the forwarded event stream gave %d keep-alives and ended %v in (timeouts %v)", n, last.Sub(start), timeout)
	}
	t.Logf("%d keep-alives over %v through the forwarding node (its timeouts %v)", n, last.Sub(start).Round(time.Millisecond), timeout)
}

// TestForwardNeedsACredential: with authentication configured, a WHIP
// session call for another node's stream without a credential is this
// node's 401, not a hop; with the API key it is forwarded.
func TestForwardNeedsACredential(t *testing.T) {
	rd := gatewaytest.StartRedis(t)
	a, err := cluster.New(cluster.Config{RedisURL: rd.URL(), NodeID: "a", APIURL: "http://127.0.0.1:9", Secret: testClusterSecret})
	if err != nil {
		t.Fatal(err)
	}
	srv, _ := newServerWith(t, func(c *httpapi.Config) { c.Cluster, c.APIKey = a, "the-api-key-0123456789" })
	a.Start(context.Background())
	t.Cleanup(func() { _ = a.Close(context.Background()) })
	b, err := cluster.New(cluster.Config{RedisURL: rd.URL(), NodeID: "b", APIURL: "http://127.0.0.1:1", Secret: testClusterSecret})
	if err != nil {
		t.Fatal(err)
	}
	b.Start(context.Background())
	t.Cleanup(func() { _ = b.Close(context.Background()) })
	if err := b.Claim(context.Background(), "st_onb"); err != nil {
		t.Fatal(err)
	}
	for _, auth := range []string{"", "Bearer wrong"} {
		resp, body := send(t, http.MethodDelete, srv.URL+"/whip/st_onb", "", "", map[string]string{"Authorization": auth})
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("DELETE with %q: %d %s", auth, resp.StatusCode, body)
		}
	}
	// The API key passes here; b is down, so the forward is 503.
	resp, body := send(t, http.MethodDelete, srv.URL+"/whip/st_onb", "", "", map[string]string{"Authorization": "Bearer the-api-key-0123456789"})
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, "CLUSTER_UNAVAILABLE") {
		t.Errorf("DELETE with the API key: %d %s", resp.StatusCode, body)
	}
}

// TestForwardedCallerAddress: the owner's authorization webhook is told
// the address of the caller who came to the forwarding node, not the
// forwarding node's: the signed X-Castbridge-Remote-Addr.
func TestForwardedCallerAddress(t *testing.T) {
	rd := gatewaytest.StartRedis(t)
	var mu sync.Mutex
	var asked []auth.Request
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req auth.Request
		_ = json.NewDecoder(r.Body).Decode(&req)
		mu.Lock()
		asked = append(asked, req)
		mu.Unlock()
		if req.Action == auth.ActionBroadcast {
			w.WriteHeader(http.StatusForbidden) // nothing to dial: the question is what matters
		}
	}))
	defer hook.Close()
	wh := auth.NewWebhook(hook.URL, 3*time.Second)
	defer wh.Close()
	owner := startClusterAPI(t, "owner", rd.URL(), 30*time.Second, 0, func(c *httpapi.Config) { c.AuthWebhook = wh })
	front := startClusterAPI(t, "front", rd.URL(), 30*time.Second, 0)
	body, _ := json.Marshal(map[string]string{"sdp": offer(t)})
	resp, raw := send(t, http.MethodPost, owner.url+"/v1/streams", "application/json", string(body), nil)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("create: %d %s", resp.StatusCode, raw)
	}
	var created struct{ ID string }
	_ = json.Unmarshal([]byte(raw), &created)

	var local string
	ctx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{GotConn: func(ci httptrace.GotConnInfo) {
		local = ci.Conn.LocalAddr().String()
	}})
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, front.url+"/v1/streams/"+created.ID+"/broadcast",
		strings.NewReader(`{"transcodingTargets": {"output": "rtmp://192.0.2.1/live/key"}}`))
	req.Header.Set("Content-Type", "application/json")
	resp, err := (&http.Client{Transport: &http.Transport{}}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("broadcast through front: %d, want the owner's webhook's 403", resp.StatusCode)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(asked) != 2 || asked[1].Action != auth.ActionBroadcast || asked[1].RemoteAddr != local || local == "" {
		t.Fatalf("webhook asked %+v; the caller was %s", asked, local)
	}
}

// TestForwardedEventsEndAtShutdown: a node shutting down does not wait for
// the event streams it forwards (their streams live on other nodes): they
// end at once and Shutdown returns.
func TestForwardedEventsEndAtShutdown(t *testing.T) {
	rd := gatewaytest.StartRedis(t)
	owner := startClusterAPI(t, "owner", rd.URL(), 30*time.Second, 200*time.Millisecond)
	front := startClusterAPI(t, "front", rd.URL(), 30*time.Second, 200*time.Millisecond)
	body, _ := json.Marshal(map[string]string{"sdp": offer(t)})
	resp, raw := send(t, http.MethodPost, owner.url+"/v1/streams", "application/json", string(body), nil)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("create: %d %s", resp.StatusCode, raw)
	}
	var created struct{ ID string }
	_ = json.Unmarshal([]byte(raw), &created)
	resp, err := http.Get(front.url + "/v1/streams/" + created.ID + "/events")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("events through front: %v %v", err, resp)
	}
	defer resp.Body.Close()
	ended := make(chan struct{})
	go func() { _, _ = io.Copy(io.Discard, resp.Body); close(ended) }()
	time.Sleep(300 * time.Millisecond)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	if err := front.srv.Shutdown(ctx); err != nil {
		t.Fatalf("front's shutdown with a forwarded event stream open: %v after %v", err, time.Since(start))
	}
	took := time.Since(start)
	select {
	case <-ended:
	case <-time.After(2 * time.Second):
		t.Fatal("the forwarded event stream is still open after the shutdown")
	}
	if took > time.Second {
		t.Errorf("front's shutdown took %v", took)
	}
	if st, _ := owner.m.Stream(created.ID); st == nil {
		t.Error("the owner's stream ended with the front's shutdown")
	}
}

// TestForwardedCORS: a browser's call through another node gets one set of
// CORS headers (the node it came to), not the owner's as well.
func TestForwardedCORS(t *testing.T) {
	rd := gatewaytest.StartRedis(t)
	origins := func(c *httpapi.Config) { c.CORSOrigins = []string{"https://app.example"} }
	owner := startClusterAPI(t, "owner", rd.URL(), 30*time.Second, 0, origins)
	front := startClusterAPI(t, "front", rd.URL(), 30*time.Second, 0, origins)
	body, _ := json.Marshal(map[string]string{"sdp": offer(t)})
	resp, raw := send(t, http.MethodPost, owner.url+"/v1/streams", "application/json", string(body), nil)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("create: %d %s", resp.StatusCode, raw)
	}
	var created struct{ ID string }
	_ = json.Unmarshal([]byte(raw), &created)
	resp, raw = send(t, http.MethodGet, front.url+"/v1/streams/"+created.ID, "", "", map[string]string{"Origin": "https://app.example"})
	if resp.StatusCode != http.StatusOK || !strings.Contains(raw, `"node":"owner"`) {
		t.Fatalf("through front: %d %s", resp.StatusCode, raw)
	}
	if got := resp.Header.Values("Access-Control-Allow-Origin"); len(got) != 1 || got[0] != "https://app.example" {
		t.Errorf("Access-Control-Allow-Origin through front: %q", got)
	}
	if got := resp.Header.Values("Access-Control-Expose-Headers"); len(got) != 1 {
		t.Errorf("Access-Control-Expose-Headers through front: %q", got)
	}
}
