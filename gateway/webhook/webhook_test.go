package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/castbridge/castbridge/gateway/events"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const testSecret = "whsec_test"

// got is one request a receiver saw.
type got struct {
	header http.Header
	raw    []byte
	body   Body
}

// receiver is a webhook endpoint whose answers a test scripts.
type receiver struct {
	t      *testing.T
	srv    *httptest.Server
	mu     sync.Mutex
	reqs   []got
	answer func(n int, r *http.Request) int // n: 1-based request number
}

func newReceiver(t *testing.T, answer func(n int, r *http.Request) int) *receiver {
	rc := &receiver{t: t, answer: answer}
	rc.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw, _ := io.ReadAll(r.Body)
		var b Body
		if err := json.Unmarshal(raw, &b); err != nil {
			t.Errorf("body %q: %v", raw, err)
		}
		rc.mu.Lock()
		rc.reqs = append(rc.reqs, got{header: r.Header.Clone(), raw: raw, body: b})
		n := len(rc.reqs)
		rc.mu.Unlock()
		status := http.StatusNoContent
		if rc.answer != nil {
			status = rc.answer(n, r)
		}
		w.WriteHeader(status)
	}))
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *receiver) all() []got {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]got(nil), rc.reqs...)
}

// waitN waits until the receiver has seen n requests.
func (rc *receiver) waitN(n int) []got {
	rc.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if g := rc.all(); len(g) >= n {
			return g
		}
		time.Sleep(2 * time.Millisecond)
	}
	rc.t.Fatalf("receiver saw %d requests, want %d", len(rc.all()), n)
	return nil
}

func fastConfig(urls ...string) Config {
	return Config{URLs: urls, Secret: testSecret, BackoffInitial: time.Millisecond, BackoffMax: 4 * time.Millisecond,
		Timeout: time.Second, Logger: slog.New(slog.DiscardHandler)}
}

func newSender(t *testing.T, cfg Config) *Sender {
	t.Helper()
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = s.Close(ctx)
	})
	return s
}

func event(seq uint64, name, data string) events.Event {
	return events.Event{ID: seq, Name: name, At: time.Date(2026, 12, 1, 12, 0, 0, int(seq), time.UTC), Data: json.RawMessage(data)}
}

func closeNow(t *testing.T, s *Sender, within time.Duration) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	return s.Close(ctx)
}

func TestDeliversInOrderSigned(t *testing.T) {
	rc := newReceiver(t, nil)
	s := newSender(t, fastConfig(rc.srv.URL+"/hook"))
	const n = 50
	for i := 1; i <= n; i++ {
		s.Deliver("st_abc", event(uint64(i), "MetaDataSent", fmt.Sprintf(`{"targets":%d}`, i)))
	}
	reqs := rc.waitN(n)
	ids := map[string]bool{}
	for i, g := range reqs {
		b := g.body
		if b.Seq != uint64(i+1) || b.Stream != "st_abc" || b.Event != "MetaDataSent" || string(b.Data) != fmt.Sprintf(`{"targets":%d}`, i+1) {
			t.Fatalf("request %d: %+v (data %s), want seq %d in order", i, b, b.Data, i+1)
		}
		if !b.At.Equal(event(uint64(i+1), "", "").At) {
			t.Errorf("request %d: at %v", i, b.At)
		}
		if !strings.HasPrefix(b.ID, "evt_") || ids[b.ID] {
			t.Errorf("request %d: id %q not a fresh evt_ id", i, b.ID)
		}
		ids[b.ID] = true
		if g.header.Get(DeliveryHeader) != b.ID || g.header.Get(EventHeader) != "MetaDataSent" || g.header.Get(AttemptHeader) != "1" ||
			g.header.Get("Content-Type") != "application/json" {
			t.Errorf("request %d headers: %v", i, g.header)
		}
		if err := Verify(testSecret, g.header.Get(SignatureHeader), g.raw); err != nil {
			t.Errorf("request %d: signature %q does not verify: %v", i, g.header.Get(SignatureHeader), err)
		}
		if err := Verify("another secret", g.header.Get(SignatureHeader), g.raw); !errors.Is(err, ErrSignatureMismatch) {
			t.Errorf("request %d verifies with the wrong secret: %v", i, err)
		}
	}
	if err := closeNow(t, s, time.Second); err != nil {
		t.Fatal(err)
	}
	if c := s.Counters(); c.Delivered != n || c.Failed != 0 || c.DroppedQueueFull+c.DroppedGaveUp+c.DroppedShutdown != 0 {
		t.Errorf("counters %+v, want %d delivered and nothing else", c, n)
	}
}

func TestEveryURLGetsEveryEvent(t *testing.T) {
	a, b := newReceiver(t, nil), newReceiver(t, nil)
	s := newSender(t, fastConfig(a.srv.URL, b.srv.URL))
	for i := 1; i <= 5; i++ {
		s.Deliver("st_1", event(uint64(i), "PublisherConnected", `{}`))
	}
	ga, gb := a.waitN(5), b.waitN(5)
	for i := range 5 {
		if ga[i].body.ID != gb[i].body.ID || ga[i].body.Seq != uint64(i+1) {
			t.Errorf("event %d: %+v and %+v, want the same body in order", i, ga[i].body, gb[i].body)
		}
	}
}

func TestRetriesServerErrorsThenSucceeds(t *testing.T) {
	for _, status := range []int{http.StatusInternalServerError, http.StatusServiceUnavailable, http.StatusTooManyRequests} {
		t.Run(strconv.Itoa(status), func(t *testing.T) {
			rc := newReceiver(t, func(n int, _ *http.Request) int {
				if n <= 2 {
					return status
				}
				return http.StatusOK
			})
			s := newSender(t, fastConfig(rc.srv.URL))
			s.Deliver("st_1", event(1, "StreamClosed", `{"streamId":"st_1"}`))
			s.Deliver("st_1", event(2, "StreamClosed", `{"streamId":"st_1"}`))
			reqs := rc.waitN(4)
			for i, g := range reqs[:3] {
				if g.body.Seq != 1 || g.header.Get(AttemptHeader) != strconv.Itoa(i+1) || g.body.ID != reqs[0].body.ID {
					t.Errorf("request %d: seq %d attempt %s id %s, want event 1's attempt %d", i, g.body.Seq, g.header.Get(AttemptHeader), g.body.ID, i+1)
				}
				if err := Verify(testSecret, g.header.Get(SignatureHeader), g.raw); err != nil {
					t.Errorf("retry %d: %v", i, err)
				}
			}
			if reqs[3].body.Seq != 2 {
				t.Errorf("fourth request is seq %d, want event 2 after event 1 got through", reqs[3].body.Seq)
			}
			if err := closeNow(t, s, time.Second); err != nil {
				t.Fatal(err)
			}
			if c := s.Counters(); c.Delivered != 2 || c.Failed != 2 || c.DroppedGaveUp != 0 {
				t.Errorf("counters %+v, want 2 delivered, 2 failed attempts", c)
			}
		})
	}
}

func TestNoRetryOnClientError(t *testing.T) {
	rc := newReceiver(t, func(n int, _ *http.Request) int {
		if n == 1 {
			return http.StatusBadRequest
		}
		return http.StatusOK
	})
	s := newSender(t, fastConfig(rc.srv.URL))
	s.Deliver("st_1", event(1, "A", `{}`))
	s.Deliver("st_1", event(2, "B", `{}`))
	reqs := rc.waitN(2)
	if err := closeNow(t, s, time.Second); err != nil {
		t.Fatal(err)
	}
	if len(rc.all()) != 2 || reqs[0].body.Seq != 1 || reqs[1].body.Seq != 2 || reqs[1].header.Get(AttemptHeader) != "1" {
		t.Fatalf("requests %v, want event 1 once (refused) then event 2", rc.all())
	}
	if c := s.Counters(); c.Delivered != 1 || c.Failed != 1 || c.DroppedGaveUp != 1 {
		t.Errorf("counters %+v, want 1 delivered, 1 failed, 1 given up", c)
	}
}

func TestGivesUpAfterMaxAttempts(t *testing.T) {
	rc := newReceiver(t, func(int, *http.Request) int { return http.StatusBadGateway })
	cfg := fastConfig(rc.srv.URL)
	cfg.MaxAttempts = 3
	s := newSender(t, cfg)
	s.Deliver("st_1", event(1, "A", `{}`))
	rc.waitN(3)
	if err := closeNow(t, s, time.Second); err != nil {
		t.Fatal(err)
	}
	if n := len(rc.all()); n != 3 {
		t.Errorf("%d attempts, want 3", n)
	}
	if c := s.Counters(); c.Failed != 3 || c.DroppedGaveUp != 1 || c.Delivered != 0 {
		t.Errorf("counters %+v", c)
	}
}

func TestNetworkErrorsRetried(t *testing.T) {
	// A port nothing listens on: connection refused, then the event is
	// given up after its attempts.
	dead := httptest.NewServer(http.NotFoundHandler())
	url := dead.URL
	dead.Close()
	cfg := fastConfig(url)
	cfg.MaxAttempts = 4
	s := newSender(t, cfg)
	s.Deliver("st_1", event(1, "A", `{}`))
	deadline := time.Now().Add(5 * time.Second)
	for s.Counters().DroppedGaveUp == 0 && time.Now().Before(deadline) {
		time.Sleep(2 * time.Millisecond)
	}
	if c := s.Counters(); c.Failed != 4 || c.DroppedGaveUp != 1 {
		t.Errorf("counters %+v, want 4 failed attempts then given up", c)
	}
}

func TestQueueOverflowDropsOldest(t *testing.T) {
	release := make(chan struct{})
	rc := newReceiver(t, func(n int, _ *http.Request) int {
		if n == 1 {
			<-release // the first delivery is in flight while the queue fills
		}
		return http.StatusOK
	})
	cfg := fastConfig(rc.srv.URL)
	cfg.QueueSize = 4
	s := newSender(t, cfg)
	s.Deliver("st_1", event(1, "A", `{}`))
	rc.waitN(1)
	for i := 2; i <= 11; i++ { // 10 more into a queue of 4: 2..7 are dropped
		s.Deliver("st_1", event(uint64(i), "A", `{}`))
	}
	if c := s.Counters(); c.DroppedQueueFull != 6 {
		t.Errorf("dropped %d, want 6", c.DroppedQueueFull)
	}
	close(release)
	reqs := rc.waitN(5)
	var seqs []uint64
	for _, g := range reqs {
		seqs = append(seqs, g.body.Seq)
	}
	if fmt.Sprint(seqs) != "[1 8 9 10 11]" {
		t.Errorf("delivered %v, want [1 8 9 10 11]: the oldest queued dropped", seqs)
	}
	if err := closeNow(t, s, time.Second); err != nil {
		t.Fatal(err)
	}
}

func TestQueueBytesBound(t *testing.T) {
	release := make(chan struct{})
	rc := newReceiver(t, func(n int, _ *http.Request) int {
		if n == 1 {
			<-release
		}
		return http.StatusOK
	})
	cfg := fastConfig(rc.srv.URL)
	cfg.QueueBytes = 3000
	s := newSender(t, cfg)
	s.Deliver("st_1", event(1, "A", `{}`))
	rc.waitN(1)
	big := `{"v":"` + strings.Repeat("x", 1000) + `"}` // each body is a little over 1000 bytes
	for i := 2; i <= 6; i++ {
		s.Deliver("st_1", event(uint64(i), "A", big))
	}
	// Two fit in 3000 bytes: 2, 3 and 4 went to make room.
	if c := s.Counters(); c.DroppedQueueFull != 3 {
		t.Errorf("dropped %d, want 3", c.DroppedQueueFull)
	}
	huge := `{"v":"` + strings.Repeat("y", 5000) + `"}`
	s.Deliver("st_1", event(7, "A", huge)) // alone past the bound: it still goes, the rest make room
	close(release)
	rc.waitN(2)
	if err := closeNow(t, s, time.Second); err != nil {
		t.Fatal(err)
	}
	reqs := rc.all()
	var seqs []uint64
	for _, g := range reqs {
		seqs = append(seqs, g.body.Seq)
	}
	if fmt.Sprint(seqs) != "[1 7]" || s.Counters().DroppedQueueFull != 5 {
		t.Errorf("delivered %v, dropped %d; want [1 7] and 5", seqs, s.Counters().DroppedQueueFull)
	}
}

func TestEventFilter(t *testing.T) {
	rc := newReceiver(t, nil)
	cfg := fastConfig(rc.srv.URL)
	cfg.Events = []string{"StreamClosed", "PublisherConnected"}
	s := newSender(t, cfg)
	for i, name := range []string{"PublisherConnected", "TargetConnected", "MetaDataSent", "StreamClosed"} {
		s.Deliver("st_1", event(uint64(i+1), name, `{}`))
	}
	if err := closeNow(t, s, 2*time.Second); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, g := range rc.all() {
		names = append(names, g.body.Event)
	}
	if strings.Join(names, ",") != "PublisherConnected,StreamClosed" {
		t.Errorf("sent %v, want only the chosen events", names)
	}
}

func TestCloseFlushesQueue(t *testing.T) {
	rc := newReceiver(t, func(int, *http.Request) int {
		time.Sleep(5 * time.Millisecond)
		return http.StatusOK
	})
	s, err := New(fastConfig(rc.srv.URL))
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 30; i++ {
		s.Deliver("st_1", event(uint64(i), "A", `{}`))
	}
	if err := closeNow(t, s, 5*time.Second); err != nil {
		t.Fatalf("close: %v", err)
	}
	if n := len(rc.all()); n != 30 {
		t.Errorf("%d delivered by Close, want all 30", n)
	}
	// After Close nothing is taken.
	s.Deliver("st_1", event(31, "A", `{}`))
	if c := s.Counters(); c.Delivered != 30 || c.DroppedShutdown != 1 {
		t.Errorf("counters %+v, want 30 delivered and the late event dropped", c)
	}
}

func TestCloseDeadlineDropsRest(t *testing.T) {
	hang := make(chan struct{})
	rc := newReceiver(t, func(_ int, r *http.Request) int {
		select {
		case <-hang:
		case <-r.Context().Done():
		}
		return http.StatusOK
	})
	defer close(hang)
	// The sender's goroutines (delivery, connections) end with Close; the
	// receiver's run until the test's cleanup.
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	cfg := fastConfig(rc.srv.URL)
	cfg.Timeout = time.Minute // only Close's deadline ends the attempt
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 10; i++ {
		s.Deliver("st_1", event(uint64(i), "A", `{}`))
	}
	rc.waitN(1)
	start := time.Now()
	err = closeNow(t, s, 100*time.Millisecond)
	if took := time.Since(start); took > time.Second {
		t.Errorf("Close took %v past its 100 ms deadline", took)
	}
	if err == nil || !strings.Contains(err.Error(), "10 events not delivered") {
		t.Errorf("close: %v, want 10 events reported lost", err)
	}
	if c := s.Counters(); c.DroppedShutdown != 10 || c.Delivered != 0 {
		t.Errorf("counters %+v, want all 10 dropped at shutdown", c)
	}
}

func TestRedirectNotFollowed(t *testing.T) {
	other := newReceiver(t, nil)
	rc := newReceiver(t, func(_ int, _ *http.Request) int { return http.StatusFound })
	rc.srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, other.srv.URL, http.StatusFound)
	})
	s := newSender(t, fastConfig(rc.srv.URL))
	s.Deliver("st_1", event(1, "A", `{}`))
	if err := closeNow(t, s, 2*time.Second); err != nil {
		t.Fatal(err)
	}
	if n := len(other.all()); n != 0 {
		t.Errorf("the redirect's target got %d requests", n)
	}
	if c := s.Counters(); c.DroppedGaveUp != 1 || c.Failed != 1 {
		t.Errorf("counters %+v, want the redirect a refusal, not retried", c)
	}
}

func TestURLSecretsNeverLogged(t *testing.T) {
	rc := newReceiver(t, func(int, *http.Request) int { return http.StatusInternalServerError })
	var logs bytes.Buffer
	var mu sync.Mutex
	cfg := fastConfig(strings.Replace(rc.srv.URL, "http://", "http://user:PASSWORD@", 1) + "/hooks/PATHTOKEN?token=QUERYTOKEN")
	cfg.MaxAttempts = 2
	cfg.Logger = slog.New(slog.NewTextHandler(lockedWriter{&mu, &logs}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	s := newSender(t, cfg)
	s.Deliver("st_1", event(1, "A", `{}`))
	if err := closeNow(t, s, 2*time.Second); err != nil {
		t.Fatal(err)
	}
	reqs := rc.all()
	if len(reqs) != 2 {
		t.Fatalf("%d requests, want 2", len(reqs))
	}
	if u, p, ok := basicAuth(reqs[0].header); !ok || u != "user" || p != "PASSWORD" {
		t.Errorf("user info not sent as basic auth: %q %q", u, p)
	}
	mu.Lock()
	out := logs.String()
	mu.Unlock()
	if !strings.Contains(out, "webhook event given up") {
		t.Fatalf("no give-up log in %q", out)
	}
	for _, secret := range []string{"PASSWORD", "PATHTOKEN", "QUERYTOKEN", "user"} {
		if strings.Contains(out, secret) {
			t.Errorf("logs show %q: %s", secret, out)
		}
	}
}

func basicAuth(h http.Header) (string, string, bool) {
	r := &http.Request{Header: h}
	return r.BasicAuth()
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func TestNewChecksConfig(t *testing.T) {
	for _, c := range []struct {
		cfg  Config
		want string
	}{
		{Config{Secret: "s"}, "no URL"},
		{Config{URLs: []string{"https://hooks.example/x"}}, "secret is required"},
		{Config{URLs: []string{"ftp://hooks.example/x?token=SECRET"}, Secret: "s"}, "URL 1: must be an http:// or https:// URL"},
		{Config{URLs: []string{"https://ok.example", "http:///path?token=SECRET"}, Secret: "s"}, "URL 2: has no host"},
		{Config{URLs: []string{"http://h\x7f/?token=SECRET"}, Secret: "s"}, "URL 1: not a valid URL"},
		{Config{URLs: []string{"hooks.example/x?token=SECRET"}, Secret: "s"}, "must be an http"},
	} {
		_, err := New(c.cfg)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want %q", c.cfg, err, c.want)
			continue
		}
		if strings.Contains(err.Error(), "SECRET") {
			t.Errorf("error quotes the URL: %v", err)
		}
	}
	shown, err := CheckURL("https://u:p@hooks.example:8443/in/TOKEN?sig=SECRET")
	if err != nil || shown != "https://hooks.example:8443/****" {
		t.Errorf("CheckURL: %q %v", shown, err)
	}
}

func TestBackoffGrowsWithJitter(t *testing.T) {
	s := &Sender{cfg: Config{BackoffInitial: 100 * time.Millisecond, BackoffMax: time.Second}}
	for n, want := range map[int]time.Duration{1: 100 * time.Millisecond, 2: 200 * time.Millisecond, 4: 800 * time.Millisecond, 5: time.Second, 30: time.Second} {
		for range 50 {
			if d := s.backoff(n); d < want/2 || d > want {
				t.Fatalf("backoff(%d) = %v, want in [%v, %v]", n, d, want/2, want)
			}
		}
	}
}

// BenchmarkDeliver measures one URL's throughput to a local receiver:
// sequential, signed POSTs on a kept-alive connection.
func BenchmarkDeliver(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	s, err := New(Config{URLs: []string{srv.URL}, Secret: testSecret, QueueSize: b.N + 1, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	data := `{"streamId":"st_abc","reason":"ice failed"}`
	b.ResetTimer()
	for i := range b.N {
		s.Deliver("st_abc", event(uint64(i+1), "PublisherDisconnected", data))
	}
	if err := s.Close(context.Background()); err != nil {
		b.Fatal(err)
	}
	if c := s.Counters(); c.Delivered != uint64(b.N) {
		b.Fatalf("delivered %d of %d", c.Delivered, b.N)
	}
}
