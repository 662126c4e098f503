package gateway

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/castbridge/castbridge/transmux/flv"
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

// Broadcast pushes one stream to its targets.
type Broadcast struct {
	s         *Stream
	startedAt time.Time
	// live is the copy-on-write list of targets taking frames, read on every
	// frame without a lock.
	live atomic.Pointer[[]*Target]

	mu      sync.Mutex
	state   BroadcastState
	targets []*Target
	audio   *audioSet // the audio outputs, once started
}

func newBroadcast(s *Stream) *Broadcast {
	return &Broadcast{s: s, startedAt: time.Now().UTC(), state: BroadcastStarting}
}

// start validates every target, then connects to all of them at once. It
// fails, leaving nothing running, when no target could be started.
func (b *Broadcast) start(ctx context.Context, specs []TargetSpec) error {
	if err := ValidateTargets(specs); err != nil {
		return err
	}
	targets := make([]*Target, len(specs))
	for i := range specs {
		ep, _ := specs[i].validate()
		targets[i] = newTarget(b, specs[i], ep)
	}
	// Every target carries audio: its outputs (Icecast sources checked,
	// AAC encoders made) exist before any ingest is dialed, so a bad
	// Icecast URL fails the start, never silently.
	set := &audioSet{aac: map[int]*aacOutput{}}
	failStart := func(e *Error) error {
		set.close()
		b.mu.Lock()
		b.targets, b.state = targets, BroadcastStopped
		b.mu.Unlock()
		b.s.events.publish(EventStartBroadcastError, ErrorInfo{Code: e.Code, Message: e.Message})
		return e
	}
	for _, t := range targets {
		if t.spec.IcecastAudio {
			if err := probeIcecast(ctx, t.spec.IcecastURL); err != nil {
				return failStart(AsError(err))
			}
		}
	}
	for _, t := range targets {
		if _, err := b.attachAudio(set, t); err != nil {
			return failStart(AsError(err))
		}
	}

	// The publish handshakes outlive a client that hangs up mid-request.
	dialCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), b.s.m.cfg.PublishTimeout)
	defer cancel()
	var wg sync.WaitGroup
	for _, t := range targets {
		wg.Go(func() {
			t.connect(dialCtx)
		})
	}
	wg.Wait()

	var started []*Target
	var firstErr *Error
	for _, t := range targets {
		if t.State() == TargetFailed {
			if firstErr == nil {
				firstErr = t.lastError()
			}
			continue
		}
		started = append(started, t)
	}
	if len(started) == 0 {
		msgs := make([]string, len(targets))
		for i, t := range targets {
			msgs[i] = t.lastError().Message
		}
		set.close()
		b.mu.Lock()
		b.targets, b.state = targets, BroadcastStopped
		b.mu.Unlock()
		e := &Error{Code: firstErr.Code, Message: strings.Join(msgs, "; ")}
		b.s.events.publish(EventStartBroadcastError, ErrorInfo{Code: e.Code, Message: e.Message})
		return e
	}

	b.mu.Lock()
	if b.state != BroadcastStarting {
		// Stopped (the stream closed) while the ingests were dialed.
		b.mu.Unlock()
		set.close()
		for _, t := range started {
			_ = t.publisher().Close()
			t.setState(TargetStopped)
		}
		return errorf(CodeNotFound, "stream %s closed while the broadcast was starting", b.s.id)
	}
	b.targets = targets
	b.state = BroadcastLive
	b.audio = set
	b.live.Store(&started)
	b.mu.Unlock()
	for _, t := range started {
		t.startWriter()
		if t.icecast != nil {
			t.icecast.start()
		}
	}
	if a := b.s.audio; a != nil {
		a.setOutputs(set.snapshot(b))
	}
	b.s.setBitrateCap(b.bitrateCap())
	if v := b.s.video; v != nil {
		v.sink.Store(b)
		v.armKeyframes()
		v.requestKeyframe("broadcast started")
	}
	b.s.log.Info("broadcast started", "targets", len(targets), "live", len(started))
	b.s.events.publish(EventStartBroadcastSuccess, b.Info())
	return nil
}

// ValidateTargets checks every target of a broadcast without contacting any.
func ValidateTargets(specs []TargetSpec) error {
	if len(specs) == 0 {
		return errorf(CodeInvalidRequest, "a broadcast needs at least one target")
	}
	for i := range specs {
		if _, err := specs[i].validate(); err != nil {
			var e *Error
			if len(specs) > 1 && errors.As(err, &e) {
				e.Message = fmt.Sprintf("target %d: %s", i, e.Message)
			}
			return err
		}
	}
	return nil
}

// bitrateCap is the lowest videobitrate any running target asks for.
func (b *Broadcast) bitrateCap() int {
	capBps := 0
	for _, t := range b.Targets() {
		if v := t.spec.VideoBitrate; v > 0 && t.State() != TargetFailed && t.State() != TargetStopped && (capBps == 0 || v < capBps) {
			capBps = v
		}
	}
	return capBps
}

// AddTarget connects one more ingest to a live broadcast.
func (b *Broadcast) AddTarget(ctx context.Context, spec TargetSpec) (*Target, error) {
	ep, err := spec.validate()
	if err != nil {
		return nil, err
	}
	if !b.active() {
		return nil, errorf(CodeNotBroadcasting, "stream %s is not broadcasting", b.s.id)
	}
	if spec.IcecastAudio {
		if err := probeIcecast(ctx, spec.IcecastURL); err != nil {
			return nil, err
		}
	}
	t := newTarget(b, spec, ep)
	dialCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), b.s.m.cfg.PublishTimeout)
	defer cancel()
	t.connect(dialCtx)
	if t.State() == TargetFailed {
		return nil, t.lastError()
	}
	b.mu.Lock()
	if b.state != BroadcastLive {
		b.mu.Unlock()
		_ = t.publisher().Close()
		return nil, errorf(CodeNotBroadcasting, "the broadcast of stream %s stopped while the target connected", b.s.id)
	}
	if _, err := b.attachAudio(b.audio, t); err != nil {
		b.mu.Unlock()
		_ = t.publisher().Close()
		return nil, err
	}
	b.targets = append(b.targets, t)
	// The writer first: the live list holds only writing targets.
	t.startWriter()
	b.publishLiveLocked()
	snap := b.audio.snapshot(b)
	b.mu.Unlock()
	if a := b.s.audio; a != nil {
		a.setOutputs(snap)
	}
	if t.icecast != nil {
		t.icecast.start()
	}
	b.s.setBitrateCap(b.bitrateCap())
	b.s.RequestKeyframe("target added")
	return t, nil
}

// RemoveTarget stops one target cleanly and forgets it.
func (b *Broadcast) RemoveTarget(ctx context.Context, id string) error {
	b.mu.Lock()
	i := slices.IndexFunc(b.targets, func(t *Target) bool { return t.id == id })
	if i < 0 {
		b.mu.Unlock()
		return errorf(CodeNotFound, "broadcast of stream %s has no target %q", b.s.id, id)
	}
	t := b.targets[i]
	b.targets = slices.Delete(slices.Clone(b.targets), i, i+1)
	b.publishLiveLocked()
	b.mu.Unlock()
	t.stop(ctx)
	if t.icecast != nil {
		t.icecast.stop()
	}
	b.s.m.retireTarget(t)
	b.s.setBitrateCap(b.bitrateCap())
	return nil
}

// publishLiveLocked rebuilds the lock-free list deliver reads.
func (b *Broadcast) publishLiveLocked() {
	live := make([]*Target, 0, len(b.targets))
	for _, t := range b.targets {
		if t.writing.Load() {
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
	f := b.s.m.frames.get()
	f.tagType = flv.TagScript
	f.ts = ms
	f.metaRefresh = refresh
	f.body = append(f.body, body...)
	f.recvAt = time.Now()
	n := 0
	for _, t := range *lp {
		if t.accepting.Load() {
			t.enqueueData(f)
			n++
		}
	}
	f.release()
	return n
}

// deliver hands a frame to every live target's queue. It never blocks.
func (b *Broadcast) deliver(f *frame) {
	lp := b.live.Load()
	if lp == nil {
		return
	}
	for _, t := range *lp {
		t.enqueue(f)
	}
}

func (b *Broadcast) active() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.state == BroadcastStarting || b.state == BroadcastLive
}

// stop ends every target cleanly and waits for their writers.
func (b *Broadcast) stop(ctx context.Context) {
	b.mu.Lock()
	if b.state == BroadcastStopping || b.state == BroadcastStopped {
		b.mu.Unlock()
		return
	}
	b.state = BroadcastStopping
	targets := b.targets
	set := b.audio
	b.mu.Unlock()

	if v := b.s.video; v != nil {
		v.sink.CompareAndSwap(b, nil)
		v.disarmKeyframes()
	}
	// The audio ends with the video: the encoders are flushed (each holds
	// its last frame back) and what they deliver is given a moment to be
	// written before the targets stop.
	if a := b.s.audio; a != nil {
		if b.s.video != nil {
			// Video frames drive the silence (onTick), which lags
			// silenceLagMs behind: bring it to the video's end.
			a.fillTo(time.Now(), 0)
		}
		a.clearOutputs(b)
	}
	if set != nil && !set.empty() {
		set.close()
		b.awaitQueues(ctx, 250*time.Millisecond)
	}
	b.s.setBitrateCap(0)
	b.live.Store(nil)
	var wg sync.WaitGroup
	for _, t := range targets {
		wg.Go(func() {
			t.stop(ctx)
		})
	}
	wg.Wait()

	b.mu.Lock()
	b.state = BroadcastStopped
	b.mu.Unlock()
	b.s.log.Info("broadcast stopped")
	b.s.events.publish(EventStopBroadcastSuccess, b.Info())
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
			if t.accepting.Load() && len(t.queue) > 0 {
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
	bi := BroadcastInfo{State: b.state, StartedAt: b.startedAt, Targets: make([]TargetInfo, len(b.targets))}
	targets := b.targets
	b.mu.Unlock()
	for i, t := range targets {
		bi.Targets[i] = t.Info()
	}
	return bi
}

// Targets returns the broadcast's targets.
func (b *Broadcast) Targets() []*Target {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]*Target(nil), b.targets...)
}
