package video

import (
	"context"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/castbridge/castbridge/gateway/media"
	"github.com/castbridge/castbridge/transmux/codec/h264black"
	"github.com/castbridge/castbridge/transmux/format/flv"
	"github.com/castbridge/castbridge/transmux/rtp/rtpframe"
)

// The video filler keeps an ingest fed when the publisher's picture stops:
// while the stream's video is muted, or when the publisher's video has
// stalled for longer than Config.VideoGap while its audio still flows, the
// broadcast gets generated frames at the stream's frame rate instead.
// H.264 gets a black picture of the stream's size (h264black: its own
// SPS/PPS, so the targets send a new sequence header, and the publisher's
// again when its picture returns); VP9 gets the publisher's last keyframe
// and one-byte frames showing it again (show_existing_frame) at the frame
// rate, the keyframe again every keyframe interval; AV1 and H.265 get the
// last keyframe repeated, within the publisher's bit rate (AV1 has
// show_existing_frame too, but a key frame may be shown by it at most once;
// an H.265 skip slice would need its VPS/SPS/PPS parsed). The publisher's picture
// returns at its next keyframe, which is asked for when the filler starts
// and while it waits.
//
// Filler frames sit on the stream's wall-clock timeline (Clock.NowMillis),
// fillLagMs behind it so that the publisher's frames, which arrive with
// their network delay, land after the last filler frame when they return;
// a filler frame less than half a frame after the publisher's last is not
// sent, and a publisher's frame that would still go back in time moves
// (with all that follow) to just after the fill.

const (
	// fillIdleCheck is how often the filler looks for a stalled picture
	// when it is not running and the picture may be stalled already (a
	// mute wakes it at once; see idleNextLocked).
	fillIdleCheck = 100 * time.Millisecond
	// fillLagMs keeps the filler's timestamps behind the stream's wall
	// clock by about the publisher's frames' usual delay beyond the least
	// (jitter), so that they land after the fill's when they return; the
	// picture's return shows as a gap of about as much.
	fillLagMs = 60
	// fillMaxFPS and fillMinFPS bound the filler's frame rate, which is
	// the publisher's observed rate.
	fillMaxFPS = 60
	fillMinFPS = 5
	// fillGoneAfter is how long, at least, an unmuted fill waits for the
	// publisher's video before it takes the publisher as gone and stops.
	fillGoneAfter = time.Second
)

// FillReason says why the filler runs.
type FillReason string

// The filler's reasons.
const (
	FillMuted   FillReason = "muted"   // the stream's video is muted
	FillStalled FillReason = "stalled" // the publisher's video stopped while its audio flows
)

// filler is the pipeline's filler state. mu orders the filler's frames
// and the publisher's into the sink (both goroutines deliver under it).
type filler struct {
	mu      sync.Mutex
	active  bool
	reason  FillReason
	lastOut uint32 // stream time of the newest frame delivered
	haveOut bool
	// holdToKey: a fill ended without the publisher's keyframe; its
	// frames wait for one.
	holdToKey bool
	shift     uint32    // added to the publisher's frames after a fill that ran ahead of them
	lastPub   time.Time // arrival of the publisher's newest frame
	startAt   time.Time // wall time of the fill's first frame
	startMs   int64     // its stream time
	n         int64     // filler frames sent in this fill
	interval  float64   // ms between filler frames
	keyEvery  int64     // an IDR every keyEvery frames (H.264)
	keyDue    time.Time // next repeated keyframe (other codecs)

	// H.264: the black picture of the stream's size.
	black   *h264black.Picture
	blackPS *media.ParamSet
	seq     *h264black.Sequence
	nalus   [3][]byte // AppendAVCNALUs' argument without an allocation

	// Other codecs: the publisher's last keyframe, as muxed.
	lastKey   []byte
	lastKeyPS *media.ParamSet
	// VP9: a frame showing the keyframe again (show_existing_frame), as
	// muxed; nil for AV1 and H.265, which repeat the keyframe itself.
	vp9Show []byte

	// wantKey makes the next filler frame a keyframe (a target asked).
	wantKey atomic.Bool
}

// SetMuted replaces the publisher's picture with the filler, or asks for
// its next keyframe to bring it back.
func (v *Pipeline) SetMuted(on bool) {
	if v.muted.Swap(on) == on {
		return
	}
	if !on {
		v.RequestKeyframe("video unmuted")
	}
	select {
	case v.fillKick <- struct{}{}:
	default:
	}
}

// RequestFillKeyframe makes the filler's next frame a keyframe, when it
// runs: what a target that starts or lost its place needs, as it would
// from the publisher.
func (v *Pipeline) RequestFillKeyframe() { v.fill.wantKey.Store(true) }

// Filling says whether the filler runs, and why.
func (v *Pipeline) Filling() (bool, FillReason) {
	v.fill.mu.Lock()
	defer v.fill.mu.Unlock()
	return v.fill.active, v.fill.reason
}

// FillerFrames is how many filler frames went to the sink.
func (v *Pipeline) FillerFrames() uint64 { return v.fillCnt.Load() }

// deliver hands the publisher's frame to the sink, unless the filler holds
// the picture: then only a keyframe of an unmuted publisher ends the fill
// and goes out. It takes over the frame's reference.
func (v *Pipeline) deliver(sink *sinkBox, f *media.Frame) {
	fl := &v.fill
	fl.mu.Lock()
	if v.muted.Load() || ((fl.active || fl.holdToKey) && !f.Keyframe) {
		// Muted, or the targets last got filler frames, which the
		// publisher's next P-frame does not follow from.
		fl.mu.Unlock()
		f.Release()
		if !v.muted.Load() {
			v.RequestKeyframe("video resumed")
		}
		return
	}
	if fl.active || fl.holdToKey {
		if fl.active {
			v.endFillLocked("publisher keyframe")
		}
		fl.holdToKey = false
		if fl.haveOut && f.TS+fl.shift <= fl.lastOut {
			// The fill ran ahead of the publisher's timestamps (a
			// publisher whose RTP clock stood still while it paused): its
			// frames go on after the fill's, not back in time.
			fl.shift = fl.lastOut + 1 - f.TS
			v.log.Info("video after the filler moved to follow it", "shiftMs", fl.shift)
		}
	}
	f.TS += fl.shift
	fl.lastOut, fl.haveOut = f.TS, true
	if f.Keyframe && v.frames != nil {
		fl.lastKey = append(fl.lastKey[:0], f.Body...)
		fl.lastKeyPS = f.Params
	}
	sink.Deliver(f)
	fl.mu.Unlock()
	f.Release()
}

// notePublisherFrame records a publisher frame's arrival (every frame,
// delivered or not): the stall clock restarts, and a fill that waits for
// the publisher asks for its keyframe.
func (v *Pipeline) notePublisherFrame(now time.Time) {
	fl := &v.fill
	fl.mu.Lock()
	fl.lastPub = now
	active := fl.active
	fl.mu.Unlock()
	if active && !v.muted.Load() {
		v.RequestKeyframe("video resumed")
	}
}

// RunFiller is the filler's goroutine, owned by the stream: it watches for
// a mute or a stalled picture and sends the filler frames while either
// lasts. It returns when ctx ends.
func (v *Pipeline) RunFiller(ctx context.Context) {
	t := time.NewTimer(fillIdleCheck)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-v.fillKick:
		case <-t.C:
		}
		t.Reset(max(time.Until(v.fillTick(time.Now())), time.Millisecond))
	}
}

// fillTick starts, continues or ends the fill at now and says when to look
// again.
func (v *Pipeline) fillTick(now time.Time) time.Time {
	fl := &v.fill
	fl.mu.Lock()
	defer fl.mu.Unlock()
	sink := v.sink.Load()
	muted := v.muted.Load()
	stalled := v.cfg.VideoGap > 0 && fl.haveOut && now.Sub(fl.lastPub) > v.cfg.VideoGap &&
		v.cfg.AudioFlowing != nil && v.cfg.AudioFlowing(now)
	if !fl.active {
		if sink == nil || !(muted || stalled) || !v.startFillLocked(now, muted) {
			return v.idleNextLocked(now)
		}
	} else if sink == nil || (!muted && !stalled && now.Sub(fl.lastPub) > max(v.cfg.VideoGap, fillGoneAfter)) {
		// No broadcast, or the publisher is gone altogether (no audio,
		// no video): the stream ends as it would have without the fill.
		v.endFillLocked("publisher gone")
		fl.holdToKey = true
		return now.Add(fillIdleCheck)
	} else if due := fl.due(); now.Before(due.Add(-time.Millisecond)) {
		return due // woken early (a mute or unmute): the frames keep their clock
	}
	if muted {
		fl.reason = FillMuted
	}
	v.sendFillLocked(sink, now)
	return fl.due()
}

// idleNextLocked is when an idle filler looks again: while the picture
// flows, when it would have been gone VideoGap (so a stream wakes the
// filler about once a VideoGap, not ten times as often); once it has, or
// before the first frame went out, every fillIdleCheck (the audio may
// start flowing, a broadcast start). The caller holds fl.mu.
func (v *Pipeline) idleNextLocked(now time.Time) time.Time {
	fl := &v.fill
	if v.cfg.VideoGap > 0 && fl.haveOut {
		// Just past the gap: stalled wants more than VideoGap.
		if at := fl.lastPub.Add(v.cfg.VideoGap + time.Millisecond); at.After(now) {
			return at
		}
	}
	return now.Add(fillIdleCheck)
}

// due is the wall time of the fill's next frame.
func (fl *filler) due() time.Time {
	return fl.startAt.Add(time.Duration(float64(fl.n) * fl.interval * float64(time.Millisecond)))
}

// startFillLocked prepares a fill from the publisher's configuration; false
// when there is nothing to fill with yet (no picture seen).
func (v *Pipeline) startFillLocked(now time.Time, muted bool) bool {
	fl := &v.fill
	ps := v.params.Load()
	if ps == nil {
		return false
	}
	nowMs, ok := v.cfg.Clock.NowMillis(now)
	if !ok {
		return false
	}
	fps := v.FPS()
	if fps <= 0 {
		fps = ps.SPSFPS
	}
	if fps <= 0 {
		fps = 30
	}
	fps = math.Min(math.Max(fps, fillMinFPS), fillMaxFPS)
	if v.frames == nil {
		w, h := ps.Width&^1, ps.Height&^1
		if fl.black == nil || fl.black.Width != w || fl.black.Height != h {
			pic, err := h264black.New(w, h, fps)
			if err != nil {
				v.log.Warn("no black picture for the video filler", "width", ps.Width, "height", ps.Height, "err", err)
				return false
			}
			bps, err := media.NewParamSet(pic.SPS, pic.PPS)
			if err != nil {
				v.log.Warn("black picture's parameters", "err", err)
				return false
			}
			fl.black, fl.blackPS = pic, bps
		}
		fl.seq = fl.black.Sequence()
	} else if len(fl.lastKey) == 0 {
		return false
	} else {
		fl.vp9Show = nil
		if v.frames.Codec() == rtpframe.VP9 {
			if vt, err := flv.ParseVideoTag(fl.lastKey); err == nil && len(vt.Payload) > 0 {
				fl.vp9Show = flv.AppendVP9Frame(fl.vp9Show, vp9ShowExisting(vt.Payload[0]), false)
			}
		}
	}
	fl.active = true
	fl.reason = FillStalled
	if muted {
		fl.reason = FillMuted
	}
	fl.interval = 1000 / fps
	fl.keyEvery = max(1, int64(v.cfg.KeyframeInterval.Seconds()*fps))
	fl.startAt, fl.n, fl.keyDue = now, 0, now
	fl.startMs = nowMs - fillLagMs
	fl.wantKey.Store(true)
	v.log.Info("video filler started", "reason", string(fl.reason), "fps", math.Round(fps), "codec", string(v.Codec()))
	if v.cfg.OnFiller != nil {
		v.cfg.OnFiller(true, fl.reason)
	}
	if !muted {
		v.RequestKeyframe("video stalled")
	}
	return true
}

// vp9ShowExisting is a VP9 frame of one uncompressed header (VP9 spec
// 6.2) that shows reference slot 0 again: frame_marker, the profile of the
// keyframe whose first byte is first, show_existing_frame = 1,
// frame_to_show_map_idx = 0. A keyframe refreshes every slot, so after the
// publisher's keyframe it is that picture. Profile 3 has a reserved bit
// more and takes two bytes.
func vp9ShowExisting(first byte) []byte {
	lo, hi := first>>5&1, first>>4&1
	if hi == 1 && lo == 1 {
		// 10 1 1 0 1 000 (then zero padding)
		return []byte{0b10110100, 0}
	}
	return []byte{0b10<<6 | lo<<5 | hi<<4 | 1<<3}
}

func (v *Pipeline) endFillLocked(why string) {
	fl := &v.fill
	reason := fl.reason
	fl.active, fl.reason = false, ""
	v.log.Info("video filler ended", "why", why, "frames", fl.n)
	if v.cfg.OnFiller != nil {
		v.cfg.OnFiller(false, reason)
	}
}

// sendFillLocked delivers the fill's next frame. It allocates nothing in
// the steady state: the frames are pooled and their bodies copied from
// bytes made when the fill started.
func (v *Pipeline) sendFillLocked(sink *sinkBox, now time.Time) {
	fl := &v.fill
	ms := fl.startMs + int64(float64(fl.n)*fl.interval)
	tick := fl.n
	fl.n++
	if fl.haveOut && ms < int64(fl.lastOut)+int64(fl.interval/2) {
		// Too close after the publisher's last frame (a mute: its
		// frames were at about the wall time this fill lags): the fill
		// starts a frame later, on its own grid.
		return
	}
	var f *media.Frame
	if v.frames == nil {
		key := fl.wantKey.Swap(false) || tick%fl.keyEvery == 0
		nalu, idr := fl.seq.Next(key)
		f = v.newFrame(uint32(ms), idr, fl.blackPS, now)
		// An IDR carries its SPS and PPS in band too, as browsers' do:
		// an ingest or recorder that keeps the first sequence header
		// still decodes the black picture.
		units := fl.nalus[2:]
		fl.nalus[2] = nalu
		if idr {
			fl.nalus[0], fl.nalus[1] = fl.black.SPS, fl.black.PPS
			units = fl.nalus[:]
		}
		f.Body = flv.AppendAVCNALUs(f.Body, units, idr, 0)
		fl.nalus = [3][]byte{}
	} else if fl.vp9Show != nil {
		// VP9: the keyframe at the start and every keyframe interval (or
		// when a target asks), between them one-byte frames showing it
		// again: the frame rate kept at no cost.
		key := fl.wantKey.Swap(false) || tick%fl.keyEvery == 0
		f = v.newFrame(uint32(ms), key, fl.lastKeyPS, now)
		if key {
			f.Body = append(f.Body, fl.lastKey...)
		} else {
			f.Body = append(f.Body, fl.vp9Show...)
		}
	} else {
		// A repeated keyframe costs its whole size each time: at most the
		// publisher's own bit rate goes to it, fewer frames when the
		// keyframe is big.
		if now.Before(fl.keyDue) && !fl.wantKey.Load() {
			return
		}
		fl.wantKey.Store(false)
		gap := time.Duration(fl.interval * float64(time.Millisecond))
		if rate := v.Bitrate(now); rate > 0 {
			gap = max(gap, time.Duration(float64(len(fl.lastKey))*8/rate*float64(time.Second)))
		}
		fl.keyDue = now.Add(gap)
		f = v.newFrame(uint32(ms), true, fl.lastKeyPS, now)
		f.Body = append(f.Body, fl.lastKey...)
	}
	fl.lastOut, fl.haveOut = f.TS, true
	v.lastMs.Store(f.TS)
	v.fillCnt.Add(1)
	sink.Deliver(f)
	f.Release()
	if v.cfg.OnFrame != nil {
		v.cfg.OnFrame(now, ms, ms+int64(fl.interval))
	}
}
