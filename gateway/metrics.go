package gateway

import (
	"sync/atomic"
)

// totals are process-wide counters that outlive streams, so the metrics'
// counters never go down when a stream closes.
type totals struct {
	bytesSent     atomic.Uint64
	framesSent    atomic.Uint64
	framesDropped atomic.Uint64
	reconnects    atomic.Uint64
	plis          atomic.Uint64
	nacks         atomic.Uint64
	packetsLost   atomic.Uint64
	streams       atomic.Uint64 // streams ever created
}

// retire adds a closing stream's counters to the manager's totals.
func (m *Manager) retire(s *Stream) {
	m.totals.plis.Add(s.rtcp.plis.Load())
	m.totals.nacks.Add(s.rtcp.nacks.Load())
	if s.video != nil {
		m.totals.packetsLost.Add(s.video.lost.Load())
	}
}

// retireTarget adds a finished target's counters to the totals.
func (m *Manager) retireTarget(t *Target) {
	if p := t.publisher(); p != nil {
		m.totals.bytesSent.Add(p.BytesSent() + t.bytesBefore.Load())
	} else {
		m.totals.bytesSent.Add(t.bytesBefore.Load())
	}
	m.totals.framesSent.Add(t.framesSent.Load())
	m.totals.framesDropped.Add(t.framesDropped.Load())
	t.mu.Lock()
	m.totals.reconnects.Add(uint64(t.reconnects))
	t.mu.Unlock()
}

// Metrics is a snapshot for the Prometheus endpoint. Counters include closed
// streams; nothing in it names a stream key.
type Metrics struct {
	Streams        int
	StreamsTotal   uint64
	StreamsByState map[StreamState]int
	TargetsByState map[TargetState]int
	BytesSent      uint64
	FramesSent     uint64
	FramesDropped  uint64
	Reconnects     uint64
	PLIs           uint64
	NACKs          uint64
	PacketsLost    uint64
}

// Metrics sums the live streams' counters onto the totals of closed ones.
func (m *Manager) Metrics() Metrics {
	mt := Metrics{
		StreamsByState: map[StreamState]int{},
		TargetsByState: map[TargetState]int{},
		StreamsTotal:   m.totals.streams.Load(),
		BytesSent:      m.totals.bytesSent.Load(),
		FramesSent:     m.totals.framesSent.Load(),
		FramesDropped:  m.totals.framesDropped.Load(),
		Reconnects:     m.totals.reconnects.Load(),
		PLIs:           m.totals.plis.Load(),
		NACKs:          m.totals.nacks.Load(),
		PacketsLost:    m.totals.packetsLost.Load(),
	}
	for _, s := range m.Streams() {
		mt.Streams++
		mt.StreamsByState[s.State()]++
		mt.PLIs += s.rtcp.plis.Load()
		mt.NACKs += s.rtcp.nacks.Load()
		if s.video != nil {
			mt.PacketsLost += s.video.lost.Load()
		}
		s.mu.Lock()
		b := s.broadcast
		s.mu.Unlock()
		if b == nil {
			continue
		}
		active := b.active()
		for _, t := range b.Targets() {
			if active {
				mt.TargetsByState[t.State()]++
			}
			if p := t.publisher(); p != nil {
				mt.BytesSent += p.BytesSent()
			}
			mt.BytesSent += t.bytesBefore.Load()
			mt.FramesSent += t.framesSent.Load()
			mt.FramesDropped += t.framesDropped.Load()
			t.mu.Lock()
			mt.Reconnects += uint64(t.reconnects)
			t.mu.Unlock()
		}
	}
	return mt
}
