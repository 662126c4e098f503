// Package events fans a stream's events out to its listeners (SSE clients,
// tests). An event's payload is a typed struct, marshalled to JSON once
// when it is published: every listener gets the same bytes.
package events

import (
	"encoding/json"
	"sync"
	"time"
)

// Payload is the data of one kind of event. EventName is its API name
// (API.md, nanoStream RtcUser's events). Payloads never carry a stream key.
type Payload interface {
	EventName() string
}

// Publisher takes events; a Bus is one. Parts of the gateway that report
// events (targets, pipelines) are handed this, not the bus.
type Publisher interface {
	Publish(Payload)
}

// Sink takes every event of every stream besides the bus's listeners (the
// event webhooks). Deliver is called with the bus's lock held, so a sink
// sees each stream's events in order; it must not block (queue and return).
type Sink interface {
	Deliver(stream string, ev Event)
	// Counters reports the sink's deliveries for the metrics.
	Counters() SinkCounters
}

// SinkCounters are a Sink's totals since it started.
type SinkCounters struct {
	Delivered uint64 // events the receiver accepted (2xx)
	Failed    uint64 // attempts that failed (network error, timeout, non-2xx)
	// Dropped counts events given up, by reason: the queue was full, the
	// attempts or age ran out or the receiver refused (4xx), shutdown.
	DroppedQueueFull, DroppedGaveUp, DroppedShutdown uint64
}

// Event is one thing that happened to a stream.
type Event struct {
	ID   uint64
	Name string
	At   time.Time
	Data json.RawMessage
}

const (
	// history is how many past events a reconnecting listener can resume
	// from (SSE Last-Event-ID).
	history = 128
	// subscriberBuffer is how far a listener may lag before it is cut off;
	// it can resume from where it was.
	subscriberBuffer = 256
)

// Bus fans a stream's events out to its listeners. Publishing never blocks:
// a listener that falls subscriberBuffer events behind is closed.
type Bus struct {
	mu      sync.Mutex
	seq     uint64
	history []Event
	subs    map[*Subscription]struct{}
	closed  bool
	sink    Sink   // optional, set by Tap before the first event
	stream  string // the stream id the sink is told
}

// Tap hands every event published from now on to sink as well, naming the
// stream. Call it before the bus's first event.
func (b *Bus) Tap(stream string, sink Sink) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.stream, b.sink = stream, sink
}

// Subscription is one listener. C is closed when the bus closes, or when
// the listener fell too far behind (Lagged tells which).
type Subscription struct {
	C      <-chan Event
	ch     chan Event
	bus    *Bus
	lagged bool
}

// Lagged reports whether the subscription was cut off for falling behind.
func (s *Subscription) Lagged() bool {
	s.bus.mu.Lock()
	defer s.bus.mu.Unlock()
	return s.lagged
}

// Close ends the subscription.
func (s *Subscription) Close() {
	s.bus.mu.Lock()
	defer s.bus.mu.Unlock()
	if _, ok := s.bus.subs[s]; ok {
		delete(s.bus.subs, s)
		close(s.ch)
	}
}

// Publish records an event and hands it to every listener.
func (b *Bus) Publish(p Payload) {
	data, err := json.Marshal(p)
	if err != nil {
		// Payloads are the gateway's own structs; user metadata in them
		// was checked to be JSON when it came in.
		data = []byte(`{}`)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return
	}
	b.seq++
	ev := Event{ID: b.seq, Name: p.EventName(), At: time.Now().UTC(), Data: data}
	if len(b.history) == history {
		copy(b.history, b.history[1:])
		b.history = b.history[:history-1]
	}
	b.history = append(b.history, ev)
	if b.sink != nil {
		b.sink.Deliver(b.stream, ev)
	}
	for s := range b.subs {
		select {
		case s.ch <- ev:
		default:
			s.lagged = true
			delete(b.subs, s)
			close(s.ch)
		}
	}
}

// Subscribe adds a listener. Events after afterID still in the history are
// delivered first (afterID 0: none, only what happens from now on).
func (b *Bus) Subscribe(afterID uint64) *Subscription {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.subscribeLocked(afterID)
}

func (b *Bus) subscribeLocked(afterID uint64) *Subscription {
	ch := make(chan Event, subscriberBuffer)
	s := &Subscription{C: ch, ch: ch, bus: b}
	if afterID > 0 {
		for _, ev := range b.history {
			if ev.ID > afterID && len(ch) < cap(ch) {
				ch <- ev
			}
		}
	}
	if b.closed {
		close(ch)
		return s
	}
	if b.subs == nil {
		b.subs = map[*Subscription]struct{}{}
	}
	b.subs[s] = struct{}{}
	return s
}

// TrySubscribe is Subscribe unless the bus already has max subscribers
// (max > 0), when it returns false and subscribes nothing.
func (b *Bus) TrySubscribe(afterID uint64, max int) (*Subscription, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if max > 0 && !b.closed && len(b.subs) >= max {
		return nil, false
	}
	return b.subscribeLocked(afterID), true
}

// Close ends every subscription after the events already sent.
func (b *Bus) Close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	for s := range b.subs {
		delete(b.subs, s)
		close(s.ch)
	}
}
