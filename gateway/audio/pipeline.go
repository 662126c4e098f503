// Package audio is a stream's audio: the publisher's Opus decoded into one
// gap-free 48 kHz stereo PCM timeline on the stream's A/V clock, and the
// outputs a broadcast's targets take from it (AAC encoders, the Opus
// passthrough, Icecast sources), which hand their frames to a Sink.
package audio

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtp"

	"github.com/castbridge/castbridge/gateway/avclock"
	"github.com/castbridge/castbridge/gateway/media"
	"github.com/castbridge/castbridge/gateway/webrtcin"
	"github.com/castbridge/castbridge/transmux/codec/opusdec"
	"github.com/castbridge/castbridge/transmux/rtp/rtptime"
)

const (
	// Rate is the sample rate of the PCM timeline and of every output.
	Rate             = 48000
	opusFrameSamples = 960 // 20 ms, what the silence packets of a passthrough carry
	// resyncMs is how far the audio may drift from where the A/V clock puts
	// it before it is moved back (silence inserted or samples dropped). The
	// clock's audio times are smooth (least-delayed arrival, then Sender
	// Reports slewed at 1%), jittering only by their 1 ms rounding, so a
	// small bound is safe; it is also the A/V error left over: with 10 ms
	// the audio settled anywhere within ±10 ms of the SRs' placement,
	// a different offset each run.
	resyncMs = 2
	// opusSlack is how far (samples per channel) the passthrough's own
	// timeline may get from the PCM timeline before a silence packet is
	// added or a packet left out: Opus timestamps count the packets'
	// samples, gap-free, and follow the PCM's resyncs in whole packets.
	opusSlack = 3 * opusFrameSamples / 4
	// silenceAfter is how long the publisher's audio may pause (longer than
	// Opus DTX's 400 ms keep-alive) before the clock fills in silence.
	silenceAfter = 500 * time.Millisecond
	// aacLeadMs is how far past the video a stream without audio fills
	// silence when it encodes AAC: two 1024-sample frames, the encoder's
	// delay and the frame under way.
	aacLeadMs = (2*1024*1000 + Rate - 1) / Rate
	// silenceLagMs is how far behind "now" the clock fills, leaving room for
	// packets still on their way.
	silenceLagMs = 100
	// tick is how often an audio-only stream's clock fills silence.
	tick = 20 * time.Millisecond
)

// opusSilence is a 20 ms CELT stereo Opus packet that decodes to silence
// (the one WebRTC stacks send for muted tracks): what an Opus passthrough
// carries while the publisher sends no audio or is muted.
var opusSilence = []byte{0xfc, 0xff, 0xfe}

// silencePCM is 100 ms of stereo zeros, shared (read only) by every stream.
var silencePCM = make([]int16, 2*4800)

// Config is what a Pipeline is made from.
type Config struct {
	Clock  *avclock.Clock
	Frames *media.FramePool
	// FollowsVideo is set for a stream with video: silence starts only
	// once video did and never runs past its newest frame (it ends with
	// the video when the publisher goes away).
	FollowsVideo bool
	Logger       *slog.Logger
}

// Pipeline turns the publisher's Opus into one gap-free 48 kHz stereo PCM
// timeline and feeds the installed outputs. The timeline runs on the
// stream's A/V clock: position 0 is at stream time baseMs, sample p at
// baseMs + p/48 ms. Lost packets and DTX are concealed (opusdec), pauses
// longer than silenceAfter (or no audio track at all) are filled with
// silence by the clock goroutine (Run), and when the A/V clock moves
// (Sender Reports) the PCM is shifted by inserting silence or dropping
// samples, so the AAC timestamps, which count samples, stay right.
//
// Two goroutines feed it, the track's receive goroutine and Run, under mu;
// the video goroutine never takes mu (FollowVideo is atomic and wakes Run),
// so video receive never waits behind an AAC encode.
type Pipeline struct {
	cfg    Config
	outs   atomic.Pointer[snapshot] // what the installed outputs take
	muted  atomic.Bool
	lastMs atomic.Int64 // stream time of the end of the PCM fed

	concealed atomic.Int64 // samples per channel concealed or filled
	rtp       *webrtcin.RTPStats
	resyncs   atomic.Int64

	videoEnd   atomic.Int64 // stream ms the newest video frame ends at; -1 before one
	videoStart atomic.Int64 // stream ms the first video frame starts at; -1 before one
	lastPacket atomic.Int64 // unix ns of the newest Opus packet; 0 before one
	kick       chan struct{}

	cont      *rtptime.Continuity // receive goroutine: rebases RTP timestamp jumps
	rtpOffset atomic.Int64        // cont.Offset(), for the Sender Reports

	mu     sync.Mutex
	dec    *opusdec.Stream
	unwrap rtptime.Unwrapper
	pcm    []int16 // reused decode buffer, made when an Opus track starts
	pkt    rtp.Packet
	tl     timeline
	pos    int64 // samples per channel fed so far
	reset  bool  // the clock filled silence: the next packet starts a new RTP timeline

	// The Opus passthrough's own timeline: opusPos is the PCM position its
	// next packet goes out at (the samples it was sent so far, counted
	// from where it started); opusOut is the passthrough it belongs to.
	opusOut *OpusOutput
	opusPos int64
}

// timeline maps pipeline positions (samples per channel) to stream time.
type timeline struct {
	set    bool
	baseMs int64
}

func (t *timeline) msAt(pos int64) int64 {
	return t.baseMs + (pos*1000+Rate/2)/Rate
}

// New returns a pipeline with no track and no outputs.
func New(cfg Config) *Pipeline {
	p := &Pipeline{cfg: cfg, rtp: webrtcin.NewRTPStats(Rate), kick: make(chan struct{}, 1), cont: rtptime.NewContinuity(Rate)}
	p.videoEnd.Store(-1)
	p.videoStart.Store(-1)
	return p
}

// RTPOffset is what the pipeline adds to the publisher's RTP timestamps
// (rebased jumps), for its Sender Reports.
func (p *Pipeline) RTPOffset() int64 { return p.rtpOffset.Load() }

// RTP is the track's reception statistics.
func (p *Pipeline) RTP() *webrtcin.RTPStats { return p.rtp }

// StartTrack readies the Opus decoder for a track, before its first packet.
func (p *Pipeline) StartTrack() error {
	dec, err := opusdec.NewStream()
	if err != nil {
		return err
	}
	p.mu.Lock()
	p.dec = dec
	p.pcm = make([]int16, 0, 2*opusdec.MaxPacketSamples*2)
	p.mu.Unlock()
	return nil
}

// HandlePacket takes one RTP packet of the Opus track (the read loop's
// handler), after StartTrack.
func (p *Pipeline) HandlePacket(raw []byte, now time.Time) {
	// p.pkt is the receive goroutine's alone.
	if err := p.pkt.Unmarshal(raw); err != nil || len(p.pkt.Payload) == 0 {
		return
	}
	p.lastPacket.Store(now.UnixNano())
	p.onPacket(p.pkt.Timestamp, p.pkt.Payload, now)
}

func (p *Pipeline) onPacket(rtpTS uint32, payload []byte, now time.Time) {
	// With the publisher's timestamp jumps rebased (a looping source).
	rtpTS = uint32(p.cont.Map(rtpTS, now.UnixNano()))
	if off := p.cont.Offset(); off != p.rtpOffset.Load() {
		p.rtpOffset.Store(off)
		p.cfg.Logger.Info("audio RTP timestamps jumped: rebased", "jumps", p.cont.Jumps())
	}
	want := p.cfg.Clock.AudioMillis(rtpTS, now)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.reset {
		p.dec.Reset()
		p.unwrap.Reset()
		p.reset = false
	}
	outs := p.outs.Load()
	// Only AAC encoders take PCM: with none (no broadcast, or an Opus
	// passthrough alone) the packet is placed on the timeline but not
	// decoded, the costliest step of the audio path.
	decode := outs != nil && len(outs.aac) > 0
	samples := opusdec.PacketSamples(payload)
	var pcm []int16
	var pl opusdec.Placement
	if decode {
		pcm, pl, _ = p.dec.Push(p.unwrap.Unwrap(rtpTS), payload, p.pcm[:0])
		if cap(pcm) > cap(p.pcm) {
			p.pcm = pcm[:0] // keep the grown buffer
		}
	} else {
		pl = p.dec.Skip(p.unwrap.Unwrap(rtpTS), payload)
	}
	if pl.Drop {
		return
	}
	if pl.Gap > 0 {
		p.concealed.Add(int64(pl.Gap))
	}
	if !p.tl.set {
		p.startTimeline(want)
	}
	// Where the packet's audio starts on the output, and where the clock
	// wants it.
	drift := want - p.tl.msAt(p.pos+int64(pl.Gap))
	// n: samples per channel of the gap's and the packet's PCM, decoded
	// or not.
	n := len(pcm) / 2
	if !decode {
		n = pl.Gap + samples
	}
	switch {
	case drift > resyncMs:
		p.resyncs.Add(1)
		p.fillSilence(drift * Rate / 1000)
	case drift < -resyncMs:
		p.resyncs.Add(1)
		drop := min(int(-drift*Rate/1000), n)
		n -= drop
		if decode {
			pcm = pcm[2*drop:]
		}
	}
	muted := p.muted.Load()
	if muted {
		clear(pcm)
	}
	start := p.pos + int64(n) - int64(samples) // where the packet's own samples begin
	if decode {
		p.feed(pcm)
	} else {
		p.advance(int64(n))
	}
	if outs != nil && outs.opus != nil {
		pk := payload
		if muted {
			pk = opusSilence
		}
		p.passOpus(outs.opus, start, pk)
	}
}

// passOpus sends one of the publisher's packets to the passthrough, whose
// packet at PCM position start it is, at the passthrough's own position:
// silence packets first when the PCM has run ahead (lost packets
// concealed, silence inserted by a resync), or the packet left out when
// the passthrough is ahead (samples dropped). p.mu held.
func (p *Pipeline) passOpus(op *OpusOutput, start int64, pk []byte) {
	n := int64(opusdec.PacketSamples(pk))
	if n == 0 {
		return
	}
	if p.opusOut != op {
		p.opusOut, p.opusPos = op, max(start, 0)
	}
	for start-p.opusPos > opusSlack {
		p.sendOpus(op, opusSilence, opusFrameSamples)
	}
	if p.opusPos-start > opusSlack {
		return // a packet's worth ahead: this one is left out
	}
	p.sendOpus(op, pk, n)
}

// fillOpus brings the passthrough to the PCM's end with silence packets
// (the clock filled whole 20 ms frames). p.mu held.
func (p *Pipeline) fillOpus(op *OpusOutput) {
	if p.opusOut != op {
		return // it starts with the publisher's first packet or with this fill
	}
	for p.pos-p.opusPos >= opusFrameSamples {
		p.sendOpus(op, opusSilence, opusFrameSamples)
	}
}

func (p *Pipeline) sendOpus(op *OpusOutput, pk []byte, n int64) {
	op.send(p.tl.msAt(p.opusPos), pk, n)
	p.opusPos += n
}

// maxLeadIn bounds the silence put before a publisher's first audio
// packet to reach back to its first video frame: a track that starts
// later than that after the video has been filled with silence by Run, or
// belongs to a broadcast begun later.
const maxLeadIn = time.Second

// startTimeline starts the PCM timeline for the first packet, which
// belongs at stream time ms. When the video began before it, the timeline
// starts at or before the video's first frame with silence up to the
// packet, in whole 20 ms frames (the Opus passthrough gets them as
// packets): a target opens on a keyframe, and ingests take the first
// sample of any track as the start of a recording (MediaMTX's recorder
// discards a keyframe older than the audio's first frame as "too late";
// FFmpeg starts audio at or before video too). p.mu held.
func (p *Pipeline) startTimeline(ms int64) {
	base := p.leadInBase(ms)
	p.setBase(base)
	if base == ms {
		return
	}
	n := (ms - base) * Rate / 1000
	if outs := p.outs.Load(); outs != nil && outs.opus != nil {
		p.opusOut, p.opusPos = outs.opus, p.pos
	}
	p.fillSilence(n)
	if p.opusOut != nil {
		p.fillOpus(p.opusOut)
	}
}

// leadInBase is where a timeline whose audio starts at stream time ms
// begins: a whole number of 20 ms frames before ms, at or before the first
// video frame (stream time 0 at the earliest), when the video began up to
// maxLeadIn before; else ms.
func (p *Pipeline) leadInBase(ms int64) int64 {
	vs := p.videoStart.Load()
	lead := ms - vs
	if !p.cfg.FollowsVideo || vs < 0 || lead <= 0 || lead > maxLeadIn.Milliseconds() {
		return ms
	}
	const frameMs = opusFrameSamples * 1000 / Rate
	return max(ms-(lead+frameMs-1)/frameMs*frameMs, 0)
}

func (p *Pipeline) setBase(ms int64) {
	p.tl.set, p.tl.baseMs = true, max(ms, 0)
}

// feed hands PCM to every AAC encoder and advances the timeline. p.mu held.
func (p *Pipeline) feed(pcm []int16) {
	if outs := p.outs.Load(); outs != nil {
		for _, o := range outs.aac {
			o.write(p.pos, pcm)
		}
	}
	p.advance(int64(len(pcm) / 2))
}

// advance moves the timeline on by n samples per channel. p.mu held.
func (p *Pipeline) advance(n int64) {
	p.pos += n
	p.lastMs.Store(p.tl.msAt(p.pos))
}

// fillSilence feeds n samples per channel of silence. (An Opus
// passthrough gets its silence packets from passOpus or fillOpus.) p.mu
// held.
func (p *Pipeline) fillSilence(n int64) {
	p.concealed.Add(n)
	for n > 0 {
		k := min(n, int64(len(silencePCM)/2))
		p.feed(silencePCM[:2*k])
		n -= k
	}
}

// FollowVideo is told of every video frame (on the video goroutine): the
// stream times its display starts and ends at. It never blocks and never
// waits for a lock the audio holds while encoding: when the publisher's
// audio has paused (or there is no track), it fills silence up to the
// video itself when no output encodes it (Opus passthrough: canned
// packets) and the lock is free, else it wakes Run to. Filling here saves
// Run's wake-up a video frame, a publisher without audio's largest cost
// after the video's own (it was one goroutine hop of four a frame).
func (p *Pipeline) FollowVideo(now time.Time, startMs, endMs int64) {
	p.videoStart.CompareAndSwap(-1, startMs)
	p.videoEnd.Store(endMs)
	if last := p.lastPacket.Load(); last != 0 && now.UnixNano()-last < int64(silenceAfter) {
		return // audio is flowing: nothing to fill
	}
	if outs := p.outs.Load(); outs != nil && len(outs.aac) == 0 && p.mu.TryLock() {
		p.fillLocked(time.Now(), silenceLagMs)
		p.mu.Unlock()
		return
	}
	select {
	case p.kick <- struct{}{}:
	default: // a wake-up is pending already
	}
}

// Decodes says whether HandlePacket decodes the packets to PCM, its
// costly step: an AAC output takes the audio.
func (p *Pipeline) Decodes() bool {
	outs := p.outs.Load()
	return outs != nil && len(outs.aac) > 0
}

// Run is the pipeline's clock goroutine: it fills silence while the
// publisher sends no audio (none at all, or a track that paused), so the
// outputs' audio keeps running, until ctx ends. With video it wakes on
// the video's frames (FollowVideo); audio-only, on a ticker.
func (p *Pipeline) Run(ctx context.Context) {
	var tickC <-chan time.Time
	if !p.cfg.FollowsVideo {
		t := time.NewTicker(tick)
		defer t.Stop()
		tickC = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-p.kick:
			p.fillTo(time.Now(), silenceLagMs)
		case now := <-tickC:
			p.fillTo(now, silenceLagMs)
		}
	}
}

// fillTo fills silence up to lagMs before now, never past the newest video
// frame, when the publisher's audio pauses; with no audio track at all, up
// to the newest video frame's end (and the AAC encoder's delay past it).
// At the end of a broadcast lagMs 0 brings the audio to the video's end.
func (p *Pipeline) fillTo(now time.Time, lagMs int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.fillLocked(now, lagMs)
}

// fillLocked is fillTo with p.mu held.
func (p *Pipeline) fillLocked(now time.Time, lagMs int64) {
	outs := p.outs.Load()
	if outs == nil || (len(outs.aac) == 0 && outs.opus == nil) {
		return
	}
	nowMs, ok := p.cfg.Clock.NowMillis(now)
	if !ok {
		return
	}
	videoEnd := p.videoEnd.Load()
	if p.cfg.FollowsVideo && videoEnd < 0 {
		return // no video yet
	}
	if last := p.lastPacket.Load(); last != 0 && now.UnixNano()-last < int64(silenceAfter) {
		return
	}
	if p.dec == nil {
		// No audio track: no packet can be on its way, and the targets
		// write video only as far as the audio has come (they interleave).
		lagMs = 0
	}
	target := nowMs - lagMs
	if p.cfg.FollowsVideo {
		target = min(target, videoEnd)
	}
	if !p.tl.set {
		if target < 0 {
			return
		}
		p.setBase(p.leadInBase(target))
	}
	if p.cfg.FollowsVideo && p.dec == nil {
		// No track: fill up to the newest video frame's end, not to "now"
		// (its start, about). The targets hold each video frame until the
		// audio reaches its time, and filling to "now" in whole 20 ms
		// frames left them one or two frames behind: 33-80 ms added to
		// every video frame of a publisher without audio.
		target = videoEnd
		if len(outs.aac) > 0 {
			// And past it by the AAC encoder's delay (frame n carries the
			// input's frame n-1): the AAC frame covering the video's time
			// exists only once the input is a frame past that frame's end.
			// Nothing can come later to contradict this silence.
			target += aacLeadMs
		}
	}
	end := p.tl.msAt(p.pos)
	if target <= end {
		return
	}
	// Whole 20 ms Opus frames only, so that an Opus passthrough gets a
	// silence packet for every sample fed; the rest waits for the next call.
	n := (target - end) * Rate / 1000
	n -= n % opusFrameSamples
	if n == 0 {
		return
	}
	if outs.opus != nil && p.opusOut != outs.opus {
		p.opusOut, p.opusPos = outs.opus, p.pos
	}
	p.fillSilence(n)
	if outs.opus != nil {
		p.fillOpus(outs.opus)
	}
	if p.dec != nil {
		p.reset = true
	}
}

// Flowing says whether the publisher's audio arrives: a packet within the
// last silenceAfter.
func (p *Pipeline) Flowing(now time.Time) bool {
	last := p.lastPacket.Load()
	return last != 0 && now.UnixNano()-last < int64(silenceAfter)
}

// SetMuted replaces the publisher's audio with silence, or stops doing so.
func (p *Pipeline) SetMuted(on bool) { p.muted.Store(on) }

// LastMillis is the stream time of the end of the PCM fed.
func (p *Pipeline) LastMillis() int64 { return p.lastMs.Load() }

// ConcealedSamples is how much audio (samples per channel) was made up for
// loss, DTX or a missing track.
func (p *Pipeline) ConcealedSamples() int64 { return p.concealed.Load() }
