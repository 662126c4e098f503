package main

import (
	"context"
	"encoding/binary"
	"log/slog"
	"sync"
	"time"

	"github.com/castbridge/castbridge/transmux/format/mediafile"
	"github.com/castbridge/castbridge/transmux/rtmp/ingest"
)

// sink is the built-in RTMP ingest every stream is broadcast to, each to
// its own publish name. It keeps, per name, the slice digest and receive
// time of every video frame; matching them to the sent frames waits until
// the run is over, so the receive path stays short.
type sink struct {
	srv    *ingest.Server
	cancel context.CancelFunc
	done   chan struct{}

	mu      sync.RWMutex
	streams map[string]*sinkStream
}

type recvFrame struct {
	digest uint64
	at     time.Time
}

type sinkStream struct {
	mu   sync.Mutex
	recv []recvFrame
	// scratch for the NAL units of one tag, reused (one connection
	// goroutine per publish)
	nalus [][]byte
}

// maxSinkConns is above any stream count loadgen runs.
const maxSinkConns = 4096

func startSink(addr string) (*sink, error) {
	s := &sink{streams: map[string]*sinkStream{}, done: make(chan struct{})}
	srv, err := ingest.Listen(ingest.Config{
		Addr:      addr,
		OnMessage: s.onMessage,
		// Every stream of the run is one publish: the ingest's default
		// cap (64, a gateway's defence) refused the rest at 100 streams.
		MaxConns: maxSinkConns,
		Logger:   slog.New(slog.DiscardHandler),
	})
	if err != nil {
		return nil, err
	}
	s.srv = srv
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	go func() {
		defer close(s.done)
		_ = srv.Serve(ctx)
	}()
	return s, nil
}

func (s *sink) close() {
	s.cancel()
	<-s.done
}

func (s *sink) register(name string) *sinkStream {
	ss := &sinkStream{recv: make([]recvFrame, 0, 1024)}
	s.mu.Lock()
	s.streams[name] = ss
	s.mu.Unlock()
	return ss
}

func (s *sink) unregister(name string) {
	s.mu.Lock()
	delete(s.streams, name)
	s.mu.Unlock()
}

// onMessage runs on the publish's connection goroutine.
func (s *sink) onMessage(name string, m ingest.Message) {
	at := time.Now()
	if m.Type != 9 {
		return
	}
	s.mu.RLock()
	ss := s.streams[name]
	s.mu.RUnlock()
	if ss == nil {
		return
	}
	b := m.Body
	if len(b) >= 5 && b[0]&0x80 != 0 {
		ss.mu.Lock()
		defer ss.mu.Unlock()
		ss.onExFrame(b, at)
		return
	}
	// AVC (codec 7), AVCPacketType 1 (NAL units); sequence headers and
	// anything else are not frames.
	if len(b) < 5 || b[0]&0x0f != 7 || b[1] != 1 {
		return
	}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	nalus := ss.nalus[:0]
	for p := b[5:]; len(p) >= 4; {
		n := int(binary.BigEndian.Uint32(p))
		if n <= 0 || n > len(p)-4 {
			// malformed: record a digest that matches nothing
			nalus = append(nalus[:0], []byte{0x65, 0xff})
			break
		}
		nalus = append(nalus, p[4:4+n])
		p = p[4+n:]
	}
	ss.nalus = nalus[:0]
	ss.recv = append(ss.recv, recvFrame{digest: mediafile.SliceDigest(nalus), at: at})
}

// onExFrame records an E-RTMP coded frame (CodedFrames or CodedFramesX of
// vp09, av01 or hvc1) by the digest the publisher gave it.
func (ss *sinkStream) onExFrame(b []byte, at time.Time) {
	typ, fourCC, p := b[0]&0x0f, string(b[1:5]), b[5:]
	if typ != 1 && typ != 3 {
		return // sequence start or end
	}
	var codec string
	var units [][]byte
	switch fourCC {
	case "vp09":
		codec, units = "vp9", [][]byte{p}
	case "av01":
		codec = "av1"
		obus, err := mediafile.SplitAV1OBUs(p)
		if err != nil {
			obus = [][]byte{{0xff}} // matches nothing
		}
		units = obus
	case "hvc1":
		codec = "hevc"
		if typ == 1 {
			if len(p) < 3 {
				return
			}
			p = p[3:]
		}
		for len(p) >= 4 {
			n := int(binary.BigEndian.Uint32(p))
			if n <= 0 || n > len(p)-4 {
				units = [][]byte{{0xff}}
				break
			}
			units = append(units, p[4:4+n])
			p = p[4+n:]
		}
	default:
		return
	}
	ss.recv = append(ss.recv, recvFrame{digest: mediafile.FrameDigest(codec, units), at: at})
}

func (ss *sinkStream) live() bool {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return len(ss.recv) > 0
}

func (ss *sinkStream) frames() []recvFrame {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return append([]recvFrame(nil), ss.recv...)
}
