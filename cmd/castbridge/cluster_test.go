package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"go.uber.org/goleak"

	"github.com/castbridge/castbridge/gateway/gatewaytest"
	"github.com/castbridge/castbridge/httpapi/auth"
	"github.com/castbridge/castbridge/transmux/format/mediafile"
	"github.com/castbridge/castbridge/transmux/rtmp/ingest"
)

// childEnv makes the test binary run castbridge's main instead of the
// tests: the cluster test starts real processes (SIGKILL and SIGTERM are
// part of what it tests) without a separate build.
const childEnv = "CASTBRIDGE_TEST_RUN_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

const (
	clusterAPIKey      = "cluster-test-api-key-0123456789"
	clusterSecret      = "cluster-test-node-secret-0123456789"
	clusterTokenSecret = "cluster-test-token-secret-of-32-bytes!"
)

// clusterNode is one castbridge process of the test's cluster.
type clusterNode struct {
	id   string
	base string
	cmd  *exec.Cmd
	logs *gatewaytest.SyncBuffer
	done chan struct{}
	err  error
}

func startClusterNode(t *testing.T, id, redisURL string, extra ...string) *clusterNode {
	t.Helper()
	addr := freeAddr(t)
	n := &clusterNode{id: id, base: "http://" + addr, logs: &gatewaytest.SyncBuffer{}, done: make(chan struct{})}
	args := append([]string{"--http-addr", addr, "--advertise-url", n.base, "--node-id", id, "--redis", redisURL,
		"--cluster-ttl", "2s", "--ice-udp-port", "0", "--ice-ips", "127.0.0.1", "--local-ingest", "", "--api-key", clusterAPIKey,
		"--token-secret", clusterTokenSecret, "--log-level", "info"}, extra...)
	n.cmd = exec.Command(os.Args[0], args...)
	n.cmd.Env = append(os.Environ(), childEnv+"=1", "CASTBRIDGE_CLUSTER_SECRET="+clusterSecret)
	n.cmd.Stdout, n.cmd.Stderr = n.logs, n.logs
	if err := n.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { n.err = n.cmd.Wait(); close(n.done) }()
	t.Cleanup(func() {
		n.kill(syscall.SIGKILL)
		if t.Failed() {
			t.Logf("node %s's log:\n%s", id, n.logs.String())
		}
	})
	for i := 0; ; i++ {
		if st, _, _ := call(t, http.MethodGet, n.base+"/readyz", "", ""); st == http.StatusOK {
			return n
		}
		select {
		case <-n.done:
			t.Fatalf("node %s exited: %v\n%s", id, n.err, n.logs.String())
		default:
		}
		if i > 200 {
			t.Fatalf("node %s not ready\n%s", id, n.logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (n *clusterNode) kill(sig syscall.Signal) {
	select {
	case <-n.done:
		return
	default:
	}
	_ = n.cmd.Process.Signal(sig)
	if sig == syscall.SIGKILL {
		<-n.done
	}
}

// call makes one request with the API key (or the given bearer token) and
// returns the status, headers and body. Redirects are followed as any
// HTTP client does.
func call(t *testing.T, method, url, body, bearer string) (int, http.Header, string) {
	t.Helper()
	if bearer == "" {
		bearer = clusterAPIKey
	}
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+bearer)
	if strings.HasPrefix(body, "v=0") {
		req.Header.Set("Content-Type", "application/sdp")
	} else if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err.Error()
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	resp.Header.Set("X-Test-Final-URL", resp.Request.URL.String())
	return resp.StatusCode, resp.Header, string(raw)
}

// ingestLog is what the test's RTMP ingest saw of each stream name: video
// messages with their arrival times, and the commands.
type ingestLog struct {
	mu       sync.Mutex
	video    map[string][]time.Time
	commands map[string][]string
	meta     map[string]int
}

func (l *ingestLog) onMessage(stream string, m ingest.Message) {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case m.Type == 9:
		l.video[stream] = append(l.video[stream], time.Now())
	case m.Handler == "onCuePoint":
		l.meta[stream]++
	}
}

func (l *ingestLog) onCommand(stream, cmd string) {
	l.mu.Lock()
	l.commands[stream] = append(l.commands[stream], cmd)
	l.mu.Unlock()
}

// frames is the number of video messages of stream and the longest gap
// between two of them within [from, to].
func (l *ingestLog) frames(stream string, from, to time.Time) (n int, maxGap time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var prev time.Time
	for _, at := range l.video[stream] {
		if at.Before(from) || at.After(to) {
			continue
		}
		n++
		if !prev.IsZero() && at.Sub(prev) > maxGap {
			maxGap = at.Sub(prev)
		}
		prev = at
	}
	return n, maxGap
}

func (l *ingestLog) saw(stream, cmd string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Contains(l.commands[stream], cmd)
}

func (l *ingestLog) lastFrame(stream string) time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	v := l.video[stream]
	if len(v) == 0 {
		return time.Time{}
	}
	return v[len(v)-1]
}

// publisher is a pion WHIP/API publisher of looping H.264 (video only,
// light on the two cores).
type publisher struct {
	pub    *gatewaytest.Publisher
	cancel context.CancelFunc
}

func newPublisher(t *testing.T) (*publisher, string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pub, err := gatewaytest.NewPublisher(gatewaytest.PublisherConfig{VideoFile: mediafile.TestdataPath("video.h264"), Loop: true})
	if err != nil {
		t.Fatal(err)
	}
	p := &publisher{pub: pub, cancel: cancel}
	t.Cleanup(p.stop)
	offer, err := pub.Offer(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return p, offer
}

func (p *publisher) start(t *testing.T, answer string) {
	t.Helper()
	if err := p.pub.SetAnswer(answer); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	prev := p.cancel
	p.cancel = func() { prev(); cancel() }
	p.pub.Start(ctx)
}

func (p *publisher) stop() {
	p.cancel()
	_ = p.pub.Close()
	p.pub.Wait()
}

// whip publishes through node base (following a redirect) and returns the
// stream id and the node URL that answered.
func whip(t *testing.T, base, bearer string) (id, answeredBy string, p *publisher) {
	t.Helper()
	p, offer := newPublisher(t)
	st, h, body := call(t, http.MethodPost, base+"/whip", offer, bearer)
	if st != http.StatusCreated || !strings.HasPrefix(h.Get("Location"), "/whip/") {
		t.Fatalf("whip through %s: %d %s", base, st, body)
	}
	p.start(t, body)
	final := h.Get("X-Test-Final-URL")
	return strings.TrimPrefix(h.Get("Location"), "/whip/"), strings.TrimSuffix(final, "/whip"), p
}

// broadcast starts a broadcast of stream id to the test ingest through
// node base, waiting for the publisher's media.
func broadcast(t *testing.T, base, id, ingestAddr, name string) {
	t.Helper()
	body := `{"transcodingTargets": {"output": "rtmp://` + ingestAddr + `/live/` + name + `"}}`
	for i := 0; ; i++ {
		st, _, raw := call(t, http.MethodPost, base+"/v1/streams/"+id+"/broadcast", body, "")
		if st == http.StatusCreated {
			if !strings.Contains(raw, `"state":"live"`) && !strings.Contains(raw, `"state":"connecting"`) {
				t.Fatalf("broadcast %s: %s", name, raw)
			}
			return
		}
		if i > 100 || st != http.StatusConflict {
			t.Fatalf("broadcast %s through %s: %d %s", name, base, st, raw)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

type streamView struct {
	ID    string `json:"id"`
	Name  string `json:"name"`
	State string `json:"state"`
	Node  string `json:"node"`
}

func view(t *testing.T, base, id, bearer string) (int, streamView) {
	t.Helper()
	st, _, raw := call(t, http.MethodGet, base+"/v1/streams/"+id, "", bearer)
	var v streamView
	if st == http.StatusOK {
		if err := json.Unmarshal([]byte(raw), &v); err != nil {
			t.Fatalf("view: %v %s", err, raw)
		}
	}
	return st, v
}

func list(t *testing.T, base, bearer string) map[string]string {
	t.Helper()
	got, partial := listPartial(t, base, bearer)
	if partial {
		t.Fatalf("list through %s: partial: %v", base, got)
	}
	return got
}

// listPartial lists the cluster through base and says whether a node did
// not answer.
func listPartial(t *testing.T, base, bearer string) (map[string]string, bool) {
	t.Helper()
	st, _, raw := call(t, http.MethodGet, base+"/v1/streams", "", bearer)
	var body struct {
		Streams []streamView `json:"streams"`
		Partial bool         `json:"partial"`
	}
	if st != http.StatusOK || json.Unmarshal([]byte(raw), &body) != nil {
		t.Fatalf("list through %s: %d %s", base, st, raw)
	}
	out := map[string]string{}
	for _, s := range body.Streams {
		out[s.ID] = s.Node
	}
	return out, body.Partial
}

func until(t *testing.T, what string, within time.Duration, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > within {
			t.Fatalf("%s: not within %v", what, within)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return time.Since(start)
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

// TestCluster runs three castbridge processes and one redis-server on
// loopback, as issue 16 asks: a stream published through A is controlled
// through B and C (broadcast, metadata, stats, SSE, list, DELETE); a full
// node redirects and the publisher lands on another; Redis stopped and
// restarted: nodes keep their streams and register again; SIGKILL on B:
// its streams leave the registry within the TTL while A's and C's keep
// every frame; SIGTERM on A with a live broadcast: new publishers go to C,
// A's broadcast ends cleanly at the drain deadline.
func TestCluster(t *testing.T) {
	rd := gatewaytest.StartRedis(t)
	il := &ingestLog{video: map[string][]time.Time{}, commands: map[string][]string{}, meta: map[string]int{}}
	ing, err := ingest.Listen(ingest.Config{Addr: "127.0.0.1:0", OnMessage: il.onMessage, OnCommand: il.onCommand})
	if err != nil {
		t.Fatal(err)
	}
	ingCtx, ingStop := context.WithCancel(context.Background())
	ingDone := make(chan error, 1)
	go func() { ingDone <- ing.Serve(ingCtx) }()
	defer func() { ingStop(); <-ingDone }()
	ingAddr := ing.Addr().String()

	// One relays file for every node, as docs/cluster.md says.
	const relayKey = "cluster-relay-key-0123456789"
	relays := filepath.Join(t.TempDir(), "relays.yaml")
	if err := os.WriteFile(relays, []byte("relays:\n  - key: "+relayKey+"\n    targets:\n      - output: rtmp://"+ingAddr+"/live/relayed\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	const drainTimeout = 4 * time.Second
	a := startClusterNode(t, "a", rd.URL(), "--config", relays, "--drain-timeout", drainTimeout.String(), "--shutdown-timeout", "5s")
	b := startClusterNode(t, "b", rd.URL(), "--config", relays, "--max-streams", "1")
	c := startClusterNode(t, "c", rd.URL(), "--config", relays)

	// 1. Publish through A, control through B and C.
	sa, by, _ := whip(t, a.base, "")
	if by != a.base {
		t.Fatalf("A has room but the publisher landed on %s", by)
	}
	broadcast(t, b.base, sa, ingAddr, "sa") // through B
	if st, v := view(t, c.base, sa, ""); st != http.StatusOK || v.Node != "a" || v.State != "live" {
		t.Fatalf("A's stream through C: %d %+v", st, v)
	}
	if got := list(t, b.base, ""); got[sa] != "a" {
		t.Fatalf("list through B: %v", got)
	}
	// SSE through C, streamed as it comes.
	sseCtx, sseStop := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(sseCtx, http.MethodGet, c.base+"/v1/streams/"+sa+"/events?stats=500", nil)
	req.Header.Set("Authorization", "Bearer "+clusterAPIKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("events through C: %v %v", err, resp)
	}
	events := make(chan string, 64)
	var sseWG sync.WaitGroup
	sseWG.Go(func() {
		defer close(events)
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if name, ok := strings.CutPrefix(sc.Text(), "event: "); ok {
				select {
				case events <- name:
				default:
				}
			}
		}
	})
	waitEvent := func(name string) time.Duration {
		start := time.Now()
		timeout := time.After(5 * time.Second)
		for {
			select {
			case ev, ok := <-events:
				if !ok {
					t.Fatalf("event stream through C ended before %s", name)
				}
				if ev == name {
					return time.Since(start)
				}
			case <-timeout:
				t.Fatalf("no %s through C within 5 s", name)
			}
		}
	}
	firstStats := waitEvent("ReceivedWebRTCStats")
	// A cue point goes to targets that are live: wait for the video.
	until(t, "A's broadcast at the ingest", 10*time.Second, func() bool { return !il.lastFrame("sa").IsZero() })
	if st, _, raw := call(t, http.MethodPost, c.base+"/v1/streams/"+sa+"/metadata", `{"handlerName": "onCuePoint", "values": {"n": 1}}`, ""); st != http.StatusAccepted {
		t.Fatalf("metadata through C: %d %s", st, raw)
	}
	waitEvent("MetaDataSent")
	if st, _, raw := call(t, http.MethodGet, b.base+"/v1/streams/"+sa+"/stats", "", ""); st != http.StatusOK || !strings.Contains(raw, `"targets":[{`) {
		t.Fatalf("stats through B: %d %s", st, raw)
	}
	sseStop()
	resp.Body.Close()
	sseWG.Wait()
	until(t, "the cue point at the ingest", 3*time.Second, func() bool {
		il.mu.Lock()
		defer il.mu.Unlock()
		return il.meta["sa"] == 1
	})
	t.Logf("SSE through C: first stats event after %v; metadata sent through C reached A's ingest", firstStats)

	// Forwarding overhead: the same GET directly on the owner and through
	// another node.
	const rounds = 100
	var direct, forwarded []time.Duration
	for range rounds {
		t0 := time.Now()
		if st, _ := view(t, a.base, sa, ""); st != http.StatusOK {
			t.Fatal(st)
		}
		t1 := time.Now()
		if st, _ := view(t, b.base, sa, ""); st != http.StatusOK {
			t.Fatal(st)
		}
		direct, forwarded = append(direct, t1.Sub(t0)), append(forwarded, time.Since(t1))
	}
	t.Logf("GET /v1/streams/{id}, median of %d: on the owner %v, through another node %v (overhead %v)",
		rounds, median(direct), median(forwarded), median(forwarded)-median(direct))
	var lists []time.Duration
	for range rounds {
		t0 := time.Now()
		list(t, b.base, "")
		lists = append(lists, time.Since(t0))
	}
	t.Logf("GET /v1/streams through B (asks A and C), median of %d: %v", rounds, median(lists))

	// Scoped tokens: the owner enforces the same claims through any node.
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, auth.Claims{Stream: "alpha", RegisteredClaims: jwt.RegisteredClaims{
		ExpiresAt: jwt.NewNumericDate(time.Now().Add(10 * time.Minute))}}).SignedString([]byte(clusterTokenSecret))
	if err != nil {
		t.Fatal(err)
	}
	alpha, alphaBy, alphaPub := whip(t, c.base, tok)
	if alphaBy != c.base {
		t.Fatalf("token publish landed on %s", alphaBy)
	}
	if st, v := view(t, a.base, alpha, tok); st != http.StatusOK || v.Name != "alpha" || v.Node != "c" {
		t.Errorf("the token's own stream through A: %d %+v", st, v)
	}
	if st, _ := view(t, b.base, sa, tok); st != http.StatusForbidden {
		t.Errorf("another stream with the token through B: %d, want 403", st)
	}
	if got := list(t, a.base, tok); len(got) != 1 || got[alpha] != "c" {
		t.Errorf("the token's list through A: %v", got)
	}
	if st, _, _ := call(t, http.MethodGet, b.base+"/v1/streams/"+alpha, "", "wrong-key"); st != http.StatusUnauthorized {
		t.Errorf("a wrong key through B: %d", st)
	}
	// WHIP PATCH through another node reaches the owner's ICE session: an
	// If-Match that is not its ETag is the owner's 412.
	patch, _ := http.NewRequest(http.MethodPatch, a.base+"/whip/"+alpha,
		strings.NewReader("a=ice-ufrag:zzzz\r\na=ice-pwd:0123456789abcdef01234567\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:0\r\n"))
	patch.Header.Set("Authorization", "Bearer "+tok)
	patch.Header.Set("Content-Type", "application/trickle-ice-sdpfrag")
	patch.Header.Set("If-Match", `"not-the-etag"`)
	if resp, err := http.DefaultClient.Do(patch); err != nil || resp.StatusCode != http.StatusPreconditionFailed {
		t.Errorf("WHIP PATCH through A with a stale ETag: %v %v", err, resp)
	} else {
		resp.Body.Close()
	}
	// WHIP DELETE through another node, with the publisher's credential.
	if st, _, raw := call(t, http.MethodDelete, b.base+"/whip/"+alpha, "", tok); st != http.StatusOK {
		t.Fatalf("WHIP DELETE through B: %d %s", st, raw)
	}
	alphaPub.stop()
	if st, _ := view(t, a.base, alpha, ""); st != http.StatusNotFound {
		t.Errorf("deleted stream through A: %d", st)
	}

	// 2. B takes one stream (--max-streams 1); the next publisher is
	// redirected (307) to the least-loaded node: C.
	sb, by, _ := whip(t, b.base, "")
	if by != b.base {
		t.Fatalf("B's first publisher landed on %s", by)
	}
	broadcast(t, a.base, sb, ingAddr, "sb")
	until(t, "B registers its load", 3*time.Second, func() bool {
		st, h, _ := call(t, http.MethodGet, b.base+"/readyz", "", "")
		return st == http.StatusOK && h != nil
	})
	sc, by, _ := whip(t, b.base, "")
	if by != c.base {
		t.Fatalf("full B's publisher landed on %s, want C (%s)", by, c.base)
	}
	broadcast(t, a.base, sc, ingAddr, "sc")
	if got := list(t, c.base, ""); got[sa] != "a" || got[sb] != "b" || got[sc] != "c" || len(got) != 3 {
		t.Fatalf("list through C: %v", got)
	}
	// A stream created through the REST API and deleted through another node.
	p, offer := newPublisher(t)
	raw, _ := json.Marshal(map[string]string{"sdp": offer, "name": "rest"})
	st, h, body := call(t, http.MethodPost, c.base+"/v1/streams", string(raw), "")
	if st != http.StatusCreated {
		t.Fatalf("POST /v1/streams on C: %d %s", st, body)
	}
	var created struct{ ID, SDP string }
	_ = json.Unmarshal([]byte(body), &created)
	p.start(t, created.SDP)
	if st, _, _ := call(t, http.MethodDelete, a.base+h.Get("Location"), "", ""); st != http.StatusNoContent {
		t.Fatalf("DELETE through A: %d", st)
	}
	p.stop()
	if st, _ := view(t, b.base, created.ID, ""); st != http.StatusNotFound {
		t.Fatalf("deleted stream through B: %d", st)
	}

	// A relay's key publishes through full B (redirected), broadcasts to
	// the relay's targets on whichever node took it, and ends its session
	// through another node.
	relayed, relayBy, relayPub := whip(t, b.base, relayKey)
	if relayBy == b.base {
		t.Fatalf("full B took the relay's publisher")
	}
	until(t, "the relay's broadcast at the ingest", 10*time.Second, func() bool { return !il.lastFrame("relayed").IsZero() })
	other := a.base
	if relayBy == a.base {
		other = c.base
	}
	if st, _, raw := call(t, http.MethodDelete, other+"/whip/"+relayed, "", "another-relay-key"); st != http.StatusUnauthorized {
		t.Errorf("WHIP DELETE of the relay's session with a wrong key through %s: %d %s", other, st, raw)
	}
	if st, _, raw := call(t, http.MethodDelete, other+"/whip/"+relayed, "", relayKey); st != http.StatusOK {
		t.Fatalf("WHIP DELETE of the relay's session through %s: %d %s", other, st, raw)
	}
	relayPub.stop()
	until(t, "the relay's broadcast ended cleanly", 5*time.Second, func() bool { return il.saw("relayed", "deleteStream") })

	// 3. Redis stops: every node keeps its streams and says so; a lookup
	// through another node is 503, not 404. Redis restarts empty: every
	// node registers again.
	outage := time.Now()
	rd.Stop()
	until(t, "A reports Redis unavailable", 3*time.Second, func() bool {
		_, _, raw := call(t, http.MethodGet, a.base+"/readyz", "", "")
		return strings.Contains(raw, `"redis":"unavailable"`) && strings.Contains(raw, `"degraded":true`)
	})
	if st, _, raw := call(t, http.MethodGet, a.base+"/metrics", "", ""); st != http.StatusOK || !strings.Contains(raw, "castbridge_cluster_redis_up 0") {
		t.Errorf("metrics during the outage: %d", st)
	}
	if st, v := view(t, a.base, sa, ""); st != http.StatusOK || v.State != "live" {
		t.Errorf("A's own stream during the outage: %d %+v", st, v)
	}
	if st, h, _ := call(t, http.MethodGet, c.base+"/v1/streams/"+sa, "", ""); st != http.StatusServiceUnavailable || h.Get("Retry-After") == "" {
		t.Errorf("A's stream through C during the outage: %d", st)
	}
	time.Sleep(2500 * time.Millisecond) // longer than the TTL: every key would have expired
	down := time.Since(outage)
	rd.Start()
	back := until(t, "nodes registered again", 5*time.Second, func() bool {
		st, v := view(t, c.base, sa, "")
		st2, v2 := view(t, a.base, sc, "")
		st3, v3 := view(t, c.base, sb, "")
		return st == http.StatusOK && v.Node == "a" && st2 == http.StatusOK && v2.Node == "c" && st3 == http.StatusOK && v3.Node == "b" &&
			len(list(t, b.base, "")) == 3
	})
	for _, name := range []string{"sa", "sb", "sc"} {
		if n, gap := il.frames(name, outage, time.Now()); gap > 400*time.Millisecond || n < 25*int(time.Since(outage)/time.Second) {
			t.Errorf("%s through the Redis outage: %d frames, longest gap %v", name, n, gap)
		}
	}
	t.Logf("Redis down for %v; every node and stream registered again %v after it came back", down.Round(time.Millisecond), back)

	// 4. SIGKILL on B: its stream leaves the registry within the TTL (2 s);
	// A's and C's broadcasts keep every frame.
	killed := time.Now()
	b.kill(syscall.SIGKILL)
	gone := until(t, "B's stream gone", 4*time.Second, func() bool {
		st, _ := view(t, a.base, sb, "")
		got, partial := listPartial(t, c.base, "")
		_, ok := got[sb]
		return st == http.StatusNotFound && !ok && !partial
	})
	t.Logf("SIGKILL on B: its stream was 404 through A and out of C's list %v later (TTL 2 s)", gone)
	time.Sleep(time.Second)
	for _, name := range []string{"sa", "sc"} {
		n, gap := il.frames(name, killed.Add(-time.Second), time.Now())
		if n < 28*(int(time.Since(killed)/time.Second)) || gap > 400*time.Millisecond {
			t.Errorf("%s around B's death: %d frames, longest gap %v", name, n, gap)
		} else {
			t.Logf("%s around B's death: %d frames in %v, longest gap %v", name, n, time.Since(killed.Add(-time.Second)).Round(time.Millisecond), gap)
		}
	}

	// 5. SIGTERM on A with a live broadcast: it leaves placement at once
	// (/readyz 503, publishers go to C), the broadcast goes on until the
	// drain deadline, then ends cleanly (FCUnpublish, deleteStream).
	term := time.Now()
	a.kill(syscall.SIGTERM)
	notReady := until(t, "A not ready", 2*time.Second, func() bool {
		st, _, _ := call(t, http.MethodGet, a.base+"/readyz", "", "")
		return st == http.StatusServiceUnavailable
	})
	sd, by, _ := whip(t, a.base, "")
	if by != c.base {
		t.Fatalf("a publisher to draining A landed on %s", by)
	}
	time.Sleep(drainTimeout / 2)
	if st, v := view(t, c.base, sa, ""); st != http.StatusOK || v.State != "live" {
		t.Errorf("A's broadcast through C while A drains: %d %+v", st, v)
	}
	if n, gap := il.frames("sa", term, time.Now()); n < 30 || gap > 400*time.Millisecond {
		t.Errorf("A's broadcast while draining: %d frames, longest gap %v", n, gap)
	}
	select {
	case <-a.done:
	case <-time.After(drainTimeout + 10*time.Second):
		t.Fatal("A did not exit after the drain")
	}
	exited := time.Since(term)
	if a.err != nil {
		t.Errorf("A exited with %v", a.err)
	}
	if !il.saw("sa", "FCUnpublish") || !il.saw("sa", "deleteStream") {
		t.Errorf("A's broadcast did not end cleanly: %v", il.commands["sa"])
	}
	last := il.lastFrame("sa").Sub(term)
	if last < drainTimeout-500*time.Millisecond {
		t.Errorf("A's broadcast stopped %v after SIGTERM, before the drain deadline %v", last, drainTimeout)
	}
	if st, _ := view(t, c.base, sa, ""); st != http.StatusNotFound {
		t.Errorf("A's stream after A left: %d", st)
	}
	if got := list(t, c.base, ""); got[sd] != "c" || got[sc] != "c" || len(got) != 2 {
		t.Errorf("list after A left: %v", got)
	}
	t.Logf("SIGTERM on A: /readyz 503 after %v; last frame of its broadcast %v after SIGTERM (drain %v); process exited after %v",
		notReady, last.Round(time.Millisecond), drainTimeout, exited.Round(time.Millisecond))

	for _, n := range []*clusterNode{a, c} {
		for _, secret := range []string{clusterAPIKey, clusterSecret, clusterTokenSecret, tok} {
			if strings.Contains(n.logs.String(), secret) {
				t.Errorf("node %s logged a secret", n.id)
			}
		}
	}
	c.kill(syscall.SIGTERM)
	<-c.done
}

// TestClusterOptions: --redis and its companions come from flags or
// CASTBRIDGE_* variables, are checked at start, and no error quotes the
// Redis password.
func TestClusterOptions(t *testing.T) {
	env := map[string]string{"CASTBRIDGE_REDIS": "redis://user:PASSWORD@127.0.0.1:6379/2", "CASTBRIDGE_NODE_ID": "node-7",
		"CASTBRIDGE_ADVERTISE_URL": "http://10.0.0.7:8080", "CASTBRIDGE_CLUSTER_SECRET": clusterSecret, "CASTBRIDGE_DRAIN_TIMEOUT": "90s",
		"CASTBRIDGE_CLUSTER_TTL": "5s"}
	o, err := parseOptions(nil, func(k string) string { return env[k] }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.redisURL != env["CASTBRIDGE_REDIS"] || o.nodeID != "node-7" || o.advertiseURL != "http://10.0.0.7:8080" || o.clusterSecret != clusterSecret ||
		o.drainTimeout != 90*time.Second || o.clusterTTL != 5*time.Second {
		t.Fatalf("options: %+v", o)
	}
	n, err := newClusterNode(o, nil, slogDiscard())
	if err != nil || n.ID() != "node-7" || n.APIURL() != "http://10.0.0.7:8080" || n.TTL() != 5*time.Second {
		t.Fatalf("node: %v", err)
	}
	_ = n.Close(context.Background())
	if got := redisHost(o.redisURL); got != "127.0.0.1:6379" {
		t.Errorf("redisHost: %q", got)
	}
	host, _ := os.Hostname()
	o.nodeID = ""
	if n, err := newClusterNode(o, nil, slogDiscard()); err != nil || n.ID() != host {
		t.Errorf("default node id: %v", err)
	} else {
		_ = n.Close(context.Background())
	}
	for name, change := range map[string]func(o *options){
		"no secret":       func(o *options) { o.clusterSecret = "" },
		"short secret":    func(o *options) { o.clusterSecret = "short" },
		"no advertise":    func(o *options) { o.advertiseURL = "" },
		"advertise path":  func(o *options) { o.advertiseURL = "http://10.0.0.7:8080/api" },
		"advertise plain": func(o *options) { o.advertiseURL = "10.0.0.7:8080" },
		"bad redis":       func(o *options) { o.redisURL = "redis://user:PASSWORD@[::1" },
		"bad node id":     func(o *options) { o.nodeID = "a b" },
		"short ttl":       func(o *options) { o.clusterTTL = 10 * time.Millisecond },
		"secret alone":    func(o *options) { o.redisURL = "" },
	} {
		bad := o
		bad.nodeID = "node-7"
		change(&bad)
		_, err := newClusterNode(bad, nil, slogDiscard())
		if err == nil {
			t.Errorf("%s: accepted", name)
		} else if strings.Contains(err.Error(), "PASSWORD") {
			t.Errorf("%s: the error quotes the password: %v", name, err)
		}
	}
	if n, err := newClusterNode(options{}, nil, slogDiscard()); n != nil || err != nil {
		t.Errorf("no --redis: %v %v", n, err)
	}
}

func TestICEAddrs(t *testing.T) {
	got := strings.Join(iceAddrs([]net.IP{net.IPv4(203, 0, 113, 5), net.ParseIP("2001:db8::5")}, 8189, 443), ",")
	if got != "udp 203.0.113.5:8189,tcp 203.0.113.5:443,udp [2001:db8::5]:8189,tcp [2001:db8::5]:443" {
		t.Errorf("with --ice-ips: %s", got)
	}
	if got := strings.Join(iceAddrs(nil, 8189, 0), ","); got != "udp :8189" {
		t.Errorf("without: %s", got)
	}
}

func slogDiscard() *slog.Logger { return slog.New(slog.DiscardHandler) }

// TestDrainAlone: a single node (no --redis) drains the same way: on
// SIGTERM /readyz is 503 and new publishers get 503 LIMIT_EXCEEDED with
// Retry-After at once, the live stream goes on until --drain-timeout, then
// run returns.
func TestDrainAlone(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	httpAddr := freeAddr(t)
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"--http-addr", httpAddr, "--ice-udp-port", "0", "--ice-ips", "127.0.0.1", "--local-ingest", "",
			"--log-level", "warn", "--drain-timeout", "2s"}, func(string) string { return "" }, io.Discard)
	}()
	base := "http://" + httpAddr
	until(t, "ready", 5*time.Second, func() bool {
		st, _, _ := call(t, http.MethodGet, base+"/readyz", "", "")
		return st == http.StatusOK
	})
	id, _, p := whip(t, base, "")
	until(t, "connected", 10*time.Second, func() bool {
		st, v := view(t, base, id, "")
		return st == http.StatusOK && v.State == "connected"
	})
	term := time.Now()
	stop() // as SIGTERM does
	until(t, "not ready", time.Second, func() bool {
		st, _, _ := call(t, http.MethodGet, base+"/readyz", "", "")
		return st == http.StatusServiceUnavailable
	})
	p2, offer := newPublisher(t)
	if st, h, body := call(t, http.MethodPost, base+"/whip", offer, ""); st != http.StatusServiceUnavailable || h.Get("Retry-After") == "" || !strings.Contains(body, "LIMIT_EXCEEDED") {
		t.Errorf("a publisher while draining: %d %s", st, body)
	}
	p2.stop()
	time.Sleep(time.Second)
	if st, v := view(t, base, id, ""); st != http.StatusOK || v.State != "connected" || v.Node != "" {
		t.Errorf("the live stream 1 s into the drain: %d %+v", st, v)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("run did not return after the drain")
	}
	took := time.Since(term)
	if took < 2*time.Second || took > 4*time.Second {
		t.Errorf("run returned %v after SIGTERM, want the 2 s drain and a clean stop", took)
	}
	t.Logf("drained alone: run returned %v after SIGTERM (--drain-timeout 2s)", took.Round(time.Millisecond))
	p.stop()
}
