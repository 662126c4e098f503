package ingest

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/castbridge/castbridge/transmux/format/flv"
	"github.com/castbridge/castbridge/transmux/rtmp/rtmppush"
)

// routeSink records what a routed publish delivers.
type routeSink struct {
	mu     sync.Mutex
	types  []uint8
	bodies [][]byte
	ended  chan string
	refuse bool
}

func (s *routeSink) Message(m Message) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.types = append(s.types, m.Type)
	s.bodies = append(s.bodies, append([]byte(nil), m.Body...))
	if s.refuse {
		return errors.New("gone")
	}
	return nil
}

func (s *routeSink) End(reason string) { s.ended <- reason }

// TestRoute: Route decides first; a routed publish's media goes to its
// sink (the data message without @setDataFrame), not to OnMessage or a
// recording; an unpublish ends it with its command, a sink's error ends the
// connection with "refused by its sink", and a refusal carries its code.
func TestRoute(t *testing.T) {
	sink := &routeSink{ended: make(chan string, 4)}
	var onMessage int
	dir := t.TempDir()
	s, cancel, done := serve(t, Config{Dir: dir, Key: "local",
		Route: func(p PublishInfo) (Sink, error) {
			switch p.Name {
			case "routed":
				return sink, nil
			case "refused":
				return nil, &Reject{Code: "NetStream.Publish.BadName", Description: "no"}
			}
			return nil, nil
		},
		OnMessage: func(string, Message) { onMessage++ }})
	defer func() { cancel(); <-done }()
	dial := func(name string) (*rtmppush.Publisher, error) {
		ep, err := rtmppush.ParseEndpoint("rtmp://"+s.Addr().String()+"/live/"+name, "")
		if err != nil {
			t.Fatal(err)
		}
		return rtmppush.Dial(context.Background(), rtmppush.Config{Endpoint: ep, PublishTimeout: 3 * time.Second})
	}
	for name, code := range map[string]string{"refused": "NetStream.Publish.BadName", "other": "NetStream.Publish.BadName"} {
		_, err := dial(name)
		var rj *rtmppush.RejectedError
		if !errors.As(err, &rj) || rj.Code != code {
			t.Errorf("%s: %v, want %s", name, err, code)
		}
	}

	p, err := dial("routed")
	if err != nil {
		t.Fatal(err)
	}
	meta, _ := flv.AppendSetDataFrame(nil, flv.Metadata{Width: 320, Height: 240})
	if err := p.WriteData(0, meta); err != nil {
		t.Fatal(err)
	}
	if err := p.WriteAudio(0, []byte{0xaf, 0, 0x11, 0x90}); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if r := <-sink.ended; r != "FCUnpublish" {
		t.Errorf("ended by %q, want FCUnpublish", r)
	}
	sink.mu.Lock()
	if len(sink.types) != 2 || sink.types[0] != flv.TagScript || sink.types[1] != flv.TagAudio ||
		string(sink.bodies[0]) != string(meta[3+len("@setDataFrame"):]) || string(sink.bodies[1]) != "\xaf\x00\x11\x90" {
		t.Errorf("sink got %v %q", sink.types, sink.bodies)
	}
	sink.refuse = true
	sink.mu.Unlock()
	if onMessage != 0 {
		t.Errorf("OnMessage saw %d messages of a routed publish", onMessage)
	}

	p2, err := dial("routed")
	if err != nil {
		t.Fatal(err)
	}
	defer p2.Abort()
	if err := p2.WriteAudio(0, []byte{0xaf, 1, 0}); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-sink.ended:
		if r != "refused by its sink" {
			t.Errorf("ended by %q", r)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("a sink's error did not end the publish")
	}
	select {
	case <-p2.Done():
	case <-time.After(3 * time.Second):
		t.Error("a sink's error did not end the connection")
	}
}
