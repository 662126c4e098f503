package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/castbridge/castbridge/transmux/format/flv"
	"github.com/castbridge/castbridge/transmux/rtmp/rtmppush"
)

// TargetState is a target's state as the API reports it.
type TargetState string

// Target states. A target is live only while its connection is up and
// video flows on it: a dead push never shows live.
const (
	TargetConnecting   TargetState = "connecting" // dialing, or published and waiting for a keyframe
	TargetLive         TargetState = "live"
	TargetReconnecting TargetState = "reconnecting"
	TargetFailed       TargetState = "failed"
	TargetStopped      TargetState = "stopped"
)

const (
	// queueFrames bounds a target's backlog (~13 s of 30 fps video with
	// its ~47 AAC frames a second).
	queueFrames = 1024
	// dropQueueFrames is the backlog of a dropframes target (~0.5 s).
	dropQueueFrames = 40
	// maxQueueBytes bounds a target's backlog in bytes.
	maxQueueBytes = 8 << 20
	// encoderName goes into onMetaData.
	encoderName = "castbridge"
	// audioFlushDelay is the longest an audio frame waits in the target's
	// send buffer. Audio is not written on its own (one write syscall per
	// 20 ms frame was about a third of the gateway's CPU in the 100-stream
	// profile, with the video's writes): it goes out with the next video
	// frame, which flushes at once, or after this delay (audio-only).
	audioFlushDelay = 40 * time.Millisecond
)

// Target is one RTMP ingest of a broadcast, with its own bounded queue and
// writer goroutine.
type Target struct {
	id   string
	spec TargetSpec
	ep   rtmppush.Endpoint
	b    *Broadcast
	log  *slog.Logger

	queue     chan *frame
	writing   atomic.Bool     // the writer goroutine was started
	accepting atomic.Bool     // enqueue takes frames
	needKey   atomic.Bool     // a frame was dropped: skip to the next keyframe
	gap       atomic.Bool     // enqueue only: a frame was dropped and no keyframe queued since
	ctx       context.Context // ends when the target is stopped
	cancel    context.CancelFunc
	stopCh    chan struct{}
	stopOnce  sync.Once
	done      chan struct{}
	pub       atomic.Pointer[rtmppush.Publisher] // set by connect; written by the writer only

	// The target's audio, set before its writer starts: which output's
	// frames it takes (audioSrc is the routing key).
	audioSrc     *audioSource
	audioKind    string
	audioBitrate int
	icecast      *icecastOutput

	// queuedBytes bounds memory too: a frame count alone allows 512 huge IDRs.
	queuedBytes atomic.Int64
	bytesBefore atomic.Uint64 // bytes sent on earlier connections
	// stream times of the newest frame queued and the last taken off the
	// queue: their difference is how far behind the ingest is.
	enqueuedMs    atomic.Uint32
	dequeuedMs    atomic.Uint32
	framesSent    atomic.Uint64 // video frames
	audioSent     atomic.Uint64 // audio frames
	framesDropped atomic.Uint64
	latency       latencyHistogram
	rate          rateMeter

	mu         sync.Mutex
	state      TargetState
	err        *Error
	reconnects int
}

func newTarget(b *Broadcast, spec TargetSpec, ep rtmppush.Endpoint) *Target {
	n := queueFrames
	if spec.DropFrames {
		n = dropQueueFrames
	}
	id := newID("tg_")
	ctx, cancel := context.WithCancel(context.Background())
	return &Target{
		ctx:    ctx,
		cancel: cancel,
		id:     id,
		spec:   spec,
		ep:     ep,
		b:      b,
		log:    b.s.log.With("target", id, "output", ep.Redacted()),
		queue:  make(chan *frame, n),
		stopCh: make(chan struct{}),
		done:   make(chan struct{}),
		state:  TargetConnecting,
	}
}

func (t *Target) publisher() *rtmppush.Publisher { return t.pub.Load() }

// ID is the target's API id.
func (t *Target) ID() string { return t.id }

// connect dials the ingest and publishes. On failure the target is failed
// with the ingest's error.
func (t *Target) connect(ctx context.Context) {
	pub, err := rtmppush.Dial(ctx, t.dialConfig())
	if err != nil {
		t.fail(ingestError(t.ep, err))
		return
	}
	t.pub.Store(pub)
	t.log.Info("publishing")
}

func (t *Target) dialConfig() rtmppush.Config {
	return rtmppush.Config{
		Endpoint:       t.ep,
		ConnectInfo:    t.spec.ConnectInfo,
		PublishTimeout: t.b.s.m.cfg.PublishTimeout,
		Logger:         t.log,
	}
}

// ingestError turns a publish failure into the API's error.
func ingestError(ep rtmppush.Endpoint, err error) *Error {
	var rej *rtmppush.RejectedError
	if errors.As(err, &rej) {
		return &Error{Code: CodeIngestRejected, Err: err, Message: fmt.Sprintf(
			"ingest %s refused the publish: %s %s", ep.Redacted(), rej.Code, rej.Description)}
	}
	return &Error{Code: CodeIngestUnreachable, Err: err, Message: fmt.Sprintf(
		"ingest %s cannot be reached: %v", ep.Redacted(), err)}
}

// fail marks the target failed for good and says so.
func (t *Target) fail(e *Error) {
	t.accepting.Store(false)
	t.mu.Lock()
	t.state, t.err = TargetFailed, e
	t.mu.Unlock()
	t.log.Warn("target failed", "code", e.Code, "err", e.Message)
	t.b.s.events.publish(EventTargetFailed, map[string]any{"targetId": t.id, "output": t.ep.Redacted(), "code": e.Code, "message": e.Message})
}

func (t *Target) setState(st TargetState) {
	t.mu.Lock()
	t.state = st
	t.mu.Unlock()
}

// State is the target's current state.
func (t *Target) State() TargetState {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.state
}

func (t *Target) lastError() *Error {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.err
}

func (t *Target) startWriter() {
	t.writing.Store(true)
	t.accepting.Store(true)
	go t.run()
}

// enqueue offers a frame without blocking. A full queue drops the frame and
// makes the writer skip to the next keyframe, which is asked for. Frames
// after a drop are not queued until a keyframe is: they reference the
// dropped one, and a keyframe queued before the drop (which ends the
// writer's skip) must not let them through.
func (t *Target) enqueue(f *frame) {
	if !t.accepting.Load() {
		return
	}
	if !f.keyframe && t.gap.Load() {
		t.framesDropped.Add(1)
		return
	}
	size := int64(len(f.body))
	if t.queuedBytes.Load()+size > maxQueueBytes {
		t.dropForGap(f)
		return
	}
	f.retain()
	t.queuedBytes.Add(size)
	select {
	case t.queue <- f:
		t.enqueuedMs.Store(f.ts)
		if f.keyframe {
			t.gap.Store(false)
		}
	default:
		t.queuedBytes.Add(-size)
		f.release()
		t.dropForGap(f)
	}
}

// dropForGap drops a frame the queue cannot take: what follows waits for a
// keyframe, which is asked for.
func (t *Target) dropForGap(f *frame) {
	t.framesDropped.Add(1)
	t.gap.Store(true)
	if !t.needKey.Swap(true) || f.keyframe {
		t.b.s.RequestKeyframe("target queue full")
	}
}

// enqueueData queues a data frame. It is never dropped for a gap (it does
// not depend on other frames) but still bounded by the queue.
func (t *Target) enqueueData(f *frame) {
	f.retain()
	t.queuedBytes.Add(int64(len(f.body)))
	select {
	case t.queue <- f:
		t.enqueuedMs.Store(f.ts)
	default:
		t.queuedBytes.Add(-int64(len(f.body)))
		f.release()
	}
}

// enqueueAudio queues an audio frame. Audio depends on no other frame and
// never waits for a keyframe; a full queue drops it.
func (t *Target) enqueueAudio(f *frame) {
	if !t.accepting.Load() {
		return
	}
	f.retain()
	select {
	case t.queue <- f:
		t.enqueuedMs.Store(f.ts)
	default:
		f.release()
		t.framesDropped.Add(1)
	}
}

// writer is the state of the writer goroutine for one connection.
type writer struct {
	pub        *rtmppush.Publisher
	started    bool   // a keyframe (audio-only: an audio frame) went out on this connection
	base       uint32 // stream time of that frame: connection time 0
	last       uint32 // last connection timestamp written (video and data)
	lastAudio  uint32 // last audio timestamp written
	sentParams *paramSet
	sentAudio  *audioHeader // the audio sequence header sent on this connection
}

// ts maps stream time to this connection's time, never going back.
func (w *writer) ts(streamMs uint32) uint32 {
	ts := streamMs - w.base
	if int32(ts-w.last) < 0 {
		ts = w.last
	}
	w.last = ts
	return ts
}

// run is the target's writer goroutine: it writes frames until the target is
// stopped, and brings the connection back when the ingest fails.
func (t *Target) run() {
	defer close(t.done)
	for {
		err := t.pump(&writer{pub: t.publisher()})
		t.closeConnection()
		if err == nil {
			t.setState(TargetStopped)
			return
		}
		if !t.reconnect(err) {
			return
		}
	}
}

// pump writes queued frames on one connection. It returns nil when the
// target was stopped, or why the connection is no longer usable.
func (t *Target) pump(w *writer) error {
	w.pub.SetBatching(true)
	flush := time.NewTimer(audioFlushDelay)
	flush.Stop()
	defer flush.Stop()
	armed := false
	writeFailed := func(err error) error {
		return &Error{Code: CodeIngestUnreachable, Err: err, Message: fmt.Sprintf("ingest %s: write failed: %v", t.ep.Redacted(), err)}
	}
	for {
		select {
		case f := <-t.queue:
			t.queuedBytes.Add(-int64(len(f.body)))
			t.dequeuedMs.Store(f.ts)
			err := t.write(w, f)
			f.release()
			if err != nil {
				return writeFailed(err)
			}
			// Video and data flush as they are written; audio waits.
			if pending := w.pub.Buffered() > 0; pending != armed {
				if pending {
					flush.Reset(audioFlushDelay)
				} else {
					flush.Stop()
				}
				armed = pending
			}
		case <-flush.C:
			armed = false
			if err := w.pub.Flush(); err != nil {
				return writeFailed(err)
			}
		case <-w.pub.Done():
			err := w.pub.Err()
			return &Error{Code: CodeIngestUnreachable, Err: err, Message: fmt.Sprintf("ingest %s closed the connection: %v", t.ep.Redacted(), err)}
		case <-t.stopCh:
			return nil
		}
	}
}

// closeConnection stops taking frames, drops what is queued (after a stop
// nobody is watching; after a failure it cannot be written), and tells the
// ingest FCUnpublish/deleteStream before closing.
func (t *Target) closeConnection() {
	t.accepting.Store(false)
	for drained := false; !drained; {
		select {
		case f := <-t.queue:
			t.queuedBytes.Add(-int64(len(f.body)))
			f.release()
		default:
			drained = true
		}
	}
	p := t.publisher()
	if err := p.Close(); err != nil {
		t.log.Debug("close", "err", err)
	}
	t.bytesBefore.Add(p.BytesSent())
	t.pub.Store(nil)
}

// reconnect dials again with backoff until it succeeds (true), the target is
// stopped, the ingest refuses the publish, or the policy's window ends.
func (t *Target) reconnect(cause error) bool {
	policy := t.b.s.m.cfg.Reconnect
	started := time.Now()
	for attempt := 1; ; attempt++ {
		if time.Since(started) > policy.Window {
			t.fail(&Error{Code: CodeIngestUnreachable, Err: cause, Message: fmt.Sprintf(
				"ingest %s: gave up after %v of reconnecting: %v", t.ep.Redacted(), policy.Window, AsError(cause).Message)})
			return false
		}
		delay := policy.delay(attempt)
		t.mu.Lock()
		t.state = TargetReconnecting
		t.err = AsError(cause)
		t.mu.Unlock()
		t.log.Warn("reconnecting", "attempt", attempt, "in", delay, "err", AsError(cause).Message)
		t.b.s.events.publish(EventTargetReconnecting, map[string]any{
			"targetId": t.id, "output": t.ep.Redacted(), "attempt": attempt, "delayMs": delay.Milliseconds(),
			"code": AsError(cause).Code, "message": AsError(cause).Message})
		timer := time.NewTimer(delay)
		select {
		case <-timer.C:
		case <-t.stopCh:
			timer.Stop()
			t.setState(TargetStopped)
			return false
		}
		ctx, cancel := context.WithTimeout(t.ctx, t.b.s.m.cfg.PublishTimeout)
		pub, err := rtmppush.Dial(ctx, t.dialConfig())
		cancel()
		if err != nil {
			ierr := ingestError(t.ep, err)
			if ierr.Code == CodeIngestRejected {
				t.fail(ierr) // a bad key stays bad: no retrying forever
				return false
			}
			cause = ierr
			continue
		}
		t.pub.Store(pub)
		t.mu.Lock()
		t.reconnects++
		t.state = TargetConnecting
		t.mu.Unlock()
		t.needKey.Store(true)
		t.gap.Store(true)
		t.accepting.Store(true)
		t.b.s.RequestKeyframe("target reconnected")
		t.log.Info("reconnected", "attempt", attempt)
		return true
	}
}

// write sends one frame. Video starts on a keyframe with onMetaData and the
// AVC sequence header before it; a new sequence header goes out whenever
// the SPS/PPS change. Timestamps start at 0 on each connection.
func (t *Target) write(w *writer, f *frame) error {
	switch f.tagType {
	case flv.TagScript:
		return t.writeData(w, f)
	case flv.TagAudio:
		return t.writeAudio(w, f)
	}
	if !f.keyframe && (!w.started || t.needKey.Load()) {
		if w.started {
			t.framesDropped.Add(1)
		}
		return nil
	}
	if f.keyframe {
		t.needKey.Store(false)
		if !w.started {
			w.base = f.ts
		}
		ts := w.ts(f.ts)
		if f.params != w.sentParams {
			if w.sentParams == nil || w.sentParams.width != f.params.width || w.sentParams.height != f.params.height {
				if err := t.writeMetadata(w.pub, ts, f.params); err != nil {
					return err
				}
			}
			if err := w.pub.WriteVideo(ts, f.params.seqHeader); err != nil {
				return fmt.Errorf("sequence header: %w", err)
			}
			w.sentParams = f.params
		}
	}
	if err := w.pub.WriteVideo(w.ts(f.ts), f.body); err != nil {
		return err
	}
	// With the audio written since the last video frame, in one write.
	if err := w.pub.Flush(); err != nil {
		return err
	}
	t.framesSent.Add(1)
	t.latency.observe(time.Since(f.recvAt))
	if !w.started {
		t.goneLive(w)
	}
	return nil
}

func (t *Target) goneLive(w *writer) {
	w.started = true
	t.setState(TargetLive)
	t.log.Info("live")
	t.mu.Lock()
	reconnects := t.reconnects
	t.err = nil
	t.mu.Unlock()
	t.b.s.events.publish(EventTargetConnected, map[string]any{"targetId": t.id, "output": t.ep.Redacted(), "reconnects": reconnects})
}

// writeAudio writes an audio frame, after its sequence header when this
// connection has not had it. On a stream with video nothing goes out before
// the first keyframe (the FLV starts with onMetaData, the sequence headers
// and an IDR), and audio from before it is dropped; an audio-only stream
// starts on its first audio frame.
func (t *Target) writeAudio(w *writer, f *frame) error {
	if !w.started {
		if t.b.s.video != nil {
			return nil
		}
		w.base = f.ts
		if err := t.writeMetadata(w.pub, 0, nil); err != nil {
			return err
		}
		t.goneLive(w)
	}
	d := int32(f.ts - w.base)
	if d < 0 {
		return nil // before the connection's first frame
	}
	ts := uint32(d)
	if w.sentAudio != nil && int32(ts-w.lastAudio) < 0 {
		ts = w.lastAudio
	}
	if f.ahdr != w.sentAudio {
		if f.ahdr != nil && f.ahdr.body != nil {
			if err := w.pub.WriteAudio(ts, f.ahdr.body); err != nil {
				return fmt.Errorf("audio sequence header: %w", err)
			}
		}
		w.sentAudio = f.ahdr
	}
	w.lastAudio = ts
	if err := w.pub.WriteAudio(ts, f.body); err != nil {
		return err
	}
	t.audioSent.Add(1)
	return nil
}

// writeData writes a client's metadata. Before video has started on this
// connection there is nothing to attach it to: onMetaData goes out with the
// first keyframe anyway, and a cue point before any picture means nothing.
func (t *Target) writeData(w *writer, f *frame) error {
	if !w.started {
		return nil
	}
	var err error
	if f.metaRefresh {
		err = t.writeMetadata(w.pub, w.ts(f.ts), w.sentParams)
	} else {
		err = w.pub.WriteData(w.ts(f.ts), f.body)
	}
	if err != nil {
		return err
	}
	return w.pub.Flush()
}

func (t *Target) writeMetadata(pub *rtmppush.Publisher, ts uint32, ps *paramSet) error {
	body, err := appendOnMetaData(nil, t.metadataValues(ps))
	if err != nil {
		return fmt.Errorf("onMetaData: %w", err)
	}
	if err := pub.WriteData(ts, body); err != nil {
		return fmt.Errorf("onMetaData: %w", err)
	}
	return nil
}

// stop ends the target and waits for its writer (or ctx).
func (t *Target) stop(ctx context.Context) {
	t.stopOnce.Do(func() {
		close(t.stopCh)
		t.cancel()
	})
	if !t.writing.Load() {
		return // never connected
	}
	select {
	case <-t.done:
	case <-ctx.Done():
	}
}

// Info returns the API view of the target.
func (t *Target) Info() TargetInfo {
	t.mu.Lock()
	defer t.mu.Unlock()
	ti := TargetInfo{ID: t.id, Output: t.ep.Redacted(), State: t.state, Reconnects: t.reconnects,
		VideoBitrate: t.spec.VideoBitrate, Framerate: t.spec.Framerate, AudioCodec: "aac"}
	switch {
	case t.spec.AudioCodec == "opus":
		ti.AudioCodec = "opus"
	case t.spec.IcecastAudio:
		ti.AudioCodec = "icecast"
	default:
		ti.AudioBitrate = t.spec.AudioBitrate
	}
	if t.err != nil {
		ti.Error = &ErrorInfo{Code: t.err.Code, Message: t.err.Message}
	}
	return ti
}

func roundTo(v float64, scale float64) float64 {
	return float64(int64(v*scale+0.5)) / scale
}
