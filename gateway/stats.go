package gateway

import (
	"math"
	"time"

	"github.com/castbridge/castbridge/gateway/rtmpout"
)

// Stats is a snapshot of a stream's counters (GET /v1/streams/{id}/stats).
type Stats struct {
	At      time.Time       `json:"at"`
	Inbound InboundStats    `json:"inbound"`
	Targets []rtmpout.Stats `json:"targets"`
}

// InboundStats is what the publisher sends.
type InboundStats struct {
	Video *VideoStats `json:"video"`
	Audio *AudioStats `json:"audio"`
	// RTTMs is the round trip to the publisher from ICE consent checks
	// (0 for an RTMP publisher).
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
	// KeyframeIntervalMs is an RTMP publisher's own GOP: the stream time
	// between its last two keyframes (castbridge cannot ask it for more);
	// absent for WebRTC publishers, which are asked (PLI).
	KeyframeIntervalMs int64 `json:"keyframeIntervalMs,omitempty"`
	// Layers are a simulcast publisher's layers and LayerSwitches how
	// often the forwarded one changed; absent without simulcast. The
	// counters above are those of the forwarded video.
	Layers        []LayerStats `json:"layers,omitempty"`
	LayerSwitches uint64       `json:"layerSwitches,omitempty"`
	// FillerFrames counts the filler frames sent instead of the
	// publisher's picture (muted, or its video stalled).
	FillerFrames uint64 `json:"fillerFrames"`
}

// LayerStats counts one simulcast layer as received.
type LayerStats struct {
	LayerInfo
	SSRC        uint32  `json:"ssrc"`
	Packets     uint64  `json:"packetsReceived"`
	Bytes       uint64  `json:"bytesReceived"`
	PacketsLost uint64  `json:"packetsLost"`
	JitterMs    float64 `json:"jitterMs"`
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

// Stats returns the stream's counters now.
func (s *Stream) Stats() Stats {
	now := time.Now()
	st := Stats{At: now.UTC()}
	if s.rtmp != nil {
		s.rtmp.stats(&st, now)
		s.addTargetStats(&st, now)
		return st
	}
	fb := s.session.Counters()
	if v := s.video; v != nil {
		vc := v.Counters()
		vs := &VideoStats{
			Bitrate:       s.videoRate.Bitrate(vc.BytesIn, now),
			FPS:           math.Round(v.FPS()*100) / 100,
			PacketsLost:   vc.Lost,
			NACKs:         fb.NACKs(),
			PLIs:          fb.PLIs(),
			Keyframes:     vc.Keyframes,
			JitterMs:      v.RTP().JitterMs(),
			BitrateCap:    s.bitrateCap.Load(),
			FramesDropped: vc.Dropped,
			FillerFrames:  v.FillerFrames(),
		}
		if ps := v.Params(); ps != nil {
			vs.Width, vs.Height = ps.Width, ps.Height
		}
		layers, switches := v.Layers(now)
		for _, l := range layers {
			vs.Layers = append(vs.Layers, LayerStats{
				LayerInfo: LayerInfo{RID: l.RID, Width: l.Width, Height: l.Height, Bitrate: s.layerBitrate(l, now), Active: l.Active, Forwarded: l.Forwarded},
				SSRC:      l.SSRC, Packets: l.Packets, Bytes: l.BytesIn, PacketsLost: l.RTP.Lost(), JitterMs: l.RTP.JitterMs(),
			})
			if l.Forwarded {
				vs.JitterMs = l.RTP.JitterMs()
			}
		}
		vs.LayerSwitches = switches
		st.Inbound.Video = vs
	}
	s.mu.Lock()
	hasAudio := s.audioInfo != nil
	s.mu.Unlock()
	if hasAudio {
		st.Inbound.Audio = &AudioStats{
			Bitrate:     s.audioRate.Bitrate(s.audioBytes.Load(), now),
			PacketsLost: s.audio.RTP().Lost(),
			JitterMs:    s.audio.RTP().JitterMs(),
			ConcealedMs: math.Round(float64(s.audio.ConcealedSamples()) / 48),
		}
	}
	st.Inbound.RTTMs = s.session.RTTMs()
	s.addTargetStats(&st, now)
	return st
}

// addTargetStats adds the broadcast's targets' counters.
func (s *Stream) addTargetStats(st *Stats, now time.Time) {
	s.mu.Lock()
	b := s.broadcast
	s.mu.Unlock()
	st.Targets = []rtmpout.Stats{}
	if b != nil {
		for _, t := range b.Targets() {
			st.Targets = append(st.Targets, t.Stats(now))
		}
	}
}
