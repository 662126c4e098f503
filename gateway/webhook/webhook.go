// Package webhook sends the gateway's events to the operator's backend:
// every stream's events (what GET /v1/streams/{id}/events streams) as
// signed JSON POSTs, one delivery goroutine per URL, in order, with a
// bounded queue and retries.
//
// A Sender is an events.Sink: the manager taps every stream's bus with it.
// Deliver never blocks: a full queue drops its oldest event. A body is
// marshalled once per event and shared by every URL; each attempt signs it
// afresh (Castbridge-Signature: t=<unix>,v1=<hex HMAC-SHA256 of "<t>.<body>">),
// so a receiver can refuse replays by the timestamp (Verify).
package webhook

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/castbridge/castbridge/gateway/events"
)

// Defaults of Config.
const (
	DefaultQueueSize      = 1024
	DefaultQueueBytes     = 16 << 20
	DefaultTimeout        = 5 * time.Second
	DefaultMaxAttempts    = 8
	DefaultMaxAge         = 5 * time.Minute
	DefaultBackoffInitial = 500 * time.Millisecond
	DefaultBackoffMax     = 30 * time.Second
)

// Request headers.
const (
	SignatureHeader = "X-Castbridge-Signature" // API.md: sha256=<hex HMAC of the body>
	EventHeader     = "X-Castbridge-Event"     // the event's name
	DeliveryHeader  = "X-Castbridge-Delivery"  // the body's id: the same on every retry
	AttemptHeader   = "X-Castbridge-Attempt"   // 1 on the first try
)

// maxResponseRead is how much of a receiver's answer is read (and thrown
// away) so the connection can be reused; a longer one is cut.
const maxResponseRead = 64 << 10

// Config is a Sender's configuration.
type Config struct {
	// URLs are the receivers, http or https; each gets every event.
	URLs []string
	// Secret keys the HMAC-SHA256 signature of every request. Required.
	Secret string
	// Events are the event names sent; empty means all.
	Events []string
	// QueueSize bounds each URL's queue of undelivered events; past it
	// the oldest is dropped (DefaultQueueSize).
	QueueSize int
	// QueueBytes bounds the bodies queued for one URL (DefaultQueueBytes):
	// a MetaDataSent may carry up to a MiB of the client's values. Past it
	// the oldest are dropped; one event alone is always taken.
	QueueBytes int
	// Timeout bounds one attempt: connect, request, answer (DefaultTimeout).
	Timeout time.Duration
	// MaxAttempts and MaxAge bound the retries of one event: an event is
	// given up after MaxAttempts attempts or when the next would start
	// more than MaxAge after the event.
	MaxAttempts int
	MaxAge      time.Duration
	// BackoffInitial doubles after each failed attempt up to BackoffMax;
	// each wait is jittered to between half of it and all of it.
	BackoffInitial, BackoffMax time.Duration
	// Transport makes the requests; nil is a clone of
	// http.DefaultTransport. Redirects are never followed.
	Transport http.RoundTripper
	Logger    *slog.Logger
}

func (c *Config) setDefaults() {
	if c.QueueSize <= 0 {
		c.QueueSize = DefaultQueueSize
	}
	if c.QueueBytes <= 0 {
		c.QueueBytes = DefaultQueueBytes
	}
	if c.Timeout <= 0 {
		c.Timeout = DefaultTimeout
	}
	if c.MaxAttempts <= 0 {
		c.MaxAttempts = DefaultMaxAttempts
	}
	if c.MaxAge <= 0 {
		c.MaxAge = DefaultMaxAge
	}
	if c.BackoffInitial <= 0 {
		c.BackoffInitial = DefaultBackoffInitial
	}
	if c.BackoffMax <= 0 {
		c.BackoffMax = DefaultBackoffMax
	}
	if c.BackoffMax < c.BackoffInitial {
		c.BackoffMax = c.BackoffInitial
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Body is the JSON of one webhook request. Data is the event's payload,
// byte for byte the SSE event's data line; Seq is its SSE id
// (Last-Event-ID) on the stream.
type Body struct {
	ID     string          `json:"id"`
	Stream string          `json:"stream"`
	Seq    uint64          `json:"seq"`
	Event  string          `json:"event"`
	At     time.Time       `json:"at"`
	Data   json.RawMessage `json:"data"`
}

// delivery is one event on its way to one URL.
type delivery struct {
	id, name string
	body     []byte
	at       time.Time
}

// endpoint is one URL: its queue, woken by Deliver.
type endpoint struct {
	url   string // the whole URL, for requests only
	shown string // redacted, for logs

	mu       sync.Mutex
	buf      []delivery // ring of len QueueSize
	head     int
	n        int
	bytes    int // of the queued bodies
	maxBytes int
	closed   bool // Close has begun: Deliver drops
	wake     chan struct{}
}

// push appends d, dropping the oldest while the queue is full (events or
// bytes); it reports how many it dropped and whether d was taken at all.
func (e *endpoint) push(d delivery) (dropped int, taken bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return 0, false
	}
	for e.n > 0 && (e.n == len(e.buf) || e.bytes+len(d.body) > e.maxBytes) {
		e.popLocked()
		dropped++
	}
	e.buf[(e.head+e.n)%len(e.buf)] = d
	e.n++
	e.bytes += len(d.body)
	select {
	case e.wake <- struct{}{}:
	default:
	}
	return dropped, true
}

func (e *endpoint) pop() (delivery, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.n == 0 {
		return delivery{}, false
	}
	return e.popLocked(), true
}

func (e *endpoint) popLocked() delivery {
	d := e.buf[e.head]
	e.buf[e.head] = delivery{}
	e.head = (e.head + 1) % len(e.buf)
	e.n--
	e.bytes -= len(d.body)
	return d
}

// Sender delivers events to the configured URLs. It is an events.Sink.
type Sender struct {
	cfg       Config
	log       *slog.Logger
	want      map[string]bool // nil: every event
	client    *http.Client
	transport http.RoundTripper
	endpoints []*endpoint

	// ctx ends when Close gives up flushing: attempts and waits abort.
	// closing is closed when Close begins: workers return once their
	// queue is empty.
	ctx       context.Context
	cancel    context.CancelFunc
	closing   chan struct{}
	closeOnce sync.Once
	wg        sync.WaitGroup

	delivered, failed                  atomic.Uint64
	dropFull, dropGaveUp, dropShutdown atomic.Uint64
}

// New checks the configuration and starts one delivery goroutine per URL;
// Close ends them.
func New(cfg Config) (*Sender, error) {
	cfg.setDefaults()
	if len(cfg.URLs) == 0 {
		return nil, errors.New("webhook: no URL")
	}
	if cfg.Secret == "" {
		return nil, errors.New("webhook: a secret is required to sign requests (--webhook-secret)")
	}
	s := &Sender{cfg: cfg, log: cfg.Logger, closing: make(chan struct{})}
	for i, raw := range cfg.URLs {
		shown, err := CheckURL(raw)
		if err != nil {
			return nil, fmt.Errorf("webhook URL %d: %w", i+1, err)
		}
		s.endpoints = append(s.endpoints, &endpoint{url: raw, shown: shown,
			buf: make([]delivery, cfg.QueueSize), maxBytes: cfg.QueueBytes, wake: make(chan struct{}, 1)})
	}
	if len(cfg.Events) > 0 {
		s.want = map[string]bool{}
		for _, n := range cfg.Events {
			s.want[n] = true
		}
	}
	s.transport = cfg.Transport
	if s.transport == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxIdleConnsPerHost = 2
		s.transport = tr
	}
	s.client = &http.Client{
		Transport: s.transport,
		// A receiver that redirects is misconfigured; following it would
		// send signed events somewhere the operator did not name.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	for _, e := range s.endpoints {
		s.wg.Go(func() { s.run(e) })
	}
	return s, nil
}

// CheckURL checks that raw is an absolute http(s) URL and returns it
// redacted for logs (scheme://host/****: its user info, path and query may
// hold credentials). Its errors never quote the URL.
func CheckURL(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", errors.New("not a valid URL")
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return "", errors.New("must be an http:// or https:// URL")
	}
	if u.Host == "" || u.Hostname() == "" {
		return "", errors.New("has no host")
	}
	return u.Scheme + "://" + u.Host + "/****", nil
}

// Deliver queues an event of a stream for every URL; it never blocks.
func (s *Sender) Deliver(stream string, ev events.Event) {
	if s.want != nil && !s.want[ev.Name] {
		return
	}
	id := "evt_" + strings.ToLower(rand.Text()[:16])
	data := ev.Data
	if len(data) == 0 {
		data = json.RawMessage(`{}`)
	}
	body, err := json.Marshal(Body{ID: id, Stream: stream, Seq: ev.ID, Event: ev.Name, At: ev.At, Data: data})
	if err != nil {
		// The data was marshalled by the bus; this cannot fail on it.
		s.log.Warn("webhook: event not sent: cannot marshal", "event", ev.Name, "err", err)
		return
	}
	d := delivery{id: id, name: ev.Name, body: body, at: time.Now()}
	for _, e := range s.endpoints {
		dropped, taken := e.push(d)
		s.dropFull.Add(uint64(dropped))
		if !taken {
			s.dropShutdown.Add(1)
		}
	}
}

// Counters implements events.Sink.
func (s *Sender) Counters() events.SinkCounters {
	return events.SinkCounters{
		Delivered:        s.delivered.Load(),
		Failed:           s.failed.Load(),
		DroppedQueueFull: s.dropFull.Load(),
		DroppedGaveUp:    s.dropGaveUp.Load(),
		DroppedShutdown:  s.dropShutdown.Load(),
	}
}

// Close stops taking events and delivers what is queued until ctx ends;
// then it aborts the attempts in flight, drops the rest and returns an
// error saying how many events were lost. It returns when every delivery
// goroutine has ended.
func (s *Sender) Close(ctx context.Context) error {
	before := s.dropShutdown.Load()
	s.closeOnce.Do(func() {
		for _, e := range s.endpoints {
			e.mu.Lock()
			e.closed = true
			e.mu.Unlock()
		}
		close(s.closing)
	})
	done := make(chan struct{})
	go func() { // joined below, whichever way the select goes
		s.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		s.cancel()
		<-done
	}
	s.cancel()
	for _, e := range s.endpoints {
		for {
			if _, ok := e.pop(); !ok {
				break
			}
			s.dropShutdown.Add(1)
		}
	}
	if tr, ok := s.transport.(interface{ CloseIdleConnections() }); ok {
		tr.CloseIdleConnections()
	}
	if lost := s.dropShutdown.Load() - before; lost > 0 {
		return fmt.Errorf("webhook: %d events not delivered by the shutdown deadline", lost)
	}
	return nil
}

// run delivers one URL's events in order until Close.
func (s *Sender) run(e *endpoint) {
	for {
		d, ok := e.pop()
		if !ok {
			select {
			case <-e.wake:
				continue
			case <-s.closing:
				// Drain what is left (nothing new arrives), then end.
				if d, ok = e.pop(); !ok {
					return
				}
			case <-s.ctx.Done():
				return
			}
		}
		if s.ctx.Err() != nil {
			s.dropShutdown.Add(1)
			return
		}
		s.send(e, d)
	}
}

// send tries one event until it is delivered, refused or given up.
func (s *Sender) send(e *endpoint, d delivery) {
	for attempt := 1; ; attempt++ {
		status, retryAfter, err := s.attempt(e, d, attempt)
		if err == nil {
			s.delivered.Add(1)
			return
		}
		if s.ctx.Err() != nil {
			s.dropShutdown.Add(1)
			return
		}
		s.failed.Add(1)
		if !retryable(status) {
			s.dropGaveUp.Add(1)
			s.log.Warn("webhook refused an event; not retried", "url", e.shown, "event", d.name, "id", d.id, "err", err)
			return
		}
		wait := s.backoff(attempt)
		if retryAfter > wait {
			wait = min(retryAfter, s.cfg.BackoffMax)
		}
		if attempt >= s.cfg.MaxAttempts || time.Since(d.at)+wait > s.cfg.MaxAge {
			s.dropGaveUp.Add(1)
			s.log.Warn("webhook event given up", "url", e.shown, "event", d.name, "id", d.id, "attempts", attempt, "err", err)
			return
		}
		s.log.Debug("webhook attempt failed; retrying", "url", e.shown, "event", d.name, "attempt", attempt, "in", wait, "err", err)
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-s.ctx.Done():
			t.Stop()
			s.dropShutdown.Add(1)
			return
		}
	}
}

// attempt POSTs once. status is 0 on a network error or timeout.
func (s *Sender) attempt(e *endpoint, d delivery, n int) (status int, retryAfter time.Duration, err error) {
	ctx, cancel := context.WithTimeout(s.ctx, s.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.url, bytes.NewReader(d.body))
	if err != nil {
		return 0, 0, errors.New("cannot make the request")
	}
	h := req.Header
	h.Set("Content-Type", "application/json")
	h.Set("User-Agent", "castbridge-webhook/1")
	h.Set(EventHeader, d.name)
	h.Set(DeliveryHeader, d.id)
	h.Set(AttemptHeader, strconv.Itoa(n))
	h.Set(SignatureHeader, Sign(s.cfg.Secret, d.body))
	resp, err := s.client.Do(req)
	if err != nil {
		// *url.Error quotes the whole URL (query, user info): keep only
		// what went wrong.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return 0, 0, err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxResponseRead))
	_ = resp.Body.Close()
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return resp.StatusCode, 0, nil
	}
	if secs, perr := strconv.Atoi(resp.Header.Get("Retry-After")); perr == nil && secs > 0 {
		retryAfter = time.Duration(min(secs, 3600)) * time.Second
	}
	return resp.StatusCode, retryAfter, fmt.Errorf("answered %d", resp.StatusCode)
}

// retryable: network errors and timeouts (0), 429 and 5xx. Other answers
// (4xx, a redirect not followed) will not change on a retry.
func retryable(status int) bool {
	return status == 0 || status == http.StatusTooManyRequests || status >= 500
}

// backoff is the wait after failed attempt n (1-based): BackoffInitial
// doubled n-1 times, at most BackoffMax, jittered into [d/2, d].
func (s *Sender) backoff(n int) time.Duration {
	d := s.cfg.BackoffInitial
	for i := 1; i < n && d < s.cfg.BackoffMax; i++ {
		d *= 2
	}
	d = min(d, s.cfg.BackoffMax)
	half := d / 2
	return half + time.Duration(mrand.Int64N(int64(d-half)+1))
}
