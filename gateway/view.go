package gateway

import "time"

// The API views of the gateway's objects. They are snapshots: building one
// takes the owners' locks briefly and copies.

// VideoInfo describes a stream's inbound video.
type VideoInfo struct {
	Codec   string  `json:"codec"`
	Profile string  `json:"profile"`
	Width   int     `json:"width"`
	Height  int     `json:"height"`
	FPS     float64 `json:"fps"`
}

// AudioInfo describes a stream's inbound audio.
type AudioInfo struct {
	Codec      string `json:"codec"`
	SampleRate int    `json:"sampleRate"`
	Channels   int    `json:"channels"`
}

// StreamInfo is the API view of a stream.
type StreamInfo struct {
	ID         string         `json:"id"`
	Name       string         `json:"name"`
	State      StreamState    `json:"state"`
	CreatedAt  time.Time      `json:"createdAt"`
	Video      *VideoInfo     `json:"video"`
	Audio      *AudioInfo     `json:"audio"`
	AudioMuted bool           `json:"audioMuted"`
	VideoMuted bool           `json:"videoMuted"`
	Broadcast  *BroadcastInfo `json:"broadcast"`
}

// BroadcastInfo is the API view of a broadcast.
type BroadcastInfo struct {
	State     BroadcastState `json:"state"`
	StartedAt time.Time      `json:"startedAt"`
	Targets   []TargetInfo   `json:"targets"`
}

// TargetInfo is the API view of a target. Output is redacted.
type TargetInfo struct {
	ID         string      `json:"id"`
	Output     string      `json:"output"`
	State      TargetState `json:"state"`
	Error      *ErrorInfo  `json:"error"`
	Reconnects int         `json:"reconnects"`
	// What the target asked for, echoed: videobitrate caps the publisher
	// (REMB, b=AS); framerate is for the client to apply.
	VideoBitrate int     `json:"videobitrate,omitempty"`
	Framerate    float64 `json:"framerate,omitempty"`
	AudioBitrate int     `json:"audiobitrate,omitempty"`
	AudioCodec   string  `json:"audiocodec"`
}

// ErrorInfo is an error as the API shows it.
type ErrorInfo struct {
	Code    Code   `json:"code"`
	Message string `json:"message"`
}

// Info returns the API view of the stream.
func (s *Stream) Info() StreamInfo {
	si := StreamInfo{ID: s.id, Name: s.name, State: s.State(), CreatedAt: s.createdAt}
	if s.video != nil {
		si.Video = s.video.info()
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
