// Package video is a stream's H.264 receive pipeline: RTP reordered (with
// NACKs for what is missing), depacketized into access units, placed on the
// stream's A/V clock and muxed once into FLV video frames for the running
// broadcast, with the keyframe requests (PLI) that loss, new targets and
// the keyframe interval call for.
package video

import (
	"bytes"
	"encoding/binary"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"

	"github.com/castbridge/castbridge/gateway/avclock"
	"github.com/castbridge/castbridge/gateway/media"
	"github.com/castbridge/castbridge/gateway/webrtcin"
	"github.com/castbridge/castbridge/transmux/format/flv"
	"github.com/castbridge/castbridge/transmux/rtp/aubuf"
	"github.com/castbridge/castbridge/transmux/rtp/rtpframe"
	"github.com/castbridge/castbridge/transmux/rtp/rtph264"
	"github.com/castbridge/castbridge/transmux/rtp/rtpreorder"
	"github.com/castbridge/castbridge/transmux/rtp/rtptime"
)

const (
	// reorderCapacity holds ~0.5 s of a 10 Mbit/s stream in MTU-sized packets.
	reorderCapacity = 1024
	// reorderDelay is how long a gap may wait for its NACKed retransmission.
	reorderDelay = 150 * time.Millisecond
	// minPLIGap keeps keyframe requests from piling up: one IDR answers all.
	minPLIGap = 300 * time.Millisecond
	// pliRetry is how soon an unanswered periodic keyframe request repeats.
	pliRetry = 500 * time.Millisecond
)

// Feedback is what the pipeline sends the publisher.
type Feedback interface {
	SendNACK(ssrc uint32, pairs []rtcp.NackPair)
	SendPLI(ssrc uint32)
}

// Sink takes the pipeline's frames: the running broadcast. Deliver must not
// block and must not keep f past its return without retaining it.
type Sink interface {
	Deliver(f *media.Frame)
}

// Config is what a Pipeline is made from.
type Config struct {
	Feedback Feedback
	Clock    *avclock.Clock
	Frames   *media.FramePool
	// AUBuffers lends the depacketizer its buffers for keyframes (nil:
	// the track keeps one of its largest frame's size).
	AUBuffers *aubuf.Pool
	// KeyframeInterval is the longest a broadcast waits for a keyframe
	// before the publisher is asked for one.
	KeyframeInterval time.Duration
	// OnFrame is called on the receive goroutine after every access unit
	// with the stream times its display starts and ends at (the audio
	// follows it). It must not block.
	OnFrame func(now time.Time, startMs, endMs int64)
	// VideoGap is how long the publisher's video may stall while its
	// audio flows before the filler feeds the broadcast (filler.go); 0
	// fills only while muted.
	VideoGap time.Duration
	// AudioFlowing says whether the publisher's audio arrives now; nil
	// for a stream without audio.
	AudioFlowing func(now time.Time) bool
	// OnFiller is told when the filler starts and ends (on either
	// goroutine, under the filler's lock): it must not block or call
	// back into the pipeline.
	OnFiller func(active bool, reason FillReason)
	Logger   *slog.Logger
}

// Pipeline turns a publisher's H.264 RTP into FLV video frames. Its
// receive state belongs to the one goroutine that calls HandlePacket; what
// other goroutines read is atomic.
type Pipeline struct {
	cfg     Config
	log     *slog.Logger
	reorder *rtpreorder.Buffer
	nack    webrtcin.NACKTracker
	depack  rtph264.Depacketizer
	// frames depacketizes VP9, AV1 and H.265 (codecs.go); nil for H.264,
	// which keeps its own path untouched.
	frames   *rtpframe.Depacketizer
	timeline *rtptime.Timeline
	cont     *rtptime.Continuity     // rebases RTP timestamp jumps (a looping source)
	sink     atomic.Pointer[sinkBox] // the broadcast taking frames, if any
	// layers is the simulcast selection feeding HandlePacket, nil for a
	// publisher without simulcast (layers.go).
	layers   atomic.Pointer[layers]
	layersMu sync.Mutex // makes layers

	// receive-goroutine state
	pendingSPS   []byte
	pendingPPS   []byte
	pendingVPS   []byte // H.265
	waitKeyframe bool
	lastRTP      uint32
	haveLast     bool
	avgDelta     float64 // EWMA of frame spacing in 90 kHz ticks
	resets       uint64  // reorder buffer resets seen

	// shared state
	ssrc      atomic.Uint32
	rtpOffset atomic.Int64  // cont.Offset(), for the Sender Reports
	lastMs    atomic.Uint32 // stream time of the newest frame
	params    atomic.Pointer[media.ParamSet]
	fpsBits   atomic.Uint64 // float64 observed frame rate
	frameCnt  atomic.Uint64
	keyCnt    atomic.Uint64
	dropCnt   atomic.Uint64 // access units dropped as broken or undecodable
	bytesIn   atomic.Uint64
	firstAt   atomic.Int64  // unix ns of the first packet; 0 before it
	lost      atomic.Uint64 // packets given up on by the reorder buffer
	rtp       *webrtcin.RTPStats

	// the filler (filler.go)
	fill     filler
	muted    atomic.Bool
	fillKick chan struct{}
	fillCnt  atomic.Uint64

	kfMu      sync.Mutex
	lastPLI   time.Time
	kfTimer   *time.Timer
	kfArmed   bool
	kfStopped bool
	kfDue     time.Time // when kfTimer fires
	kfReason  string    // a rate-limited request kfTimer sends, "" for the periodic one
}

// sinkBox lets an interface value sit in an atomic.Pointer.
type sinkBox struct{ Sink }

// New returns a pipeline waiting for its track.
func New(cfg Config) *Pipeline {
	return &Pipeline{
		depack:       rtph264.Depacketizer{Buffers: cfg.AUBuffers},
		cfg:          cfg,
		log:          cfg.Logger,
		reorder:      rtpreorder.New(reorderCapacity, reorderDelay),
		timeline:     rtptime.NewTimeline(90000),
		cont:         rtptime.NewContinuity(90000),
		rtp:          webrtcin.NewRTPStats(90000),
		waitKeyframe: true,
		fillKick:     make(chan struct{}, 1),
	}
}

// RTP is the track's reception statistics.
func (v *Pipeline) RTP() *webrtcin.RTPStats { return v.rtp }

// Start is called when the track with this SSRC starts, before its first
// packet: the first keyframe is asked for at once.
func (v *Pipeline) Start(ssrc uint32) {
	v.ssrc.Store(ssrc)
	v.RequestKeyframe("track started")
}

// HandlePacket takes one RTP packet of the track (the read loop's handler).
func (v *Pipeline) HandlePacket(pkt []byte, now time.Time) {
	if v.bytesIn.Add(uint64(len(pkt))) == uint64(len(pkt)) {
		v.firstAt.Store(now.UnixNano())
	}
	if err := v.reorder.Push(pkt, now); err != nil {
		return // malformed packets are counted by the buffer
	}
	v.nack.OnPacket(binary.BigEndian.Uint16(pkt[2:4]), now)
	if seqs := v.nack.Due(now, reorderDelay); len(seqs) > 0 {
		v.cfg.Feedback.SendNACK(v.ssrc.Load(), v.nack.Pairs(seqs))
	}
	for {
		pkt, lost, ok := v.reorder.Pop(now)
		if !ok {
			break
		}
		if v.frames != nil {
			v.pushFrame(pkt, lost, now)
			continue
		}
		au, done, err := v.depack.Push(pkt, lost)
		if lost {
			st := v.reorder.Stats()
			v.lost.Store(st.Lost)
			if st.Resets != v.resets {
				// The publisher restarted its sequence (a new SSRC or a
				// jump): continue the timeline instead of jumping with it.
				v.resets = st.Resets
				v.timeline.Rebase()
			}
		}
		if lost || err != nil {
			v.onBrokenFrame()
		}
		if done {
			v.onAccessUnit(&au, now)
		}
	}
}

// switchSource makes the packets that follow those of another SSRC, a
// simulcast layer switched to at its keyframe, whose RTP timestamps the
// caller has already put on this pipeline's timeline: the sequence
// position and any partial frame are forgotten (nothing of the new layer is
// lost), nothing is forwarded before its IDR, and its parameter sets (ps,
// nil when not known yet) are the ones in force.
func (v *Pipeline) switchSource(ssrc uint32, ps *media.ParamSet) {
	v.reorder.Reset()
	v.nack.Reset()
	v.waitKeyframe = true
	v.ssrc.Store(ssrc)
	if v.frames != nil {
		v.frames.Reset()
		if ps != nil {
			v.params.Store(ps)
		}
		return
	}
	v.depack.Reset()
	if ps != nil {
		v.pendingSPS = append(v.pendingSPS[:0], ps.SPS...)
		v.pendingPPS = append(v.pendingPPS[:0], ps.PPS...)
		v.updateParams()
	}
}

// onBrokenFrame handles a frame lost to packet loss or bad packetization:
// later P-frames reference it, so nothing is forwarded until the next IDR,
// which is asked for at once.
func (v *Pipeline) onBrokenFrame() {
	v.dropCnt.Add(1)
	if !v.waitKeyframe {
		v.waitKeyframe = true
	}
	v.RequestKeyframe("frame lost")
}

func (v *Pipeline) onAccessUnit(au *rtph264.AccessUnit, now time.Time) {
	if au.SPS != nil {
		v.pendingSPS = append(v.pendingSPS[:0], au.SPS...)
	}
	if au.PPS != nil {
		v.pendingPPS = append(v.pendingPPS[:0], au.PPS...)
	}
	if au.SPS != nil || au.PPS != nil {
		v.updateParams()
	}
	ms := v.frameMillis(au.Timestamp, now)
	// An IDR without parameter sets cannot be decoded: ask again.
	ps, sink, ok := v.admit(au.IDR, "no SPS/PPS yet")
	if !ok {
		return
	}
	f := v.newFrame(ms, au.IDR, ps, now)
	f.Body = flv.AppendAVCNALUs(f.Body, au.NALUs, au.IDR, 0)
	v.deliver(sink, f)
}

// frameMillis counts a frame and places it on the stream's A/V clock: its
// RTP time with the publisher's jumps rebased, exact on the video's own
// timeline.
func (v *Pipeline) frameMillis(rawTS uint32, now time.Time) uint32 {
	v.frameCnt.Add(1)
	rtpTS := uint32(v.cont.Map(rawTS, now.UnixNano()))
	if off := v.cont.Offset(); off != v.rtpOffset.Load() {
		v.rtpOffset.Store(off)
		v.log.Info("video RTP timestamps jumped: rebased", "jumps", v.cont.Jumps())
	}
	v.updateRate(rtpTS)
	v.notePublisherFrame(now)
	ms := v.cfg.Clock.VideoMillis(v.timeline.Millis(rtpTS), rtpTS, now)
	v.lastMs.Store(ms)
	if v.cfg.OnFrame != nil {
		frame := int64(33)
		if f := v.FPS(); f > 0 {
			frame = int64(1000 / f)
		}
		v.cfg.OnFrame(now, int64(ms), int64(ms)+frame)
	}
	return ms
}

// admit says whether a frame goes to the sink: after a loss or at the
// start only from a keyframe on, and only once the codec's configuration
// is known (else a keyframe is asked for, noParams saying why).
func (v *Pipeline) admit(key bool, noParams string) (*media.ParamSet, *sinkBox, bool) {
	if key {
		v.keyCnt.Add(1)
		v.onKeyframe()
	}
	if v.waitKeyframe {
		if !key {
			return nil, nil, false
		}
		v.waitKeyframe = false
	}
	ps := v.params.Load()
	if ps == nil {
		v.waitKeyframe = true
		v.RequestKeyframe(noParams)
		return nil, nil, false
	}
	sink := v.sink.Load()
	return ps, sink, sink != nil
}

// newFrame is a pooled video frame at stream time ms, its body empty.
func (v *Pipeline) newFrame(ms uint32, key bool, ps *media.ParamSet, now time.Time) *media.Frame {
	f := v.cfg.Frames.Get()
	f.TagType = flv.TagVideo
	f.TS = ms
	f.Keyframe = key
	f.Params = ps
	f.RecvAt = now
	return f
}

func (v *Pipeline) updateParams() {
	if v.pendingSPS == nil || v.pendingPPS == nil {
		return
	}
	if cur := v.params.Load(); cur != nil && bytes.Equal(cur.SPS, v.pendingSPS) && bytes.Equal(cur.PPS, v.pendingPPS) {
		return
	}
	ps, err := media.NewParamSet(v.pendingSPS, v.pendingPPS)
	if err != nil {
		v.log.Warn("unusable SPS/PPS from publisher", "err", err)
		return
	}
	v.log.Info("video parameters", "width", ps.Width, "height", ps.Height, "profile", ps.Profile)
	v.params.Store(ps)
}

func (v *Pipeline) updateRate(ts uint32) {
	if v.haveLast {
		d := float64(int32(ts - v.lastRTP))
		if d > 0 && d < 90000 {
			if v.avgDelta == 0 {
				v.avgDelta = d
			} else {
				v.avgDelta += (d - v.avgDelta) / 16
			}
			v.fpsBits.Store(math.Float64bits(90000 / v.avgDelta))
		}
	}
	v.lastRTP, v.haveLast = ts, true
}

// Bitrate is the average bit rate received (RTP packets) from the first
// packet to now, 0 in the first 100 ms.
func (v *Pipeline) Bitrate(now time.Time) float64 {
	first := v.firstAt.Load()
	d := time.Duration(now.UnixNano() - first)
	if first == 0 || d < 100*time.Millisecond {
		return 0
	}
	return float64(v.bytesIn.Load()) * 8 / d.Seconds()
}

// RTPOffset is what the pipeline adds to the publisher's RTP timestamps
// (rebased jumps): a Sender Report's RTP time plus it is on the timeline
// the frames are placed by.
func (v *Pipeline) RTPOffset() int64 { return v.rtpOffset.Load() }

// FPS is the observed frame rate (0 until two frames arrived).
func (v *Pipeline) FPS() float64 { return math.Float64frombits(v.fpsBits.Load()) }

// RequestKeyframe sends a PLI unless one went out very recently. While a
// broadcast runs, a request that comes too soon is sent when the gap has
// passed, unless a keyframe arrives first: a target that starts just after
// the track did must not wait for the publisher's next keyframe of its own,
// which may be seconds away.
func (v *Pipeline) RequestKeyframe(reason string) {
	ssrc := v.ssrc.Load()
	if ssrc == 0 {
		return
	}
	v.kfMu.Lock()
	if since := time.Since(v.lastPLI); since < minPLIGap {
		if v.kfArmed && !v.kfStopped {
			if due := v.lastPLI.Add(minPLIGap); due.Before(v.kfDue) {
				v.kfReason = reason + " (deferred)"
				v.resetTimerLocked(minPLIGap - since)
			}
		}
		v.kfMu.Unlock()
		return
	}
	v.lastPLI = time.Now()
	v.kfMu.Unlock()
	v.log.Debug("pli", "reason", reason)
	v.cfg.Feedback.SendPLI(ssrc)
}

// keyframeLead is how much earlier than the interval the periodic request
// goes out, so the answering IDR lands within the interval.
func (v *Pipeline) keyframeLead() time.Duration {
	lead := 50 * time.Millisecond
	if f := v.FPS(); f > 0 {
		lead = max(lead, time.Duration(2*float64(time.Second)/f))
	}
	return lead
}

// ArmKeyframes starts the periodic keyframe requests of a broadcast.
func (v *Pipeline) ArmKeyframes() {
	v.kfMu.Lock()
	defer v.kfMu.Unlock()
	if v.kfStopped {
		return
	}
	v.kfArmed = true
	v.resetTimerLocked(v.cfg.KeyframeInterval - v.keyframeLead())
}

// DisarmKeyframes stops them when the broadcast ends.
func (v *Pipeline) DisarmKeyframes() {
	v.kfMu.Lock()
	defer v.kfMu.Unlock()
	v.kfArmed, v.kfReason = false, ""
	if v.kfTimer != nil {
		v.kfTimer.Stop()
	}
}

func (v *Pipeline) onKeyframe() {
	v.kfMu.Lock()
	defer v.kfMu.Unlock()
	if v.kfArmed {
		v.kfReason = "" // a deferred request is answered
		v.resetTimerLocked(v.cfg.KeyframeInterval - v.keyframeLead())
	}
}

func (v *Pipeline) resetTimerLocked(d time.Duration) {
	v.kfDue = time.Now().Add(d)
	if v.kfTimer == nil {
		v.kfTimer = time.AfterFunc(d, v.keyframeDue)
		return
	}
	v.kfTimer.Reset(d)
}

func (v *Pipeline) keyframeDue() {
	v.kfMu.Lock()
	if !v.kfArmed || v.kfStopped {
		v.kfMu.Unlock()
		return
	}
	reason := v.kfReason
	if reason == "" {
		reason = "keyframe interval"
	}
	v.kfReason = ""
	v.resetTimerLocked(pliRetry)
	v.kfMu.Unlock()
	v.RequestKeyframe(reason)
}

// Close stops the keyframe timer for good: the stream is closing.
func (v *Pipeline) Close() {
	v.kfMu.Lock()
	v.kfStopped = true
	v.kfArmed = false
	if v.kfTimer != nil {
		v.kfTimer.Stop()
	}
	v.kfMu.Unlock()
}

// SetSink makes s take the frames from now on.
func (v *Pipeline) SetSink(s Sink) { v.sink.Store(&sinkBox{s}) }

// ClearSink stops delivering to s, if it is still the sink.
func (v *Pipeline) ClearSink(s Sink) {
	if cur := v.sink.Load(); cur != nil && cur.Sink == s {
		v.sink.CompareAndSwap(cur, nil)
	}
}

// SSRC is the track's SSRC, 0 before it started.
func (v *Pipeline) SSRC() uint32 { return v.ssrc.Load() }

// LastMillis is the stream time of the newest frame.
func (v *Pipeline) LastMillis() uint32 { return v.lastMs.Load() }

// Params is the parameter set in force, nil before the first SPS/PPS.
func (v *Pipeline) Params() *media.ParamSet { return v.params.Load() }

// Counters are the pipeline's running totals.
type Counters struct {
	Frames    uint64 // access units received
	Keyframes uint64
	Dropped   uint64 // access units dropped as broken or undecodable
	BytesIn   uint64 // RTP bytes received
	Lost      uint64 // packets given up on by the reorder buffer
}

// Counters returns the totals now.
func (v *Pipeline) Counters() Counters {
	return Counters{
		Frames:    v.frameCnt.Load(),
		Keyframes: v.keyCnt.Load(),
		Dropped:   v.dropCnt.Load(),
		BytesIn:   v.bytesIn.Load(),
		Lost:      v.lost.Load(),
	}
}
