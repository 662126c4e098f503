package gateway

import (
	"math"
	"sync"
	"time"

	"github.com/pion/webrtc/v3"
)

// Stats is a snapshot of a stream's counters (GET /v1/streams/{id}/stats).
type Stats struct {
	At      time.Time     `json:"at"`
	Inbound InboundStats  `json:"inbound"`
	Targets []TargetStats `json:"targets"`
}

// InboundStats is what the publisher sends.
type InboundStats struct {
	Video *VideoStats `json:"video"`
	Audio *AudioStats `json:"audio"`
	// RTTMs is the round trip to the publisher from ICE consent checks.
	RTTMs float64 `json:"rttMs"`
}

// VideoStats counts the inbound video.
type VideoStats struct {
	Bitrate       float64 `json:"bitrate"`
	FPS           float64 `json:"fps"`
	PacketsLost   uint64  `json:"packetsLost"`
	NACKs         uint64  `json:"nacksSent"`
	PLIs          uint64  `json:"plisSent"`
	Keyframes     uint64  `json:"keyframes"`
	FramesDropped uint64  `json:"framesDropped"`
	JitterMs      float64 `json:"jitterMs"`
	// BitrateCap is the cap the publisher is asked to respect (REMB), 0 for none.
	BitrateCap int64 `json:"bitrateCap"`
	Width      int   `json:"width"`
	Height     int   `json:"height"`
}

// AudioStats counts the inbound audio.
type AudioStats struct {
	Bitrate     float64 `json:"bitrate"`
	PacketsLost uint64  `json:"packetsLost"`
	JitterMs    float64 `json:"jitterMs"`
	// ConcealedMs is how much audio was made up for loss, DTX or a
	// missing track: the timeline never shrinks.
	ConcealedMs float64 `json:"concealedMs"`
}

// TargetStats counts what one target wrote.
type TargetStats struct {
	ID            string      `json:"id"`
	State         TargetState `json:"state"`
	BytesSent     uint64      `json:"bytesSent"`
	Bitrate       float64     `json:"bitrate"`
	FramesSent    uint64      `json:"framesSent"`
	FramesDropped uint64      `json:"framesDropped"`
	QueueMs       float64     `json:"queueMs"`
	Reconnects    int         `json:"reconnects"`
	// LatencyP50Ms and LatencyP99Ms measure from a frame's last RTP packet
	// arriving to its tag being written to the ingest's socket.
	LatencyP50Ms float64 `json:"latencyP50Ms"`
	LatencyP99Ms float64 `json:"latencyP99Ms"`
}

// rateMeter turns a growing byte counter into bit/s, over windows of at
// least a second between samples.
type rateMeter struct {
	mu        sync.Mutex
	lastBytes uint64
	lastAt    time.Time
	rate      float64
}

func (r *rateMeter) bitrate(total uint64, now time.Time) float64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.lastAt.IsZero() {
		r.lastAt, r.lastBytes = now, total
		return 0
	}
	if d := now.Sub(r.lastAt); d >= time.Second {
		r.rate = math.Round(float64(total-r.lastBytes) * 8 / d.Seconds())
		r.lastAt, r.lastBytes = now, total
	}
	return r.rate
}

func millis(d time.Duration) float64 { return math.Round(float64(d)/1e4) / 100 }

// Stats returns the stream's counters now.
func (s *Stream) Stats() Stats {
	now := time.Now()
	st := Stats{At: now.UTC()}
	if v := s.video; v != nil {
		vs := &VideoStats{
			Bitrate:       v.rate.bitrate(v.bytesIn.Load(), now),
			FPS:           math.Round(v.fps()*100) / 100,
			PacketsLost:   v.lost.Load(),
			NACKs:         s.rtcp.nacks.Load(),
			PLIs:          s.rtcp.plis.Load(),
			Keyframes:     v.keyCnt.Load(),
			JitterMs:      v.rtp.jitterMs(),
			BitrateCap:    s.bitrateCap.Load(),
			FramesDropped: v.dropCnt.Load(),
		}
		if ps := v.params.Load(); ps != nil {
			vs.Width, vs.Height = ps.width, ps.height
		}
		st.Inbound.Video = vs
	}
	s.mu.Lock()
	hasAudio := s.audioInfo != nil
	b := s.broadcast
	s.mu.Unlock()
	if hasAudio {
		st.Inbound.Audio = &AudioStats{
			Bitrate:     s.audioRate.bitrate(s.audioBytes.Load(), now),
			PacketsLost: uint64(s.audio.rtp.lost.Load()),
			JitterMs:    s.audio.rtp.jitterMs(),
			ConcealedMs: math.Round(float64(s.audio.concealed.Load()) / 48),
		}
	}
	st.Inbound.RTTMs = s.rttMs()
	st.Targets = []TargetStats{}
	if b != nil {
		for _, t := range b.Targets() {
			st.Targets = append(st.Targets, t.stats(now))
		}
	}
	return st
}

// queueMs is how much stream time waits in the target's queue.
func (t *Target) queueMs() float64 {
	if len(t.queue) == 0 {
		return 0
	}
	return float64(max(0, int32(t.enqueuedMs.Load()-t.dequeuedMs.Load())))
}

func (t *Target) stats(now time.Time) TargetStats {
	ts := TargetStats{
		ID:            t.id,
		FramesSent:    t.framesSent.Load(),
		FramesDropped: t.framesDropped.Load(),
		QueueMs:       t.queueMs(),
		LatencyP50Ms:  millis(t.latency.quantile(0.5)),
		LatencyP99Ms:  millis(t.latency.quantile(0.99)),
	}
	if p := t.publisher(); p != nil {
		ts.BytesSent = p.BytesSent()
		ts.Bitrate = t.rate.bitrate(ts.BytesSent, now)
	}
	t.mu.Lock()
	ts.State, ts.Reconnects = t.state, t.reconnects
	t.mu.Unlock()
	return ts
}

// rttMs is the selected ICE candidate pair's current round-trip time.
func (s *Stream) rttMs() float64 {
	for _, st := range s.pc.GetStats() {
		if p, ok := st.(webrtc.ICECandidatePairStats); ok && p.Nominated && p.CurrentRoundTripTime > 0 {
			return math.Round(p.CurrentRoundTripTime*1e5) / 100
		}
	}
	return 0
}
