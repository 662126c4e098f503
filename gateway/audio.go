package gateway

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v3"

	"github.com/castbridge/castbridge/transmux/codec/opusdec"
	"github.com/castbridge/castbridge/transmux/rtp/rtptime"
)

const (
	audioRate        = 48000
	opusFrameSamples = 960 // 20 ms, what the silence packets of a passthrough carry
	// resyncMs is how far the audio may drift from where the A/V clock puts
	// it before it is moved back (silence inserted or samples dropped).
	resyncMs = 10
	// silenceAfter is how long the publisher's audio may pause (longer than
	// Opus DTX's 400 ms keep-alive) before the clock fills in silence.
	silenceAfter = 500 * time.Millisecond
	// silenceLagMs is how far behind "now" the clock fills, leaving room for
	// packets still on their way.
	silenceLagMs = 100
	audioTick    = 20 * time.Millisecond
)

// opusSilence is a 20 ms CELT stereo Opus packet that decodes to silence
// (the one WebRTC stacks send for muted tracks): what an Opus passthrough
// carries while the publisher sends no audio or is muted.
var opusSilence = []byte{0xfc, 0xff, 0xfe}

// silencePCM is 100 ms of stereo zeros, shared (read only) by every stream.
var silencePCM = make([]int16, 2*4800)

// audioPipeline turns the publisher's Opus into one gap-free 48 kHz stereo
// PCM timeline and feeds the broadcast's audio outputs (AAC encoders, Opus
// passthrough). The timeline runs on the stream's avClock: position 0 is at
// stream time baseMs, sample p at baseMs + p/48 ms. Lost packets and DTX are
// concealed (opusdec), pauses longer than silenceAfter (or no audio track at
// all) are filled with silence by the clock goroutine, and when the A/V
// clock moves (Sender Reports) the PCM is shifted by inserting silence or
// dropping samples, so the AAC timestamps, which count samples, stay right.
type audioPipeline struct {
	s      *Stream
	clock  *avClock
	frames *framePool
	outs   atomic.Pointer[audioOutputs] // the running broadcast's outputs
	muted  atomic.Bool
	lastMs atomic.Int64 // stream time of the end of the PCM fed

	concealed atomic.Int64 // samples per channel concealed or filled
	rtp       *rtpStats
	resyncs   atomic.Int64

	mu         sync.Mutex // serialises the RTP goroutine and the clock goroutine
	dec        *opusdec.Stream
	unwrap     rtptime.Unwrapper
	pcm        []int16 // reused decode buffer, made when an Opus track starts
	baseSet    bool
	baseMs     int64
	pos        int64 // samples per channel fed so far
	lastPacket time.Time
	reset      bool // the clock filled silence: the next packet starts a new RTP timeline
}

func newAudioPipeline(s *Stream) *audioPipeline {
	return &audioPipeline{
		s:      s,
		clock:  s.clock,
		frames: s.m.frames,
		rtp:    newRTPStats(48000),
	}
}

// run reads the publisher's Opus track until it ends.
func (a *audioPipeline) run(track *webrtc.TrackRemote) {
	dec, err := opusdec.NewStream()
	if err != nil {
		a.s.log.Error("opus decoder", "err", err)
		a.s.drainRTP(track, &a.s.audioBytes, a.rtp)
		return
	}
	a.mu.Lock()
	a.dec = dec
	a.pcm = make([]int16, 0, 2*opusdec.MaxPacketSamples*2)
	a.mu.Unlock()
	buf := make([]byte, 1500)
	ssrc := uint32(track.SSRC())
	var pkt rtp.Packet
	for {
		n, _, err := track.Read(buf)
		if err != nil {
			return
		}
		now := time.Now()
		a.s.onMedia(now)
		a.s.audioBytes.Add(uint64(n))
		a.rtp.observe(buf[:n], now)
		a.s.maybeReport(a.rtp, ssrc, now)
		if err := pkt.Unmarshal(buf[:n]); err != nil || len(pkt.Payload) == 0 {
			continue
		}
		a.onPacket(pkt.Timestamp, pkt.Payload, now)
	}
}

func (a *audioPipeline) msAt(pos int64) int64 {
	return a.baseMs + (pos*1000+audioRate/2)/audioRate
}

func (a *audioPipeline) onPacket(rtpTS uint32, payload []byte, now time.Time) {
	want := a.clock.audioMillis(rtpTS, now)
	a.mu.Lock()
	defer a.mu.Unlock()
	a.lastPacket = now
	if a.reset {
		a.dec.Reset()
		a.unwrap.Reset()
		a.reset = false
	}
	pcm, pl, _ := a.dec.Push(a.unwrap.Unwrap(rtpTS), payload, a.pcm[:0])
	if cap(pcm) > cap(a.pcm) {
		a.pcm = pcm[:0] // keep the grown buffer
	}
	if pl.Drop {
		return
	}
	if pl.Gap > 0 {
		a.concealed.Add(int64(pl.Gap))
	}
	if !a.baseSet {
		a.setBase(want)
	}
	// Where the packet's audio starts on the output, and where the clock
	// wants it.
	drift := want - a.msAt(a.pos+int64(pl.Gap))
	switch {
	case drift > resyncMs:
		a.resyncs.Add(1)
		a.fillSilence(drift * audioRate / 1000)
	case drift < -resyncMs:
		a.resyncs.Add(1)
		drop := min(int(-drift*audioRate/1000), len(pcm)/2)
		pcm = pcm[2*drop:]
	}
	muted := a.muted.Load()
	if muted {
		clear(pcm)
	}
	pktSamples := opusdec.PacketSamples(payload)
	a.feed(pcm)
	if outs := a.outs.Load(); outs != nil && outs.opus != nil && pktSamples > 0 {
		p := payload
		if muted {
			p = opusSilence
		}
		outs.opus.send(a.msAt(max(a.pos-int64(pktSamples), 0)), p)
	}
}

func (a *audioPipeline) setBase(ms int64) {
	a.baseSet, a.baseMs = true, max(ms, 0)
}

// feed hands PCM to every AAC encoder and advances the timeline. a.mu held.
func (a *audioPipeline) feed(pcm []int16) {
	if outs := a.outs.Load(); outs != nil {
		for _, o := range outs.aac {
			o.write(a.pos, pcm)
		}
	}
	a.pos += int64(len(pcm) / 2)
	a.lastMs.Store(a.msAt(a.pos))
}

// fillSilence feeds n samples per channel of silence, and the matching
// silence packets to an Opus passthrough. a.mu held.
func (a *audioPipeline) fillSilence(n int64) {
	a.concealed.Add(n)
	outs := a.outs.Load()
	if outs != nil && outs.opus != nil {
		for p := int64(0); p+opusFrameSamples <= n; p += opusFrameSamples {
			outs.opus.send(a.msAt(a.pos+p), opusSilence)
		}
	}
	for n > 0 {
		k := min(n, int64(len(silencePCM)/2))
		a.feed(silencePCM[:2*k])
		n -= k
	}
}

// clockLoop fills silence while the publisher sends no audio (none at all,
// or a track that stopped), so the outputs' audio keeps running. It runs
// for audio-only streams; with video, each video frame calls onTick.
func (a *audioPipeline) clockLoop(ctx context.Context) {
	tick := time.NewTicker(audioTick)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			a.onTick(now)
		}
	}
}

func (a *audioPipeline) onTick(now time.Time) { a.fillTo(now, silenceLagMs) }

// fillTo fills silence up to lagMs before now, never past the newest video
// frame, when the publisher sends no audio. At the end of a broadcast lagMs
// 0 brings the audio to the video's end.
func (a *audioPipeline) fillTo(now time.Time, lagMs int64) {
	outs := a.outs.Load()
	if outs == nil || (len(outs.aac) == 0 && outs.opus == nil) {
		return
	}
	nowMs, ok := a.clock.nowMillis(now)
	if !ok {
		return
	}
	target := nowMs - lagMs
	if v := a.s.video; v != nil {
		// The audio follows the video: never past its newest frame (the
		// silence ends with the video when the publisher goes away).
		if v.frameCnt.Load() == 0 {
			return
		}
		frame := int64(33)
		if f := v.fps(); f > 0 {
			frame = int64(1000 / f)
		}
		target = min(target, int64(v.lastMs.Load())+frame)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.lastPacket.IsZero() && now.Sub(a.lastPacket) < silenceAfter {
		return
	}
	if !a.baseSet {
		if target < 0 {
			return
		}
		a.setBase(target)
	}
	end := a.msAt(a.pos)
	if target <= end {
		return
	}
	// Whole 20 ms Opus frames only, so that an Opus passthrough gets a
	// silence packet for every sample fed; the rest waits for the next call.
	n := (target - end) * audioRate / 1000
	n -= n % opusFrameSamples
	if n == 0 {
		return
	}
	a.fillSilence(n)
	if a.dec != nil {
		a.reset = true
	}
}

// setOutputs installs the running broadcast's outputs (nil: none).
func (a *audioPipeline) setOutputs(o *audioOutputs) {
	a.mu.Lock()
	a.outs.Store(o)
	a.mu.Unlock()
}

// clearOutputs removes b's outputs if they are still installed, flushing
// the AAC encoders so the audio runs to the end of the PCM fed.
func (a *audioPipeline) clearOutputs(b *Broadcast) {
	a.mu.Lock()
	if o := a.outs.Load(); o != nil && o.b == b {
		for _, enc := range o.aac {
			enc.flush()
		}
		a.outs.Store(nil)
	}
	a.mu.Unlock()
}
