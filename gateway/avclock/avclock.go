// Package avclock is a stream's one A/V timeline, on which the video
// frames and the audio samples are placed against each other.
package avclock

import (
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"

	"github.com/castbridge/castbridge/transmux/rtp/avsync"
)

// Clock is a stream's one A/V timeline: both tracks are observed by the
// same avsync.Sync, so they are placed against each other by the
// publisher's RTCP Sender Reports (by arrival time before the first SR, or
// for publishers that never send one).
//
// The video keeps its exact RTP timing: its frame times are its RTP times
// from the first frame, anchored where the Sync placed that frame. Whatever
// the Sync's placement of the video moves by afterwards (its slew from
// arrival time to SR time) is kept in corr and applied to the audio
// instead, so the audio lands where the SRs say relative to the video
// without the video's timestamps ever deviating from the source's.
type Clock struct {
	mu       sync.Mutex
	sync     *avsync.Sync
	video    avsync.Track
	audio    avsync.Track
	vStarted bool
	vOffset  int64 // stream ms of video RTP time 0 (the first frame)
	corr     int64 // the Sync's video placement minus the video's stream ms

	// epoch is the unix ns of stream time 0 by the least-delayed media seen:
	// the stream's "now" for whatever runs on the clock without media
	// (silence, Icecast audio).
	epoch atomic.Int64 // math.MaxInt64 until media arrived
}

func New() *Clock {
	c := &Clock{sync: avsync.New()}
	c.video = c.sync.AddTrack(90000)
	c.audio = c.sync.AddTrack(48000)
	c.epoch.Store(math.MaxInt64)
	return c
}

// VideoMillis returns the stream time of the video frame whose exact time
// on the video's own RTP timeline is exact (ms from its first frame).
func (c *Clock) VideoMillis(exact uint32, rtpTS uint32, arrival time.Time) uint32 {
	c.mu.Lock()
	obs := c.sync.Observe(c.video, rtpTS, arrival)
	if !c.vStarted {
		c.vStarted = true
		c.vOffset = obs - int64(exact)
	}
	out := int64(exact) + c.vOffset
	c.corr = obs - out
	c.mu.Unlock()
	c.noteEpoch(arrival, out)
	return uint32(out)
}

// AudioMillis returns the stream time of the audio packet with RTP time
// rtpTS (48 kHz) that arrived at arrival.
func (c *Clock) AudioMillis(rtpTS uint32, arrival time.Time) int64 {
	c.mu.Lock()
	out := c.sync.Observe(c.audio, rtpTS, arrival) - c.corr
	c.mu.Unlock()
	c.noteEpoch(arrival, out)
	return out
}

// OnSenderReport records a track's SR (video when video is set).
func (c *Clock) OnSenderReport(video bool, sr *rtcp.SenderReport) {
	tr := c.audio
	if video {
		tr = c.video
	}
	c.mu.Lock()
	c.sync.OnSenderReport(tr, sr)
	c.mu.Unlock()
}

func (c *Clock) noteEpoch(arrival time.Time, ms int64) {
	e := arrival.UnixNano() - ms*int64(time.Millisecond)
	for {
		cur := c.epoch.Load()
		if e >= cur || c.epoch.CompareAndSwap(cur, e) {
			return
		}
	}
}

// NowMillis is the stream time of the wall-clock instant now, false before
// any media arrived.
func (c *Clock) NowMillis(now time.Time) (int64, bool) {
	e := c.epoch.Load()
	if e == math.MaxInt64 {
		return 0, false
	}
	return (now.UnixNano() - e) / int64(time.Millisecond), true
}
