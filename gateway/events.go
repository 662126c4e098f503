package gateway

import (
	"sync"
	"time"
)

// Event names (API.md, nanoStream RtcUser's events).
const (
	EventPublisherConnected    = "PublisherConnected"
	EventPublisherDisconnected = "PublisherDisconnected"
	EventStartBroadcastSuccess = "StartBroadcastSuccess"
	EventStartBroadcastError   = "StartBroadcastError"
	EventStopBroadcastSuccess  = "StopBroadcastSuccess"
	EventStopBroadcastError    = "StopBroadcastError"
	EventTargetConnected       = "TargetConnected"
	EventTargetReconnecting    = "TargetReconnecting"
	EventTargetFailed          = "TargetFailed"
	EventMetaDataSent          = "MetaDataSent"
	EventStreamClosed          = "StreamClosed"
	EventReceivedWebRTCStats   = "ReceivedWebRTCStats"
)

// Event is one thing that happened to a stream. Data is JSON-encodable and
// never carries a stream key.
type Event struct {
	ID   uint64
	Name string
	At   time.Time
	Data any
}

const (
	// eventHistory is how many past events a reconnecting listener can
	// resume from (SSE Last-Event-ID).
	eventHistory = 128
	// subscriberBuffer is how far a listener may lag before it is cut off;
	// it can resume from where it was.
	subscriberBuffer = 256
)

// eventBus fans a stream's events out to its listeners. Publishing never
// blocks: a listener that falls subscriberBuffer events behind is closed.
type eventBus struct {
	mu      sync.Mutex
	seq     uint64
	history []Event
	subs    map[*Subscription]struct{}
	closed  bool
}

// Subscription is one listener. C is closed when the stream closes, or when
// the listener fell too far behind (Lagged tells which).
type Subscription struct {
	C      <-chan Event
	ch     chan Event
	bus    *eventBus
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

func (b *eventBus) publish(name string, data any) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return
	}
	b.seq++
	ev := Event{ID: b.seq, Name: name, At: time.Now().UTC(), Data: data}
	if len(b.history) == eventHistory {
		copy(b.history, b.history[1:])
		b.history = b.history[:eventHistory-1]
	}
	b.history = append(b.history, ev)
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

// subscribe adds a listener. Events after afterID still in the history are
// delivered first (afterID 0: none, only what happens from now on).
func (b *eventBus) subscribe(afterID uint64) *Subscription {
	b.mu.Lock()
	defer b.mu.Unlock()
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

// close ends every subscription after the events already sent.
func (b *eventBus) close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	for s := range b.subs {
		delete(b.subs, s)
		close(s.ch)
	}
}
