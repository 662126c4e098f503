package gateway

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/castbridge/castbridge/transmux/codec/aaclc"
	"github.com/castbridge/castbridge/transmux/format/flv"
	"github.com/castbridge/castbridge/transmux/source/icecast"
)

// Audio kinds a target carries.
const (
	audioKindAAC     = "aac"
	audioKindOpus    = "opus"
	audioKindIcecast = "icecast"
)

// fourCCOpusID is the E-RTMP FourCC "Opus" as onMetaData's audiocodecid.
const fourCCOpusID = 0x4F707573

// audioHeader is the sequence header an audio track needs on every
// connection before its first frame (AAC AudioSpecificConfig, E-RTMP Opus
// sequence start), immutable and shared by frames like paramSet. A nil body
// (MP3) needs none.
type audioHeader struct{ body []byte }

// mp3Header marks MP3 frames: no sequence header.
var mp3Header = &audioHeader{}

// audioSource identifies one audio output; each target takes the frames of
// exactly one (its pointer is the routing key).
type audioSource struct{ name string }

// audioOutputs is the snapshot of a broadcast's outputs the audio pipeline
// feeds, replaced (never changed) when targets are added.
type audioOutputs struct {
	b    *Broadcast
	aac  []*aacOutput
	opus *opusOutput
}

// audioSet owns a broadcast's audio outputs: the AAC encoders (one per bit
// rate, shared by the targets asking for it), the Opus passthrough and the
// Icecast sources. Guarded by Broadcast.mu.
type audioSet struct {
	aac     map[int]*aacOutput
	opus    *opusOutput
	icecast []*icecastOutput
}

// aacOutput is one AAC encoder of the stream's PCM, run in-process on the
// audio goroutine (an ffmpeg child per stream cost ~2.6% of a core; this
// encoder ~0.25%).
type aacOutput struct {
	src     audioSource
	bitrate int
	a       *audioPipeline
	b       *Broadcast
	hdr     *audioHeader

	// audio goroutine state, a.mu held
	enc      *aaclc.Encoder
	started  bool
	startPos int64   // the pipeline position of the encoder's sample 0
	frames   int64   // frames encoded
	pending  []int16 // PCM short of a whole frame
	out      []byte
}

func newAACOutput(b *Broadcast, bitrate int) (*aacOutput, error) {
	enc, err := aaclc.NewEncoder(aaclc.Config{SampleRate: audioRate, Channels: 2, Bitrate: bitrate})
	if err != nil {
		return nil, &Error{Code: CodeInvalidRequest, Err: err, Message: fmt.Sprintf("audiobitrate %d cannot be encoded: %v", bitrate, err)}
	}
	return &aacOutput{
		src:     audioSource{name: fmt.Sprintf("aac-%d", bitrate)},
		bitrate: bitrate,
		a:       b.s.audio,
		b:       b,
		hdr:     &audioHeader{body: flv.AppendAACSequenceHeader(nil, enc.AudioSpecificConfig())},
		enc:     enc,
		pending: make([]int16, 0, aaclc.FrameSamples*2),
	}, nil
}

// write encodes interleaved stereo PCM that starts at pipeline position
// pos, a frame whenever 1024 samples are there. a.mu held.
func (o *aacOutput) write(pos int64, pcm []int16) {
	if !o.started {
		o.started, o.startPos = true, pos
	}
	const frameLen = aaclc.FrameSamples * 2
	for len(pcm) > 0 {
		if len(o.pending) == 0 && len(pcm) >= frameLen {
			o.encode(pcm[:frameLen])
			pcm = pcm[frameLen:]
			continue
		}
		n := min(frameLen-len(o.pending), len(pcm))
		o.pending = append(o.pending, pcm[:n]...)
		pcm = pcm[n:]
		if len(o.pending) == frameLen {
			o.encode(o.pending)
			o.pending = o.pending[:0]
		}
	}
}

// flush encodes the pending PCM padded with silence, then one frame of
// silence to get out the frame the encoder holds back. a.mu held.
func (o *aacOutput) flush() {
	if !o.started {
		return
	}
	const frameLen = aaclc.FrameSamples * 2
	if len(o.pending) > 0 {
		n := len(o.pending)
		o.pending = o.pending[:frameLen]
		clear(o.pending[n:])
		o.encode(o.pending)
	}
	o.pending = o.pending[:frameLen]
	clear(o.pending)
	o.encode(o.pending)
	o.pending = o.pending[:0]
}

func (o *aacOutput) encode(pcm []int16) {
	out, err := o.enc.Encode(o.out[:0], pcm)
	if err != nil {
		o.b.s.log.Error("aac encode", "bitrate", o.bitrate, "err", err)
		return
	}
	o.out = out
	n := o.frames
	o.frames++
	// Frame n carries samples [(n-1)*1024, n*1024) of the encoder's input:
	// frame 0 is the encoder's priming, before the stream's first sample, so
	// it is not sent. (A decoder joining at frame 1 misses only its overlap,
	// as every player joining a live stream mid-way does.)
	if n == 0 {
		return
	}
	f := o.b.audioFrame(o.a.msAt(o.startPos+(n-1)*aaclc.FrameSamples), o.hdr)
	f.body = flv.AppendAACRaw(f.body, out)
	o.b.sendAudio(&o.src, f)
}

// opusOutput passes the publisher's Opus through as E-RTMP audio.
type opusOutput struct {
	src audioSource
	hdr *audioHeader
	b   *Broadcast
}

func newOpusOutput(b *Broadcast) *opusOutput {
	return &opusOutput{src: audioSource{name: "opus"}, b: b,
		hdr: &audioHeader{body: flv.AppendOpusSequenceStart(nil, 2, audioRate)}}
}

// send delivers one Opus packet at stream time ms. a.mu held.
func (o *opusOutput) send(ms int64, packet []byte) {
	f := o.b.audioFrame(ms, o.hdr)
	f.body = flv.AppendOpusFrame(f.body, packet)
	o.b.sendAudio(&o.src, f)
}

// icecastOutput is one target's audio from an Icecast/HTTP stream, placed
// on the broadcast's clock: its first frame at the stream's "now", the
// following ones by their sample count, paced to real time; a source that
// fell behind (it reconnected) is placed at "now" again.
type icecastOutput struct {
	src    audioSource
	url    string
	b      *Broadcast
	codec  atomic.Int32 // icecast.Codec, 0 until the first frame
	rate   atomic.Int32
	cancel context.CancelFunc
	done   chan struct{}

	// run goroutine state
	hdr     *audioHeader
	asc     []byte
	started bool
	baseMs  int64
	samples int64
	srcRate int
	timer   *time.Timer
	runCtx  context.Context
}

func newIcecastOutput(b *Broadcast, url string) *icecastOutput {
	return &icecastOutput{src: audioSource{name: "icecast"}, url: url, b: b, done: make(chan struct{})}
}

// probeIcecast checks a target's Icecast URL before the broadcast starts.
func probeIcecast(ctx context.Context, url string) error {
	err := icecast.Validate(url)
	if err == nil {
		err = icecast.Probe(ctx, http.DefaultClient, url)
	}
	if err != nil {
		return &Error{Code: CodeInvalidRequest, Err: err, Message: fmt.Sprintf("icecast_url cannot be used as an audio source: %v", err)}
	}
	return nil
}

func (o *icecastOutput) start() {
	ctx, cancel := context.WithCancel(context.Background())
	o.cancel, o.runCtx = cancel, ctx
	go func() {
		defer close(o.done)
		src, err := icecast.New(icecast.Config{URL: o.url, Logger: o.b.s.log.With("icecast", "source")})
		if err != nil {
			o.b.s.log.Warn("icecast source", "err", err)
			return
		}
		o.timer = time.NewTimer(time.Hour)
		o.timer.Stop()
		_ = src.Run(ctx, o.onFrame)
	}()
}

func (o *icecastOutput) stop() {
	if o.cancel == nil {
		return
	}
	o.cancel()
	<-o.done
}

func (o *icecastOutput) onFrame(fr icecast.Frame) error {
	if fr.SampleRate <= 0 {
		return nil
	}
	nowMs, ok := o.b.s.clock.nowMillis(time.Now())
	if !ok {
		return nil // no media yet: nothing to align to
	}
	if !o.started || fr.SampleRate != o.srcRate || o.baseMs+o.samples*1000/int64(o.srcRate) < nowMs-1000 {
		o.started, o.baseMs, o.samples, o.srcRate = true, nowMs, 0, fr.SampleRate
	}
	ms := o.baseMs + o.samples*1000/int64(o.srcRate)
	o.samples += int64(fr.Samples)
	// Pace a source that sends faster than real time (a server's burst at
	// connect) so the target's queue is not flooded.
	if ahead := ms - nowMs - 300; ahead > 0 {
		o.timer.Reset(time.Duration(ahead) * time.Millisecond)
		select {
		case <-o.timer.C:
		case <-o.runCtx.Done():
			o.timer.Stop()
			return o.runCtx.Err()
		}
	}
	o.codec.Store(int32(fr.Codec))
	o.rate.Store(int32(fr.SampleRate))
	var f *frame
	switch fr.Codec {
	case icecast.MP3:
		f = o.b.audioFrame(ms, mp3Header)
		f.body = flv.AppendMP3(f.body, fr.Data, fr.SampleRate, fr.Channels)
	case icecast.AAC:
		if o.hdr == nil || !bytes.Equal(fr.ASC, o.asc) {
			o.asc = bytes.Clone(fr.ASC)
			o.hdr = &audioHeader{body: flv.AppendAACSequenceHeader(nil, fr.ASC)}
		}
		f = o.b.audioFrame(ms, o.hdr)
		f.body = flv.AppendAACRaw(f.body, fr.Data)
	default:
		return nil
	}
	o.b.sendAudio(&o.src, f)
	return nil
}

// attachAudio gives a target its audio output, creating it when no running
// one fits: an Icecast source of its own, the Opus passthrough, or the AAC
// encoder of its bit rate. New outputs are returned in started (Icecast)
// and the pipeline's snapshot is rebuilt by the caller. b.mu held or the
// broadcast not yet visible.
func (b *Broadcast) attachAudio(set *audioSet, t *Target) (created bool, err error) {
	if b.s.audio == nil {
		return false, nil // a bare Stream of a unit test: video only
	}
	switch {
	case t.spec.IcecastAudio:
		o := newIcecastOutput(b, t.spec.IcecastURL)
		set.icecast = append(set.icecast, o)
		t.audioKind, t.audioSrc, t.icecast = audioKindIcecast, &o.src, o
		return true, nil
	case t.spec.AudioCodec == audioKindOpus:
		if set.opus == nil {
			set.opus = newOpusOutput(b)
			created = true
		}
		t.audioKind, t.audioSrc = audioKindOpus, &set.opus.src
		return created, nil
	default:
		br := t.spec.AudioBitrate
		if br <= 0 {
			br = DefaultAudioBitrate
		}
		o := set.aac[br]
		if o == nil {
			if o, err = newAACOutput(b, br); err != nil {
				return false, err
			}
			set.aac[br] = o
			created = true
		}
		t.audioKind, t.audioSrc, t.audioBitrate = audioKindAAC, &o.src, br
		return created, nil
	}
}

// snapshot is what the audio pipeline feeds.
func (set *audioSet) snapshot(b *Broadcast) *audioOutputs {
	o := &audioOutputs{b: b, opus: set.opus}
	for _, a := range set.aac {
		o.aac = append(o.aac, a)
	}
	return o
}

func (set *audioSet) empty() bool {
	return len(set.aac) == 0 && set.opus == nil && len(set.icecast) == 0
}

// close stops the Icecast sources and waits for their goroutines.
func (set *audioSet) close() {
	for _, o := range set.icecast {
		o.stop()
	}
}

// audioFrame takes a pooled audio frame at stream time ms whose targets
// need the sequence header hdr; the caller appends the tag body and hands it
// to sendAudio.
func (b *Broadcast) audioFrame(ms int64, hdr *audioHeader) *frame {
	f := b.s.m.frames.get()
	f.tagType, f.ts, f.ahdr, f.recvAt = flv.TagAudio, uint32(ms), hdr, time.Now()
	return f
}

// sendAudio hands an audio frame to the live targets taking src (each
// queue holds its own reference) and gives the caller's back to the pool.
func (b *Broadcast) sendAudio(src *audioSource, f *frame) {
	if lp := b.live.Load(); lp != nil {
		for _, t := range *lp {
			if t.audioSrc == src {
				t.enqueueAudio(f)
			}
		}
	}
	f.release()
}
