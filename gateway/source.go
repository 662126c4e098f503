package gateway

import (
	"net/http"
	"time"

	"github.com/castbridge/castbridge/gateway/audio"
	"github.com/castbridge/castbridge/gateway/media"
	"github.com/castbridge/castbridge/gateway/rtmpout"
)

// mediaSource is where a stream's media comes from: a WebRTC session's
// receive pipelines (webrtcSource) or an RTMP publish to the built-in
// ingest (rtmpSource, rtmpin.go). A broadcast fans out what its source
// delivers, video frames to Broadcast.Deliver and audio frames to
// Broadcast.SendAudio, without knowing which kind it is; its targets see
// the stream only as their rtmpout.Host, which asks the source.
type mediaSource interface {
	// Kind is the stream view's "source": "webrtc" or "rtmp".
	Kind() string
	// HasVideo reports whether the stream has video: its targets start
	// on a keyframe (else on their first audio frame).
	HasVideo() bool
	// VideoParams is the video configuration in force, nil before one.
	VideoParams() *media.ParamSet
	// FPS and VideoBitrate are the video as received (bit/s).
	FPS() float64
	VideoBitrate(now time.Time) float64
	// LastMillis is the stream time of the newest frame.
	LastMillis() uint32
	// RequestKeyframe asks the publisher for a keyframe, where it can be.
	RequestKeyframe(reason string)
	// NewAudio makes the audio outputs of a broadcast delivering to b.
	NewAudio(b *Broadcast) broadcastAudio
	// Attach makes b take the source's frames from now on; Detach ends it
	// (when b still is the one taking them).
	Attach(b *Broadcast)
	Detach(b *Broadcast)
}

// broadcastAudio is a broadcast's audio outputs: each target takes the
// frames of one of them.
type broadcastAudio interface {
	// For gives a target of spec its audio output.
	For(spec rtmpout.Spec, icecastClient *http.Client) (rtmpout.AudioSource, error)
	// Release gives back a target's output (removed, or never started).
	Release(src rtmpout.AudioSource)
	// Install starts feeding the outputs, Uninstall stops (flushing).
	Install()
	Uninstall()
	// Empty reports whether there are no outputs; Close ends them all.
	Empty() bool
	Close()
}

// webrtcSource is a WebRTC session's pipelines as a stream's source. The
// video pipeline delivers to the broadcast directly (its sink): the hot
// path goes through no interface of this file.
type webrtcSource struct{ s *Stream }

func (w webrtcSource) Kind() string   { return "webrtc" }
func (w webrtcSource) HasVideo() bool { return w.s.video != nil }

func (w webrtcSource) VideoParams() *media.ParamSet {
	if w.s.video == nil {
		return nil
	}
	return w.s.video.Params()
}

func (w webrtcSource) FPS() float64 {
	if w.s.video == nil {
		return 0
	}
	return w.s.video.FPS()
}

func (w webrtcSource) VideoBitrate(now time.Time) float64 {
	if w.s.video == nil {
		return 0
	}
	return w.s.video.Bitrate(now)
}

func (w webrtcSource) LastMillis() uint32 {
	var ms uint32
	if w.s.video != nil {
		ms = w.s.video.LastMillis()
	}
	return max(ms, uint32(w.s.audio.LastMillis()))
}

func (w webrtcSource) RequestKeyframe(reason string) {
	if w.s.video != nil {
		// While the filler holds the picture, the target gets its next
		// frame as a keyframe too.
		w.s.video.RequestFillKeyframe()
		w.s.video.RequestKeyframe(reason)
	}
}

func (w webrtcSource) NewAudio(b *Broadcast) broadcastAudio {
	return webrtcAudio{w.s.audio.NewOutputs(b)}
}

func (w webrtcSource) Attach(b *Broadcast) {
	if v := w.s.video; v != nil {
		v.SetSink(b)
		v.ArmKeyframes()
		v.RequestFillKeyframe()
		v.RequestKeyframe("broadcast started")
	}
}

func (w webrtcSource) Detach(b *Broadcast) {
	if v := w.s.video; v != nil {
		v.ClearSink(b)
		v.DisarmKeyframes()
	}
}

// webrtcAudio is the audio package's outputs (AAC encoders, the Opus
// passthrough, Icecast sources) as a broadcast's audio.
type webrtcAudio struct{ outs *audio.Outputs }

func (a webrtcAudio) For(spec rtmpout.Spec, icecastClient *http.Client) (rtmpout.AudioSource, error) {
	return attachAudio(a.outs, spec, icecastClient)
}

func (a webrtcAudio) Release(src rtmpout.AudioSource) { a.outs.Release(src) }
func (a webrtcAudio) Install()                        { a.outs.Install() }
func (a webrtcAudio) Uninstall()                      { a.outs.Uninstall() }
func (a webrtcAudio) Empty() bool                     { return a.outs.Empty() }
func (a webrtcAudio) Close()                          { a.outs.Close() }
