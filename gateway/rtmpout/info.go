package rtmpout

import (
	"math"
	"time"

	"github.com/castbridge/castbridge/gateway/apierr"
)

// Info is the API view of a target. Output is redacted.
type Info struct {
	ID         string       `json:"id"`
	Output     string       `json:"output"`
	State      State        `json:"state"`
	Stalled    bool         `json:"stalled"` // connected, but the ingest takes no writes: the queue cannot drain
	Error      *apierr.Info `json:"error"`
	Reconnects int          `json:"reconnects"`
	// What the target asked for, echoed: videobitrate caps the publisher
	// (REMB, b=AS); framerate is for the client to apply.
	VideoBitrate int     `json:"videobitrate,omitempty"`
	Framerate    float64 `json:"framerate,omitempty"`
	AudioBitrate int     `json:"audiobitrate,omitempty"`
	AudioCodec   string  `json:"audiocodec"`
	// VideoCodec is the video the target carries (auto resolved), "" for
	// an audio-only stream.
	VideoCodec string `json:"videocodec,omitempty"`
}

// Stats counts what one target wrote.
type Stats struct {
	ID            string  `json:"id"`
	State         State   `json:"state"`
	Stalled       bool    `json:"stalled"`
	BytesSent     uint64  `json:"bytesSent"`
	Bitrate       float64 `json:"bitrate"`
	FramesSent    uint64  `json:"framesSent"`
	FramesDropped uint64  `json:"framesDropped"`
	// AudioDropped counts audio frames that came later than holdMax
	// behind the video already written (the audio stalled): dropped to
	// keep the connection's timestamps in order.
	AudioDropped uint64  `json:"audioDropped"`
	QueueMs      float64 `json:"queueMs"`
	Reconnects   int     `json:"reconnects"`
	// LatencyP50Ms and LatencyP99Ms measure from a frame's last RTP packet
	// arriving to its tag being written to the ingest's socket.
	LatencyP50Ms float64 `json:"latencyP50Ms"`
	LatencyP99Ms float64 `json:"latencyP99Ms"`
}

// Totals are a target's running totals, for the gateway's metrics.
type Totals struct {
	BytesSent     uint64 // on every connection so far
	FramesSent    uint64 // video frames
	AudioSent     uint64 // audio frames
	FramesDropped uint64
	Reconnects    int
}

// Totals returns the target's totals now.
func (t *Target) Totals() Totals {
	tt := Totals{
		BytesSent:     t.bytesBefore.Load(),
		FramesSent:    t.framesSent.Load(),
		AudioSent:     t.audioSent.Load(),
		FramesDropped: t.framesDropped.Load(),
	}
	if p := t.publisher(); p != nil {
		tt.BytesSent += p.BytesSent()
	}
	t.mu.Lock()
	tt.Reconnects = t.reconnects
	t.mu.Unlock()
	return tt
}

// queueMs is how much stream time waits in the target's queue.
func (t *Target) queueMs() float64 {
	if len(t.queue) == 0 {
		return 0
	}
	return float64(max(0, int32(t.enqueuedMs.Load()-t.dequeuedMs.Load())))
}

// Stats returns the target's counters now.
func (t *Target) Stats(now time.Time) Stats {
	t.checkStall(now)
	ts := Stats{
		ID:            t.id,
		FramesSent:    t.framesSent.Load(),
		FramesDropped: t.framesDropped.Load(),
		AudioDropped:  t.lateAudio.Load(),
		QueueMs:       t.queueMs(),
		LatencyP50Ms:  millis(t.latency.quantile(0.5)),
		LatencyP99Ms:  millis(t.latency.quantile(0.99)),
	}
	if p := t.publisher(); p != nil {
		ts.BytesSent = p.BytesSent()
		ts.Bitrate = t.rate.Bitrate(ts.BytesSent, now)
	}
	t.mu.Lock()
	ts.State, ts.Stalled, ts.Reconnects = t.state, t.reportedStall(), t.reconnects
	t.mu.Unlock()
	return ts
}

// millis rounds a duration to hundredths of a millisecond.
func millis(d time.Duration) float64 { return math.Round(float64(d)/1e4) / 100 }
