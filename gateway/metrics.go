package gateway

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

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
	fillerFrames  atomic.Uint64
	fastRTP       atomic.Uint64
	fastFailures  atomic.Uint64
	fastInline    atomic.Uint64
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
	if s.session == nil {
		return // an RTMP stream: no RTCP feedback, no packets
	}
	fb := s.session.Counters()
	t.plis.Add(fb.PLIs())
	t.nacks.Add(fb.NACKs())
	t.fastRTP.Add(fb.FastRTP.Load())
	t.fastFailures.Add(fb.FastAuthFailures.Load())
	t.fastInline.Add(fb.FastInline.Load())
	if s.video != nil {
		t.packetsLost.Add(s.video.Counters().Lost)
		t.fillerFrames.Add(s.video.FillerFrames())
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

// histograms are the gateway's timing distributions: one series each over
// every stream and target, since a label per stream or target would grow
// with them (and a target's URL holds its stream key). The targets observe
// them on their writers' per-frame path, which a Prometheus histogram
// serves with atomic adds and no allocation.
type histograms struct {
	frameLatency, queueTime, publishTime prometheus.Histogram
}

// frameBuckets span what a frame waits in the gateway: ~1 ms alone, the
// 43-63 ms the interleaver holds video for its AAC, up to its 2 s bound.
var frameBuckets = []float64{.001, .0025, .005, .01, .025, .05, .075, .1, .15, .25, .5, 1, 2.5}

func newHistograms() *histograms {
	return &histograms{
		frameLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "castbridge_frame_added_latency_seconds",
			Help:    "Time from a video frame's last RTP packet arriving to its write to an RTMP ingest done, over every target.",
			Buckets: frameBuckets,
		}),
		queueTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "castbridge_target_queue_seconds",
			Help:    "Time from a frame being made (video: its last RTP packet arrived; audio: encoded; data: sent by the API) to a target's writer taking it off the queue, over every target.",
			Buckets: frameBuckets,
		}),
		publishTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "castbridge_target_publish_seconds",
			Help:    "Time from dialing an RTMP ingest to its NetStream.Publish.Start, for first connections and reconnects that got there.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}),
	}
}

func (h *histograms) observers() rtmpout.Observers {
	return rtmpout.Observers{FrameLatency: h.frameLatency, QueueTime: h.queueTime, PublishTime: h.publishTime}
}

// Collectors are the manager's own Prometheus metrics (its histograms), for
// the registry the API serves; the counters and gauges of Metrics are
// collected from its snapshot.
func (m *Manager) Collectors() []prometheus.Collector {
	return []prometheus.Collector{m.cfg.hist.frameLatency, m.cfg.hist.queueTime, m.cfg.hist.publishTime}
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
	// FillerFrames counts the video filler's frames (muted or stalled
	// pictures replaced, video/filler.go).
	FillerFrames uint64
	// FastPathPackets counts the RTP packets the SRTP fast path decrypted;
	// FastPathAuthFailures those it could not authenticate and left to
	// pion; FastPathInline those the socket reader handed to their
	// track's pipeline itself (webrtcin/fastpath.go).
	FastPathPackets, FastPathAuthFailures, FastPathInline uint64
	// OversizedDatagrams counts the ICE UDP datagrams dropped for being
	// larger than any WebRTC packet (webrtcin.Transport).
	OversizedDatagrams uint64
	// LimitRefusals counts requests refused at each limit, by
	// apierr.Limit* name (every limit present, zeros included).
	LimitRefusals map[string]uint64
	// Webhooks counts the event webhooks' deliveries (zeros without
	// Config.EventSink).
	Webhooks events.SinkCounters
	// STUN is what --stun learned; STUN.Server is "" when it is off.
	STUN STUNMetrics
	// Draining: the manager refuses new publishers (Shutdown began).
	Draining bool
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
		StreamsByState:       map[StreamState]int{},
		TargetsByState:       map[rtmpout.State]int{},
		StreamsTotal:         m.totals.streams.Load(),
		BytesSent:            m.totals.bytesSent.Load(),
		FramesSent:           m.totals.framesSent.Load(),
		FramesDropped:        m.totals.framesDropped.Load(),
		Reconnects:           m.totals.reconnects.Load(),
		PLIs:                 m.totals.plis.Load(),
		NACKs:                m.totals.nacks.Load(),
		PacketsLost:          m.totals.packetsLost.Load(),
		FillerFrames:         m.totals.fillerFrames.Load(),
		FastPathPackets:      m.totals.fastRTP.Load(),
		FastPathAuthFailures: m.totals.fastFailures.Load(),
		FastPathInline:       m.totals.fastInline.Load(),
		OversizedDatagrams:   m.transport.OversizedDatagrams(),
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
	mt.Draining = !m.Ready()
	for _, s := range m.Streams() {
		mt.Streams++
		mt.StreamsByState[s.State()]++
		if s.session != nil {
			fb := s.session.Counters()
			mt.PLIs += fb.PLIs()
			mt.NACKs += fb.NACKs()
			mt.FastPathPackets += fb.FastRTP.Load()
			mt.FastPathAuthFailures += fb.FastAuthFailures.Load()
			mt.FastPathInline += fb.FastInline.Load()
		}
		if s.video != nil {
			mt.PacketsLost += s.video.Counters().Lost
			mt.FillerFrames += s.video.FillerFrames()
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
