package audio

import (
	"bytes"
	"context"
	"errors"
	"log/slog"

	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/castbridge/castbridge/gateway/apierr"
	"github.com/castbridge/castbridge/gateway/media"
	"github.com/castbridge/castbridge/gateway/outpolicy"
	"github.com/castbridge/castbridge/transmux/codec/aaclc"
	"github.com/castbridge/castbridge/transmux/format/flv"
	"github.com/castbridge/castbridge/transmux/source/icecast"
)

// fourCCOpusID is the E-RTMP FourCC "Opus" as onMetaData's audiocodecid.
const fourCCOpusID = 0x4F707573

// mp3Header marks MP3 frames: no sequence header.
var mp3Header = &media.AudioHeader{}

// Output is one audio output of a broadcast; each target takes the frames
// of exactly one. Its onMetaData fields say what the target's audio is.
type Output interface {
	AudioMetadata(md map[string]any)
}

// Sink takes an output's frames for the targets that take that output.
// It must not block; it releases nothing (the caller keeps its reference
// and releases it after SendAudio returns).
type Sink interface {
	SendAudio(src Output, f *media.Frame)
}

// snapshot is what the pipeline feeds, replaced (never changed) when
// outputs are added.
type snapshot struct {
	set  *Outputs
	aac  []*AACOutput
	opus *OpusOutput
}

// Outputs owns one broadcast's audio outputs: the AAC encoders (one per bit
// rate, shared by the targets asking for it), the Opus passthrough and the
// Icecast sources (one per target, each with its goroutine).
type Outputs struct {
	p      *Pipeline
	sink   Sink
	ctx    context.Context // the Icecast sources' lifetime
	cancel context.CancelFunc

	mu        sync.Mutex
	aac       map[int]*AACOutput
	opus      *OpusOutput
	icecast   []*IcecastOutput
	installed bool
}

// NewOutputs returns an empty set of outputs delivering to sink.
func (p *Pipeline) NewOutputs(sink Sink) *Outputs {
	ctx, cancel := context.WithCancel(context.Background())
	return &Outputs{p: p, sink: sink, ctx: ctx, cancel: cancel, aac: map[int]*AACOutput{}}
}

// AAC returns the encoder at bitrate, making it when none runs yet.
func (o *Outputs) AAC(bitrate int) (*AACOutput, error) {
	o.mu.Lock()
	out := o.aac[bitrate]
	if out == nil {
		var err error
		if out, err = o.newAAC(bitrate); err != nil {
			o.mu.Unlock()
			return nil, err
		}
		o.aac[bitrate] = out
	}
	out.users++
	o.mu.Unlock()
	o.refresh()
	return out, nil
}

// Opus returns the passthrough, making it when none runs yet.
func (o *Outputs) Opus() *OpusOutput {
	o.mu.Lock()
	if o.opus == nil {
		o.opus = &OpusOutput{outs: o, hdr: &media.AudioHeader{Body: flv.AppendOpusSequenceStart(nil, 2, Rate)}}
	}
	o.opus.users++
	out := o.opus
	o.mu.Unlock()
	o.refresh()
	return out
}

// Icecast makes a target's own Icecast source; StartIcecast runs it.
// client makes its requests (nil: the icecast package's default).
func (o *Outputs) Icecast(url string, client *http.Client) *IcecastOutput {
	ic := &IcecastOutput{url: url, client: client, outs: o, done: make(chan struct{})}
	o.mu.Lock()
	o.icecast = append(o.icecast, ic)
	o.mu.Unlock()
	return ic
}

// Release gives back a target's output (the target was removed, or never
// started): an encoder or passthrough no target takes any more stops being
// fed, and an Icecast source stops.
func (o *Outputs) Release(src Output) {
	o.mu.Lock()
	switch s := src.(type) {
	case *AACOutput:
		if s.users--; s.users == 0 && o.aac[s.bitrate] == s {
			delete(o.aac, s.bitrate)
		}
	case *OpusOutput:
		if s.users--; s.users == 0 && o.opus == s {
			o.opus = nil
		}
	case *IcecastOutput:
		for i, ic := range o.icecast {
			if ic == s {
				o.icecast = append(o.icecast[:i:i], o.icecast[i+1:]...)
				break
			}
		}
	}
	o.mu.Unlock()
	if ic, ok := src.(*IcecastOutput); ok {
		ic.Stop()
	}
	o.refresh()
}

// Install makes the pipeline feed these outputs.
func (o *Outputs) Install() {
	o.mu.Lock()
	o.installed = true
	o.mu.Unlock()
	o.refresh()
}

// refresh gives the pipeline a new snapshot when the outputs are installed.
func (o *Outputs) refresh() {
	o.mu.Lock()
	defer o.mu.Unlock()
	if !o.installed {
		return
	}
	snap := &snapshot{set: o, opus: o.opus}
	for _, a := range o.aac {
		snap.aac = append(snap.aac, a)
	}
	o.p.mu.Lock()
	if cur := o.p.outs.Load(); cur == nil || cur.set == o {
		o.p.outs.Store(snap)
	}
	o.p.mu.Unlock()
}

// Uninstall stops feeding these outputs, first bringing the audio to the
// video's end (a stream with video) and flushing the AAC encoders, so the
// audio runs to the end of the PCM fed.
func (o *Outputs) Uninstall() {
	p := o.p
	if p.cfg.FollowsVideo {
		// The silence lags silenceLagMs behind: bring it to the video's end.
		p.fillTo(time.Now(), 0)
	}
	p.mu.Lock()
	if cur := p.outs.Load(); cur != nil && cur.set == o {
		for _, enc := range cur.aac {
			enc.flush()
		}
		p.outs.Store(nil)
	}
	p.mu.Unlock()
	o.mu.Lock()
	o.installed = false
	o.mu.Unlock()
}

// Empty reports whether there are no outputs at all.
func (o *Outputs) Empty() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.aac) == 0 && o.opus == nil && len(o.icecast) == 0
}

// Close stops every Icecast source and waits for their goroutines.
func (o *Outputs) Close() {
	o.cancel()
	o.mu.Lock()
	ics := o.icecast
	o.mu.Unlock()
	for _, ic := range ics {
		ic.wait()
	}
}

// frame takes a pooled audio frame at stream time ms whose targets need
// the sequence header hdr; the caller appends the tag body and sends it.
func (o *Outputs) frame(ms int64, hdr *media.AudioHeader) *media.Frame {
	f := o.p.cfg.Frames.GetSmall()
	f.TagType, f.TS, f.AudioHeader, f.RecvAt = flv.TagAudio, uint32(ms), hdr, time.Now()
	return f
}

func (o *Outputs) send(src Output, f *media.Frame) {
	o.sink.SendAudio(src, f)
	f.Release()
}

// AACOutput is one AAC encoder of the stream's PCM, run in-process on the
// goroutine that feeds the pipeline (an ffmpeg child per stream cost ~2.6%
// of a core; this encoder ~0.25%).
type AACOutput struct {
	bitrate int
	outs    *Outputs
	hdr     *media.AudioHeader
	users   int // targets taking it; Outputs.mu

	// feeding goroutine state, p.mu held
	enc      *aaclc.Encoder
	started  bool
	startPos int64   // the pipeline position of the encoder's sample 0
	frames   int64   // frames encoded
	pending  []int16 // PCM short of a frame and its look-ahead
	out      []byte
}

func (o *Outputs) newAAC(bitrate int) (*AACOutput, error) {
	enc, err := aaclc.NewEncoder(aaclc.Config{SampleRate: Rate, Channels: 2, Bitrate: bitrate})
	if err != nil {
		return nil, apierr.Wrap(apierr.CodeInvalidRequest, err, "audiobitrate %d cannot be encoded: %v", bitrate, err)
	}
	return &AACOutput{
		bitrate: bitrate,
		outs:    o,
		hdr:     &media.AudioHeader{Body: flv.AppendAACSequenceHeader(nil, enc.AudioSpecificConfig())},
		enc:     enc,
		pending: make([]int16, 0, aacNeedLen),
	}, nil
}

// AudioMetadata says the target's audio is AAC-LC 48 kHz stereo.
func (a *AACOutput) AudioMetadata(md map[string]any) {
	md["audiocodecid"] = float64(flv.AudioCodecAAC)
	md["audiosamplerate"] = float64(Rate)
	md["audiosamplesize"] = float64(16)
	md["audiochannels"] = float64(2)
	md["stereo"] = true
	md["audiodatarate"] = float64(a.bitrate) / 1000
}

// Sizes in interleaved stereo samples: a frame, and the frame plus the
// start of the next, which the encoder takes as look-ahead.
const (
	aacFrameLen = aaclc.FrameSamples * 2
	aacNeedLen  = aacFrameLen + aaclc.LookAheadSamples*2
)

// write encodes interleaved stereo PCM that starts at pipeline position
// pos, a frame whenever 1024 samples and the encoder's 576 of look-ahead
// past them are there. p.mu held.
func (a *AACOutput) write(pos int64, pcm []int16) {
	if !a.started {
		a.started, a.startPos = true, pos
	}
	for len(pcm) > 0 {
		n := min(aacNeedLen-len(a.pending), len(pcm))
		a.pending = append(a.pending, pcm[:n]...)
		pcm = pcm[n:]
		if len(a.pending) == aacNeedLen {
			a.encode(a.pending[:aacFrameLen], a.pending[aacFrameLen:])
			a.pending = a.pending[:copy(a.pending, a.pending[aacFrameLen:])]
		}
	}
}

// flush encodes the pending PCM padded with silence to whole frames, then
// one frame of silence to get out the frame the encoder holds back (the
// overlap). p.mu held.
func (a *AACOutput) flush() {
	if !a.started {
		return
	}
	for {
		n := len(a.pending)
		a.pending = a.pending[:aacNeedLen]
		clear(a.pending[n:])
		a.encode(a.pending[:aacFrameLen], a.pending[aacFrameLen:])
		if n == 0 {
			break // that was the silent frame
		}
		rest := max(n-aacFrameLen, 0)
		a.pending = a.pending[:copy(a.pending, a.pending[aacFrameLen:aacFrameLen+rest])]
	}
	a.pending = a.pending[:0]
}

// encode encodes a frame of pcm with ahead, the start of the next frame,
// as the encoder's look-ahead.
func (a *AACOutput) encode(pcm, ahead []int16) {
	out, err := a.enc.Encode(a.out[:0], pcm, ahead)
	if err != nil {
		a.outs.p.cfg.Logger.Error("aac encode", "bitrate", a.bitrate, "err", err)
		return
	}
	a.out = out
	n := a.frames
	a.frames++
	// Frame n carries samples [(n-1)*1024, n*1024) of the encoder's input:
	// frame 0 is the encoder's priming, before the stream's first sample, so
	// it is not sent. (A decoder joining at frame 1 misses only its overlap,
	// as every player joining a live stream mid-way does.)
	if n == 0 {
		return
	}
	f := a.outs.frame(a.outs.p.tl.msAt(a.startPos+(n-1)*aaclc.FrameSamples), a.hdr)
	f.Body = flv.AppendAACRaw(f.Body, out)
	a.outs.send(a, f)
}

// OpusOutput passes the publisher's Opus through as E-RTMP audio.
type OpusOutput struct {
	outs  *Outputs
	hdr   *media.AudioHeader
	users int // targets taking it; Outputs.mu
}

// AudioMetadata says the target's audio is Opus (E-RTMP FourCC).
func (op *OpusOutput) AudioMetadata(md map[string]any) {
	md["audiocodecid"] = float64(fourCCOpusID)
	md["audiosamplerate"] = float64(Rate)
	md["audiosamplesize"] = float64(16)
	md["audiochannels"] = float64(2)
	md["stereo"] = true
}

// send delivers one Opus packet of samples (per channel) at stream time
// ms. p.mu held.
func (op *OpusOutput) send(ms int64, packet []byte, samples int64) {
	f := op.outs.frame(ms, op.hdr)
	f.Body = flv.AppendOpusFrame(f.Body, packet)
	f.DurationMs = uint32(samples * 1000 / Rate)
	op.outs.send(op, f)
}

// IcecastOutput is one target's audio from an Icecast/HTTP stream, placed
// on the stream's clock: its first frame at the stream's "now", the
// following ones by their sample count, paced to real time; a source that
// fell behind (it reconnected) is placed at "now" again.
type IcecastOutput struct {
	url    string
	client *http.Client
	outs   *Outputs
	codec  atomic.Int32 // icecast.Codec, 0 until the first frame
	rate   atomic.Int32
	cancel context.CancelFunc
	done   chan struct{}
	began  atomic.Bool

	// run goroutine state
	hdr     *media.AudioHeader
	asc     []byte
	started bool
	baseMs  int64
	samples int64
	srcRate int
	timer   *time.Timer
}

// ProbeIcecast checks a target's Icecast URL before the broadcast starts,
// with client (nil: http.DefaultClient; the gateway passes its output
// policy's). A refused address is INVALID_OUTPUT; the messages name the
// URL as scheme://host/**** and never quote what the server sent.
func ProbeIcecast(ctx context.Context, client *http.Client, log *slog.Logger, url string) error {
	err := icecast.Validate(url)
	if err == nil {
		err = icecast.Probe(ctx, client, url)
	}
	if err == nil {
		return nil
	}
	var fe *icecast.FetchError
	if log != nil && errors.As(err, &fe) {
		log.Debug("icecast probe failed", "url", icecast.Redact(url), "detail", fe.Detail())
	}
	var denied *outpolicy.DeniedError
	if errors.As(err, &denied) {
		code := apierr.CodeOutputNotAllowed
		if denied.OutsideScope() {
			code = apierr.CodeForbidden
		}
		return apierr.Wrap(code, err, "icecast_url %s", denied)
	}
	return apierr.Wrap(apierr.CodeInvalidRequest, err, "icecast_url cannot be used as an audio source: %v", err)
}

// AudioMetadata says the target's audio is the source's MP3 or AAC, once
// known.
func (ic *IcecastOutput) AudioMetadata(md map[string]any) {
	switch icecast.Codec(ic.codec.Load()) {
	case icecast.MP3:
		md["audiocodecid"] = float64(2)
	case icecast.AAC:
		md["audiocodecid"] = float64(flv.AudioCodecAAC)
	}
	if r := ic.rate.Load(); r > 0 {
		md["audiosamplerate"] = float64(r)
	}
}

// Start runs the source on a goroutine the outputs own, until Stop or the
// outputs' Close.
func (ic *IcecastOutput) Start() {
	ctx, cancel := context.WithCancel(ic.outs.ctx)
	ic.cancel = cancel
	ic.began.Store(true)
	log := ic.outs.p.cfg.Logger.With("icecast", "source")
	go func() {
		defer close(ic.done)
		src, err := icecast.New(icecast.Config{URL: ic.url, Client: ic.client, Logger: log})
		if err != nil {
			log.Warn("icecast source", "err", err)
			return
		}
		ic.timer = time.NewTimer(time.Hour)
		ic.timer.Stop()
		_ = src.Run(ctx, func(fr icecast.Frame) error { return ic.onFrame(ctx, fr) })
	}()
}

// Stop ends the source (its target was removed) and waits for it.
func (ic *IcecastOutput) Stop() {
	if ic.began.Load() {
		ic.cancel()
	}
	ic.wait()
}

func (ic *IcecastOutput) wait() {
	if ic.began.Load() {
		<-ic.done
	}
}

func (ic *IcecastOutput) onFrame(ctx context.Context, fr icecast.Frame) error {
	if fr.SampleRate <= 0 {
		return nil
	}
	nowMs, ok := ic.outs.p.cfg.Clock.NowMillis(time.Now())
	if !ok {
		return nil // no media yet: nothing to align to
	}
	if !ic.started || fr.SampleRate != ic.srcRate || ic.baseMs+ic.samples*1000/int64(ic.srcRate) < nowMs-1000 {
		ic.started, ic.baseMs, ic.samples, ic.srcRate = true, nowMs, 0, fr.SampleRate
	}
	ms := ic.baseMs + ic.samples*1000/int64(ic.srcRate)
	ic.samples += int64(fr.Samples)
	// Pace a source that sends faster than real time (a server's burst at
	// connect) so the target's queue is not flooded.
	if ahead := ms - nowMs - 300; ahead > 0 {
		ic.timer.Reset(time.Duration(ahead) * time.Millisecond)
		select {
		case <-ic.timer.C:
		case <-ctx.Done():
			ic.timer.Stop()
			return ctx.Err()
		}
	}
	ic.codec.Store(int32(fr.Codec))
	ic.rate.Store(int32(fr.SampleRate))
	var f *media.Frame
	switch fr.Codec {
	case icecast.MP3:
		f = ic.outs.frame(ms, mp3Header)
		f.Body = flv.AppendMP3(f.Body, fr.Data, fr.SampleRate, fr.Channels)
	case icecast.AAC:
		if ic.hdr == nil || !bytes.Equal(fr.ASC, ic.asc) {
			ic.asc = bytes.Clone(fr.ASC)
			ic.hdr = &media.AudioHeader{Body: flv.AppendAACSequenceHeader(nil, fr.ASC)}
		}
		f = ic.outs.frame(ms, ic.hdr)
		f.Body = flv.AppendAACRaw(f.Body, fr.Data)
	default:
		return nil
	}
	ic.outs.send(ic, f)
	return nil
}
