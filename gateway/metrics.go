package gateway

import (
	"sync/atomic"

	"github.com/castbridge/castbridge/gateway/apierr"
	"github.com/castbridge/castbridge/gateway/events"
	"github.com/castbridge/castbridge/gateway/rtmpout"
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
	// refusals at each limit, by apierr.Limit*
	refusedStreams, refusedTargets, refusedSSE atomic.Uint64
}

func (t *totals) refused(limit string) {
	switch limit {
	case apierr.LimitStreams:
		t.refusedStreams.Add(1)
	case apierr.LimitTargets:
		t.refusedTargets.Add(1)
	case apierr.LimitSSESubscribers:
		t.refusedSSE.Add(1)
	}
}

// addStream adds a closing stream's counters to the totals.
func (t *totals) addStream(s *Stream) {
	fb := s.session.Counters()
	t.plis.Add(fb.PLIs())
	t.nacks.Add(fb.NACKs())
	if s.video != nil {
		t.packetsLost.Add(s.video.Counters().Lost)
	}
}

// addTarget adds a finished target's counters to the totals.
func (t *totals) addTarget(tg *rtmpout.Target) {
	tt := tg.Totals()
	t.bytesSent.Add(tt.BytesSent)
	t.framesSent.Add(tt.FramesSent)
	t.framesDropped.Add(tt.FramesDropped)
	t.reconnects.Add(uint64(tt.Reconnects))
}

// Metrics is a snapshot for the Prometheus endpoint. Counters include closed
// streams; nothing in it names a stream key.
type Metrics struct {
	Streams        int
	StreamsTotal   uint64
	StreamsByState map[StreamState]int
	TargetsByState map[rtmpout.State]int
	BytesSent      uint64
	FramesSent     uint64
	FramesDropped  uint64
	Reconnects     uint64
	PLIs           uint64
	NACKs          uint64
	PacketsLost    uint64
	// LimitRefusals counts requests refused at each limit, by
	// apierr.Limit* name (every limit present, zeros included).
	LimitRefusals map[string]uint64
	// Webhooks counts the event webhooks' deliveries (zeros without
	// Config.EventSink).
	Webhooks events.SinkCounters
	// STUN is what --stun learned; STUN.Server is "" when it is off.
	STUN STUNMetrics
}

// STUNMetrics is the public address STUN learned, for the metrics.
type STUNMetrics struct {
	Server     string
	Up         bool   // the last query was answered
	PublicAddr string // ip:port advertised as srflx; "" before an answer
	Failures   uint64 // queries that got no answer
}

// Metrics sums the live streams' counters onto the totals of closed ones.
func (m *Manager) Metrics() Metrics {
	mt := Metrics{
		StreamsByState: map[StreamState]int{},
		TargetsByState: map[rtmpout.State]int{},
		StreamsTotal:   m.totals.streams.Load(),
		BytesSent:      m.totals.bytesSent.Load(),
		FramesSent:     m.totals.framesSent.Load(),
		FramesDropped:  m.totals.framesDropped.Load(),
		Reconnects:     m.totals.reconnects.Load(),
		PLIs:           m.totals.plis.Load(),
		NACKs:          m.totals.nacks.Load(),
		PacketsLost:    m.totals.packetsLost.Load(),
		LimitRefusals: map[string]uint64{
			apierr.LimitStreams:        m.totals.refusedStreams.Load(),
			apierr.LimitTargets:        m.totals.refusedTargets.Load(),
			apierr.LimitSSESubscribers: m.totals.refusedSSE.Load(),
		},
	}
	if m.cfg.EventSink != nil {
		mt.Webhooks = m.cfg.EventSink.Counters()
	}
	if st := m.transport.STUN(); st.Server != "" {
		mt.STUN = STUNMetrics{Server: st.Server, Up: st.Up, Failures: st.Failures}
		if st.Mapped.IsValid() {
			mt.STUN.PublicAddr = st.Mapped.String()
		}
	}
	for _, s := range m.Streams() {
		mt.Streams++
		mt.StreamsByState[s.State()]++
		fb := s.session.Counters()
		mt.PLIs += fb.PLIs()
		mt.NACKs += fb.NACKs()
		if s.video != nil {
			mt.PacketsLost += s.video.Counters().Lost
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
			tt := t.Totals()
			mt.BytesSent += tt.BytesSent
			mt.FramesSent += tt.FramesSent
			mt.FramesDropped += tt.FramesDropped
			mt.Reconnects += uint64(tt.Reconnects)
		}
	}
	return mt
}
