package gateway

import (
	"fmt"
	"math"
	"time"

	"github.com/castbridge/castbridge/gateway/rtmpout"
	"github.com/castbridge/castbridge/gateway/webrtcin"
)

// The API views of the gateway's objects. They are snapshots: building one
// takes the owners' locks briefly and copies.

// VideoInfo describes a stream's inbound video.
type VideoInfo struct {
	Codec   string  `json:"codec"`
	Profile string  `json:"profile"`
	Width   int     `json:"width"`
	Height  int     `json:"height"`
	FPS     float64 `json:"fps"`
	// Layers are a simulcast publisher's layers, in the order they
	// arrived, and Layer the rid of the one forwarded; absent without
	// simulcast.
	Layers []LayerInfo `json:"layers,omitempty"`
	Layer  string      `json:"layer,omitempty"`
	// Filler is set while the broadcast gets filler frames instead of the
	// publisher's picture (muted, or its video stalled), FillerReason why.
	Filler       bool   `json:"filler"`
	FillerReason string `json:"fillerReason,omitempty"`
}

// LayerInfo is one simulcast layer: its rid, its resolution once its SPS
// arrived, the bit rate it is received at, whether it is sending and
// whether it is the one forwarded.
type LayerInfo struct {
	RID       string  `json:"rid"`
	Width     int     `json:"width"`
	Height    int     `json:"height"`
	Bitrate   float64 `json:"bitrate"`
	Active    bool    `json:"active"`
	Forwarded bool    `json:"forwarded"`
}

// AudioInfo describes a stream's inbound audio.
type AudioInfo struct {
	Codec      string `json:"codec"`
	SampleRate int    `json:"sampleRate"`
	Channels   int    `json:"channels"`
}

// StreamInfo is the API view of a stream.
type StreamInfo struct {
	ID    string      `json:"id"`
	Name  string      `json:"name"`
	State StreamState `json:"state"`
	// Source is where the media comes from: "webrtc" (WHIP or an SDP
	// offer) or "rtmp" (a publish to the built-in ingest with a relay key).
	Source     string         `json:"source"`
	CreatedAt  time.Time      `json:"createdAt"`
	Video      *VideoInfo     `json:"video"`
	Audio      *AudioInfo     `json:"audio"`
	AudioMuted bool           `json:"audioMuted"`
	VideoMuted bool           `json:"videoMuted"`
	Broadcast  *BroadcastInfo `json:"broadcast"`
	// Rejected lists the offered tracks the answer rejected (port 0), and
	// why; empty when every offered track is taken. Warnings says the same
	// in words, one line each (API.md's "warnings").
	Rejected []RejectedTrack `json:"rejected"`
	Warnings []string        `json:"warnings"`
	// Node is the id of the node that owns the stream (Config.NodeID),
	// in a cluster (--redis) only.
	Node string `json:"node,omitempty"`
}

// RejectedTrack is an offered m-section the answer rejected: its mid, its
// kind and the reason.
type RejectedTrack = webrtcin.Rejection

// Warnings words each rejected track as one line of the view's warnings.
func Warnings(rejected []RejectedTrack) []string {
	w := make([]string, 0, len(rejected))
	for _, r := range rejected {
		w = append(w, fmt.Sprintf("the offer's %s track (mid %s) was rejected and is not received: %s", r.Kind, r.MID, r.Reason))
	}
	return w
}

// BroadcastInfo is the API view of a broadcast.
type BroadcastInfo struct {
	State     BroadcastState `json:"state"`
	StartedAt time.Time      `json:"startedAt"`
	Targets   []rtmpout.Info `json:"targets"`
}

// Info returns the API view of the stream.
func (s *Stream) Info() StreamInfo {
	si := StreamInfo{ID: s.id, Name: s.name, State: s.State(), Source: s.src.Kind(), CreatedAt: s.createdAt, Rejected: s.Rejected()}
	if s.cfg != nil { // a test's bare Stream has none
		si.Node = s.cfg.NodeID
	}
	if si.Rejected == nil {
		si.Rejected = []RejectedTrack{}
	}
	si.Warnings = Warnings(si.Rejected)
	if s.rtmp != nil {
		if ps := s.rtmp.VideoParams(); ps != nil {
			si.Video = &VideoInfo{Codec: ps.VideoCodec().DisplayName(), Profile: ps.Profile, Width: ps.Width, Height: ps.Height, FPS: math.Round(s.rtmp.FPS()*100) / 100}
		}
	}
	if s.video != nil {
		if ps := s.video.Params(); ps != nil {
			si.Video = &VideoInfo{Codec: ps.VideoCodec().DisplayName(), Profile: ps.Profile, Width: ps.Width, Height: ps.Height, FPS: math.Round(s.video.FPS()*100) / 100}
			on, why := s.video.Filling()
			si.Video.Filler, si.Video.FillerReason = on, string(why)
			now := time.Now()
			layers, _ := s.video.Layers(now)
			for _, l := range layers {
				si.Video.Layers = append(si.Video.Layers, LayerInfo{RID: l.RID, Width: l.Width, Height: l.Height,
					Bitrate: s.layerBitrate(l, now), Active: l.Active, Forwarded: l.Forwarded})
				if l.Forwarded {
					si.Video.Layer = l.RID
				}
			}
		}
	}
	s.mu.Lock()
	if s.audioInfo != nil {
		a := *s.audioInfo
		si.Audio = &a
	}
	si.AudioMuted, si.VideoMuted = s.audioMuted, s.videoMuted
	b := s.broadcast
	s.mu.Unlock()
	if b != nil {
		bi := b.Info()
		si.Broadcast = &bi
	}
	return si
}
