package gateway

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/pion/webrtc/v3"

	"github.com/castbridge/castbridge/transmux/format/flv"
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

// paramSet is an immutable SPS/PPS pair with what is derived from it. A new
// one is made only when the publisher's parameter sets change.
type paramSet struct {
	sps, pps  []byte
	seqHeader []byte // FLV AVC sequence header body
	width     int
	height    int
	spsFPS    float64 // from the SPS's VUI timing, 0 when absent
	profile   string  // profile-level-id, e.g. "42e01f"
}

func newParamSet(sps, pps []byte) (*paramSet, error) {
	var parsed h264.SPS
	if err := parsed.Unmarshal(sps); err != nil {
		return nil, err
	}
	ps := &paramSet{
		sps:    bytes.Clone(sps),
		pps:    bytes.Clone(pps),
		width:  parsed.Width(),
		height: parsed.Height(),
		spsFPS: parsed.FPS(),
	}
	if len(sps) >= 4 {
		ps.profile = hex.EncodeToString(sps[1:4])
	}
	hdr, err := flv.AppendAVCSequenceHeader(nil, ps.sps, ps.pps)
	if err != nil {
		return nil, err
	}
	ps.seqHeader = hdr
	return ps, nil
}

// videoPipeline turns a publisher's H.264 RTP into FLV video tags. Its
// receive state belongs to the one goroutine in run; what other goroutines
// read is atomic.
type videoPipeline struct {
	s        *Stream
	frames   *framePool
	reorder  *rtpreorder.Buffer
	nack     nackTracker
	depack   rtph264.Depacketizer
	timeline *rtptime.Timeline
	clock    *avClock                  // the stream's, shared with the audio
	sink     atomic.Pointer[Broadcast] // the broadcast taking frames, if any

	// receive-goroutine state
	pendingSPS   []byte
	pendingPPS   []byte
	waitKeyframe bool
	lastRTP      uint32
	haveLast     bool
	avgDelta     float64 // EWMA of frame spacing in 90 kHz ticks
	resets       uint64  // reorder buffer resets seen

	// shared state
	ssrc     atomic.Uint32
	lastMs   atomic.Uint32 // stream time of the newest frame
	params   atomic.Pointer[paramSet]
	fpsBits  atomic.Uint64 // float64 observed frame rate
	frameCnt atomic.Uint64
	keyCnt   atomic.Uint64
	dropCnt  atomic.Uint64 // access units dropped as broken or undecodable
	bytesIn  atomic.Uint64
	lost     atomic.Uint64 // packets given up on by the reorder buffer
	rtp      *rtpStats
	rate     rateMeter

	kfMu      sync.Mutex
	lastPLI   time.Time
	lastKey   time.Time
	kfTimer   *time.Timer
	kfArmed   bool
	kfStopped bool
	kfDue     time.Time // when kfTimer fires
	kfReason  string    // a rate-limited request kfTimer sends, "" for the periodic one
}

func newVideoPipeline(s *Stream) *videoPipeline {
	clock := s.clock
	if clock == nil {
		clock = newAVClock() // a bare Stream of a unit test
	}
	return &videoPipeline{
		clock:        clock,
		s:            s,
		frames:       s.m.frames,
		reorder:      rtpreorder.New(reorderCapacity, reorderDelay),
		timeline:     rtptime.NewTimeline(90000),
		rtp:          newRTPStats(90000),
		waitKeyframe: true,
	}
}

func (v *videoPipeline) run(track *webrtc.TrackRemote) {
	ssrc := uint32(track.SSRC())
	v.ssrc.Store(ssrc)
	v.requestKeyframe("track started")
	buf := make([]byte, 1500)
	for {
		n, _, err := track.Read(buf)
		if err != nil {
			return
		}
		now := time.Now()
		v.s.onMedia(now)
		v.bytesIn.Add(uint64(n))
		v.rtp.observe(buf[:n], now)
		v.s.maybeReport(v.rtp, ssrc, now)
		if err := v.reorder.Push(buf[:n], now); err != nil {
			continue // malformed packets are counted by the buffer
		}
		v.nack.onPacket(binary.BigEndian.Uint16(buf[2:4]), now)
		if seqs := v.nack.due(now, reorderDelay); len(seqs) > 0 {
			v.s.sendNACK(ssrc, v.nack.nackPairs(seqs))
		}
		for {
			pkt, lost, ok := v.reorder.Pop(now)
			if !ok {
				break
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
}

// onBrokenFrame handles a frame lost to packet loss or bad packetization:
// later P-frames reference it, so nothing is forwarded until the next IDR,
// which is asked for at once.
func (v *videoPipeline) onBrokenFrame() {
	v.dropCnt.Add(1)
	if !v.waitKeyframe {
		v.waitKeyframe = true
	}
	v.requestKeyframe("frame lost")
}

func (v *videoPipeline) onAccessUnit(au *rtph264.AccessUnit, now time.Time) {
	v.frameCnt.Add(1)
	v.updateRate(au.Timestamp)
	if au.SPS != nil {
		v.pendingSPS = append(v.pendingSPS[:0], au.SPS...)
	}
	if au.PPS != nil {
		v.pendingPPS = append(v.pendingPPS[:0], au.PPS...)
	}
	if au.SPS != nil || au.PPS != nil {
		v.updateParams()
	}
	// The frame's exact RTP time, placed on the stream's A/V clock.
	ms := v.clock.videoMillis(v.timeline.Millis(au.Timestamp), au.Timestamp, now)
	v.lastMs.Store(ms)
	if a := v.s.audio; a != nil {
		// The audio's clock: silence where the publisher sends no audio,
		// up to this frame. A ticker per stream did this every 20 ms, yet
		// never past the newest video frame anyway.
		a.onTick(now)
	}

	if au.IDR {
		v.keyCnt.Add(1)
		v.onKeyframe(now)
	}
	if v.waitKeyframe {
		if !au.IDR {
			return
		}
		v.waitKeyframe = false
	}
	ps := v.params.Load()
	if ps == nil {
		// An IDR without parameter sets cannot be decoded; ask again.
		v.waitKeyframe = true
		v.requestKeyframe("no SPS/PPS yet")
		return
	}
	b := v.sink.Load()
	if b == nil {
		return
	}
	f := v.frames.get()
	f.tagType = flv.TagVideo
	f.ts = ms
	f.keyframe = au.IDR
	f.params = ps
	f.recvAt = now
	f.body = flv.AppendAVCNALUs(f.body, au.NALUs, au.IDR, 0)
	b.deliver(f)
	f.release()
}

func (v *videoPipeline) updateParams() {
	if v.pendingSPS == nil || v.pendingPPS == nil {
		return
	}
	if cur := v.params.Load(); cur != nil && bytes.Equal(cur.sps, v.pendingSPS) && bytes.Equal(cur.pps, v.pendingPPS) {
		return
	}
	ps, err := newParamSet(v.pendingSPS, v.pendingPPS)
	if err != nil {
		v.s.log.Warn("unusable SPS/PPS from publisher", "err", err)
		return
	}
	v.s.log.Info("video parameters", "width", ps.width, "height", ps.height, "profile", ps.profile)
	v.params.Store(ps)
}

func (v *videoPipeline) updateRate(ts uint32) {
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

// fps is the observed frame rate (0 until two frames arrived).
func (v *videoPipeline) fps() float64 { return math.Float64frombits(v.fpsBits.Load()) }

// requestKeyframe sends a PLI unless one went out very recently. While a
// broadcast runs, a request that comes too soon is sent when the gap has
// passed, unless a keyframe arrives first: a target that starts just after
// the track did must not wait for the publisher's next keyframe of its own,
// which may be seconds away.
func (v *videoPipeline) requestKeyframe(reason string) {
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
	v.s.log.Debug("pli", "reason", reason)
	v.s.requestKeyframe(ssrc)
}

// keyframeLead is how much earlier than the interval the periodic request
// goes out, so the answering IDR lands within the interval.
func (v *videoPipeline) keyframeLead() time.Duration {
	lead := 50 * time.Millisecond
	if f := v.fps(); f > 0 {
		lead = max(lead, time.Duration(2*float64(time.Second)/f))
	}
	return lead
}

// armKeyframes starts the periodic keyframe requests of a broadcast.
func (v *videoPipeline) armKeyframes() {
	v.kfMu.Lock()
	defer v.kfMu.Unlock()
	if v.kfStopped {
		return
	}
	v.kfArmed = true
	v.resetTimerLocked(v.s.m.cfg.KeyframeInterval - v.keyframeLead())
}

// disarmKeyframes stops them when the broadcast ends.
func (v *videoPipeline) disarmKeyframes() {
	v.kfMu.Lock()
	defer v.kfMu.Unlock()
	v.kfArmed, v.kfReason = false, ""
	if v.kfTimer != nil {
		v.kfTimer.Stop()
	}
}

func (v *videoPipeline) onKeyframe(now time.Time) {
	v.kfMu.Lock()
	defer v.kfMu.Unlock()
	v.lastKey = now
	if v.kfArmed {
		v.kfReason = "" // a deferred request is answered
		v.resetTimerLocked(v.s.m.cfg.KeyframeInterval - v.keyframeLead())
	}
}

func (v *videoPipeline) resetTimerLocked(d time.Duration) {
	v.kfDue = time.Now().Add(d)
	if v.kfTimer == nil {
		v.kfTimer = time.AfterFunc(d, v.keyframeDue)
		return
	}
	v.kfTimer.Reset(d)
}

func (v *videoPipeline) keyframeDue() {
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
	v.requestKeyframe(reason)
}

func (v *videoPipeline) close() {
	v.kfMu.Lock()
	v.kfStopped = true
	v.kfArmed = false
	if v.kfTimer != nil {
		v.kfTimer.Stop()
	}
	v.kfMu.Unlock()
}

// info is the API view of the video track, nil before its parameters are known.
func (v *videoPipeline) info() *VideoInfo {
	ps := v.params.Load()
	if ps == nil {
		return nil
	}
	return &VideoInfo{Codec: "H264", Profile: ps.profile, Width: ps.width, Height: ps.height, FPS: math.Round(v.fps()*100) / 100}
}
