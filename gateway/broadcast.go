package gateway

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/castbridge/castbridge/gateway/apierr"
	"github.com/castbridge/castbridge/gateway/audio"
	"github.com/castbridge/castbridge/gateway/media"
	"github.com/castbridge/castbridge/gateway/outpolicy"
	"github.com/castbridge/castbridge/gateway/rtmpout"
	"github.com/castbridge/castbridge/transmux/format/flv"
)

// BroadcastState is a broadcast's state as the API reports it.
type BroadcastState string

// Broadcast states.
const (
	BroadcastStarting BroadcastState = "starting"
	BroadcastLive     BroadcastState = "live"
	BroadcastStopping BroadcastState = "stopping"
	BroadcastStopped  BroadcastState = "stopped"
)

// audioDrain is how long a stopping broadcast lets its targets write the
// audio the encoders flushed.
const audioDrain = 250 * time.Millisecond

// Broadcast pushes one stream to its targets. It is the video pipeline's
// and the audio outputs' sink, and owns its targets: it starts each one's
// writer and joins it when the target is removed or the broadcast stops.
type Broadcast struct {
	s         *Stream
	startedAt time.Time
	// ctx ends when the broadcast stops or its stream closes: it bounds
	// the targets' dials and lives.
	ctx    context.Context
	cancel context.CancelFunc
	// live is the copy-on-write list of targets taking frames, read on every
	// frame without a lock.
	live atomic.Pointer[[]*rtmpout.Target]

	mu      sync.Mutex
	state   BroadcastState
	targets []*rtmpout.Target
	audio   broadcastAudio // the audio outputs, once started
}

func newBroadcast(s *Stream) *Broadcast {
	ctx, cancel := context.WithCancel(s.ctx)
	return &Broadcast{s: s, startedAt: time.Now().UTC(), state: BroadcastStarting, ctx: ctx, cancel: cancel}
}

// start validates every target, then connects to all of them at once. It
// fails, leaving nothing running, when no target could be started. ctx
// bounds the Icecast checks only.
func (b *Broadcast) start(ctx context.Context, specs []rtmpout.Spec, acc access) error {
	if err := rtmpout.ValidateAllFor(specs, acc.policy); err != nil {
		return err
	}
	// Every target carries audio: its outputs (Icecast sources checked,
	// AAC encoders made) exist before any ingest is dialed, so a bad
	// Icecast URL fails the start, never silently.
	outs := b.s.src.NewAudio(b)
	var targets []*rtmpout.Target
	failStart := func(e *apierr.Error) error {
		outs.Close()
		b.mu.Lock()
		b.targets, b.state = targets, BroadcastStopped
		b.mu.Unlock()
		b.cancel()
		b.s.events.Publish(StartBroadcastError{e.Info()})
		return e
	}
	for _, sp := range specs {
		if sp.IcecastAudio {
			if err := audio.ProbeIcecast(ctx, acc.icecast, b.s.log, sp.IcecastURL); err != nil {
				return failStart(apierr.As(err))
			}
		}
	}
	for _, sp := range specs {
		src, err := outs.For(sp, acc.icecast)
		if err != nil {
			return failStart(apierr.As(err))
		}
		targets = append(targets, b.newTarget(sp, src, acc.policy))
	}

	var wg sync.WaitGroup
	for _, t := range targets {
		wg.Go(func() { t.Connect() })
	}
	wg.Wait()

	var started []*rtmpout.Target
	var firstErr *apierr.Error
	for _, t := range targets {
		if t.State() == rtmpout.Failed {
			if firstErr == nil {
				firstErr = t.Err()
			}
			outs.Release(t.Audio())
			continue
		}
		started = append(started, t)
	}
	if len(started) == 0 {
		msgs := make([]string, len(targets))
		for i, t := range targets {
			msgs[i] = t.Err().Message
		}
		return failStart(&apierr.Error{Code: firstErr.Code, Message: strings.Join(msgs, "; ")})
	}

	b.mu.Lock()
	if b.state != BroadcastStarting {
		// Stopped (the stream closed) while the ingests were dialed.
		b.mu.Unlock()
		outs.Close()
		for _, t := range started {
			t.Abandon()
		}
		return &apierr.Error{Code: apierr.CodeNotFound, StreamID: b.s.id,
			Message: fmt.Sprintf("stream %s closed while the broadcast was starting", b.s.id)}
	}
	b.targets = targets
	b.state = BroadcastLive
	b.audio = outs
	for _, t := range started {
		t.Start()
	}
	b.live.Store(&started)
	b.mu.Unlock()
	for _, t := range started {
		if ic, ok := t.Audio().(*audio.IcecastOutput); ok {
			ic.Start()
		}
	}
	outs.Install()
	b.s.setBitrateCap(b.bitrateCap())
	b.s.src.Attach(b)
	b.s.log.Info("broadcast started", "targets", len(targets), "live", len(started))
	b.s.events.Publish(StartBroadcastSuccess{b.Info()})
	return nil
}

func (b *Broadcast) newTarget(spec rtmpout.Spec, src rtmpout.AudioSource, p *outpolicy.Policy) *rtmpout.Target {
	ep, _ := spec.ValidateFor(p) // validated by the caller
	if b.s.src.HasVideo() {
		// auto (and the default) resolved: the target writes the
		// stream's codec, and announces it in connect.
		spec.VideoCodec = string(b.s.streamVideoCodec())
	}
	return rtmpout.New(b.ctx, newID("tg_"), spec, ep, src, b.s, b.s.targetSettings(p))
}

// attachAudio gives a target its audio output: an Icecast source of its
// own, the Opus passthrough, or the AAC encoder of its bit rate.
func attachAudio(outs *audio.Outputs, spec rtmpout.Spec, icecastClient *http.Client) (rtmpout.AudioSource, error) {
	switch {
	case spec.IcecastAudio:
		return outs.Icecast(spec.IcecastURL, icecastClient), nil
	case spec.AudioCodec == rtmpout.AudioOpus:
		return outs.Opus(), nil
	default:
		br := spec.AudioBitrate
		if br <= 0 {
			br = rtmpout.DefaultAudioBitrate
		}
		o, err := outs.AAC(br)
		if err != nil {
			return nil, err
		}
		return o, nil
	}
}

// bitrateCap is the lowest videobitrate any running target asks for.
func (b *Broadcast) bitrateCap() int {
	capBps := 0
	for _, t := range b.Targets() {
		st := t.State()
		if v := t.Spec().VideoBitrate; v > 0 && st != rtmpout.Failed && st != rtmpout.Stopped && (capBps == 0 || v < capBps) {
			capBps = v
		}
	}
	return capBps
}

// AddTarget connects one more ingest to a live broadcast.
func (b *Broadcast) AddTarget(ctx context.Context, spec rtmpout.Spec) (*rtmpout.Target, error) {
	return b.AddScopedTarget(ctx, spec, nil)
}

// AddScopedTarget is AddTarget for a caller of scope sc (nil: the
// unrestricted one): the target is checked and dialed under the scope's
// output policy.
func (b *Broadcast) AddScopedTarget(ctx context.Context, spec rtmpout.Spec, sc *Scope) (*rtmpout.Target, error) {
	acc, err := b.s.owner.accessFor(sc)
	if err != nil {
		return nil, err
	}
	if _, err := spec.ValidateFor(acc.policy); err != nil {
		return nil, err
	}
	if err := b.s.checkVideoCodecs([]rtmpout.Spec{spec}); err != nil {
		return nil, err
	}
	if err := b.s.checkAudioCodecs([]rtmpout.Spec{spec}); err != nil {
		return nil, err
	}
	b.mu.Lock()
	outs := b.audio
	live := b.state == BroadcastLive
	full := len(b.targets) >= b.s.cfg.MaxTargets
	b.mu.Unlock()
	if !live {
		return nil, b.notBroadcasting()
	}
	if full {
		b.s.owner.refused(apierr.LimitTargets)
		return nil, targetsLimit(b.s.cfg.MaxTargets)
	}
	if spec.IcecastAudio {
		if err := audio.ProbeIcecast(ctx, acc.icecast, b.s.log, spec.IcecastURL); err != nil {
			return nil, err
		}
	}
	src, err := outs.For(spec, acc.icecast)
	if err != nil {
		return nil, err
	}
	t := b.newTarget(spec, src, acc.policy)
	if e := t.Connect(); e != nil {
		outs.Release(src)
		return nil, e
	}
	b.mu.Lock()
	if b.state != BroadcastLive {
		b.mu.Unlock()
		t.Abandon()
		outs.Release(src)
		return nil, &apierr.Error{Code: apierr.CodeNotBroadcasting, StreamID: b.s.id,
			Message: fmt.Sprintf("the broadcast of stream %s stopped while the target connected", b.s.id)}
	}
	if len(b.targets) >= b.s.cfg.MaxTargets { // another add won the last place
		b.mu.Unlock()
		t.Abandon()
		outs.Release(src)
		b.s.owner.refused(apierr.LimitTargets)
		return nil, targetsLimit(b.s.cfg.MaxTargets)
	}
	b.targets = append(b.targets, t)
	t.Start()
	b.publishLiveLocked()
	b.mu.Unlock()
	if ic, ok := src.(*audio.IcecastOutput); ok {
		ic.Start()
	}
	b.s.setBitrateCap(b.bitrateCap())
	b.s.RequestKeyframe("target added")
	return t, nil
}

func (b *Broadcast) notBroadcasting() *apierr.Error {
	return &apierr.Error{Code: apierr.CodeNotBroadcasting, StreamID: b.s.id, Message: fmt.Sprintf("stream %s is not broadcasting", b.s.id)}
}

// RemoveTarget stops one target cleanly, waits for it and forgets it.
func (b *Broadcast) RemoveTarget(id string) error {
	b.mu.Lock()
	i := slices.IndexFunc(b.targets, func(t *rtmpout.Target) bool { return t.ID() == id })
	if i < 0 {
		b.mu.Unlock()
		return &apierr.Error{Code: apierr.CodeNotFound, StreamID: b.s.id, Message: fmt.Sprintf("broadcast of stream %s has no target %q", b.s.id, id)}
	}
	t := b.targets[i]
	b.targets = slices.Delete(slices.Clone(b.targets), i, i+1)
	b.publishLiveLocked()
	outs := b.audio
	b.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), b.s.cfg.CloseTimeout)
	defer cancel()
	t.Stop(ctx)
	if outs != nil {
		outs.Release(t.Audio())
	}
	b.s.owner.retireTarget(t)
	b.s.setBitrateCap(b.bitrateCap())
	return nil
}

// publishLiveLocked rebuilds the lock-free list the senders read.
func (b *Broadcast) publishLiveLocked() {
	live := make([]*rtmpout.Target, 0, len(b.targets))
	for _, t := range b.targets {
		if t.Writing() {
			live = append(live, t)
		}
	}
	b.live.Store(&live)
}

// deliverData queues a client's metadata for every running target at stream
// time ms and says how many targets took it. refresh means "re-send the
// merged onMetaData"; otherwise body is the data message.
func (b *Broadcast) deliverData(refresh bool, body []byte, ms uint32) int {
	lp := b.live.Load()
	if lp == nil {
		return 0
	}
	f := b.s.frames.GetSmall()
	f.TagType = flv.TagScript
	f.TS = ms
	f.MetaRefresh = refresh
	f.Body = append(f.Body, body...)
	f.RecvAt = time.Now()
	n := 0
	for _, t := range *lp {
		if t.EnqueueData(f) {
			n++
		}
	}
	f.Release()
	return n
}

// Deliver hands a video frame to every live target's queue (video.Sink).
// It never blocks.
func (b *Broadcast) Deliver(f *media.Frame) {
	lp := b.live.Load()
	if lp == nil {
		return
	}
	for _, t := range *lp {
		t.Enqueue(f)
	}
}

// SendAudio hands an audio frame to the live targets taking src
// (audio.Sink); each queue holds its own reference.
func (b *Broadcast) SendAudio(src audio.Output, f *media.Frame) {
	lp := b.live.Load()
	if lp == nil {
		return
	}
	for _, t := range *lp {
		if t.Audio() == src {
			t.EnqueueAudio(f)
		}
	}
}

func (b *Broadcast) active() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.state == BroadcastStarting || b.state == BroadcastLive
}

// stop ends every target cleanly and waits for their writers: until ctx
// ends they say goodbye to their ingests, then they are cut off.
func (b *Broadcast) stop(ctx context.Context) {
	b.mu.Lock()
	if b.state == BroadcastStopping || b.state == BroadcastStopped {
		b.mu.Unlock()
		return
	}
	wasStarting := b.state == BroadcastStarting
	b.state = BroadcastStopping
	targets := b.targets
	outs := b.audio
	b.mu.Unlock()
	if wasStarting {
		b.cancel() // the dials in flight give up; start cleans up
	}

	b.s.src.Detach(b)
	// The audio ends with the video: the encoders are flushed (each holds
	// its last frame back) and what they deliver is given a moment to be
	// written before the targets stop.
	if outs != nil {
		outs.Uninstall()
		if !outs.Empty() {
			outs.Close()
			b.awaitQueues(ctx, audioDrain)
		}
	}
	b.s.setBitrateCap(0)
	b.live.Store(nil)
	var wg sync.WaitGroup
	for _, t := range targets {
		wg.Go(func() { t.Stop(ctx) })
	}
	wg.Wait()
	b.cancel()

	b.mu.Lock()
	b.state = BroadcastStopped
	b.mu.Unlock()
	b.s.log.Info("broadcast stopped")
	b.s.events.Publish(StopBroadcastSuccess{b.Info()})
}

// awaitQueues waits until every live target's queue is empty, at most d.
func (b *Broadcast) awaitQueues(ctx context.Context, d time.Duration) {
	lp := b.live.Load()
	if lp == nil {
		return
	}
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		busy := false
		for _, t := range *lp {
			if !t.Idle() {
				busy = true
			}
		}
		if !busy {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Info returns the API view of the broadcast.
func (b *Broadcast) Info() BroadcastInfo {
	b.mu.Lock()
	bi := BroadcastInfo{State: b.state, StartedAt: b.startedAt, Targets: make([]rtmpout.Info, len(b.targets))}
	targets := b.targets
	b.mu.Unlock()
	for i, t := range targets {
		bi.Targets[i] = t.Info()
	}
	return bi
}

// Targets returns the broadcast's targets.
func (b *Broadcast) Targets() []*rtmpout.Target {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]*rtmpout.Target(nil), b.targets...)
}
