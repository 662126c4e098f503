package events

import (
	"sync"
	"testing"
)

type named struct {
	Name string `json:"name"`
}

func (n named) EventName() string { return n.Name }

type recordingSink struct {
	mu     sync.Mutex
	stream []string
	evs    []Event
}

func (r *recordingSink) Deliver(stream string, ev Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stream = append(r.stream, stream)
	r.evs = append(r.evs, ev)
}

func (r *recordingSink) Counters() SinkCounters { return SinkCounters{} }

func TestTapSeesEveryEventAsListenersDo(t *testing.T) {
	var b Bus
	sink := &recordingSink{}
	b.Tap("st_1", sink)
	sub := b.Subscribe(0)
	for _, n := range []string{"A", "B", "C"} {
		b.Publish(named{n})
	}
	b.Close()
	b.Publish(named{"after close"})
	var fromSub []Event
	for ev := range sub.C {
		fromSub = append(fromSub, ev)
	}
	if len(sink.evs) != 3 || len(fromSub) != 3 {
		t.Fatalf("sink got %d, subscriber %d events, want 3 each", len(sink.evs), len(fromSub))
	}
	for i, ev := range sink.evs {
		if sink.stream[i] != "st_1" || ev.ID != fromSub[i].ID || ev.Name != fromSub[i].Name || string(ev.Data) != string(fromSub[i].Data) {
			t.Errorf("event %d: sink %s %+v, subscriber %+v", i, sink.stream[i], ev, fromSub[i])
		}
	}
	if string(sink.evs[1].Data) != `{"name":"B"}` || sink.evs[2].ID != 3 {
		t.Errorf("sink events %+v", sink.evs)
	}
}
