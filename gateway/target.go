package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/castbridge/castbridge/transmux/flv"
	"github.com/castbridge/castbridge/transmux/rtmppush"
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
	// queueFrames bounds a target's backlog (~17 s at 30 fps).
	queueFrames = 512
	// dropQueueFrames is the backlog of a dropframes target (~0.5 s).
	dropQueueFrames = 16
	// encoderName goes into onMetaData.
	encoderName = "castbridge"
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
	accepting atomic.Bool // enqueue takes frames
	needKey   atomic.Bool // a frame was dropped: skip to the next keyframe
	gap       atomic.Bool // enqueue only: a frame was dropped and no keyframe queued since
	stopCh    chan struct{}
	stopOnce  sync.Once
	done      chan struct{}
	pub       atomic.Pointer[rtmppush.Publisher] // set by connect; written by the writer only

	framesSent    atomic.Uint64
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
	return &Target{
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
	cfg := rtmppush.Config{
		Endpoint:       t.ep,
		ConnectInfo:    t.spec.ConnectInfo,
		PublishTimeout: t.b.s.m.cfg.PublishTimeout,
		Logger:         t.log,
	}
	pub, err := rtmppush.Dial(ctx, cfg)
	if err != nil {
		t.setFailed(ingestError(t.ep, err))
		return
	}
	t.pub.Store(pub)
	t.log.Info("publishing")
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

func (t *Target) setFailed(e *Error) {
	t.accepting.Store(false)
	t.mu.Lock()
	t.state, t.err = TargetFailed, e
	t.mu.Unlock()
	t.log.Warn("target failed", "code", e.Code, "err", e.Message)
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
	f.retain()
	select {
	case t.queue <- f:
		if f.keyframe {
			t.gap.Store(false)
		}
	default:
		f.release()
		t.framesDropped.Add(1)
		t.gap.Store(true)
		if !t.needKey.Swap(true) || f.keyframe {
			t.b.s.RequestKeyframe("target queue full")
		}
	}
}

// writer is the state of the writer goroutine.
type writer struct {
	pub        *rtmppush.Publisher
	started    bool
	base       uint32
	sentParams *paramSet
}

func (t *Target) run() {
	defer close(t.done)
	w := writer{pub: t.publisher()}
	for {
		select {
		case f := <-t.queue:
			err := t.write(&w, f)
			f.release()
			if err != nil {
				t.setFailed(&Error{Code: CodeIngestUnreachable, Err: err, Message: fmt.Sprintf("ingest %s: write failed: %v", t.ep.Redacted(), err)})
				t.finish(false)
				return
			}
		case <-w.pub.Done():
			err := w.pub.Err()
			t.setFailed(&Error{Code: CodeIngestUnreachable, Err: err, Message: fmt.Sprintf("ingest %s closed the connection: %v", t.ep.Redacted(), err)})
			t.finish(false)
			return
		case <-t.stopCh:
			t.finish(true)
			return
		}
	}
}

// finish ends the writer: the ingest is told FCUnpublish/deleteStream and
// closed.
func (t *Target) finish(clean bool) {
	t.accepting.Store(false)
	// Frames still queued are dropped: after a stop nobody is watching, and
	// after a failure they cannot be written.
	for drained := false; !drained; {
		select {
		case f := <-t.queue:
			f.release()
		default:
			drained = true
		}
	}
	if err := t.publisher().Close(); err != nil {
		t.log.Debug("close", "err", err)
	}
	if clean {
		t.setState(TargetStopped)
	}
}

// write sends one frame. Video starts on a keyframe with onMetaData and the
// AVC sequence header before it; a new sequence header goes out whenever
// the SPS/PPS change. Timestamps start at 0 on each connection.
func (t *Target) write(w *writer, f *frame) error {
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
		if f.params != w.sentParams {
			if w.sentParams == nil || w.sentParams.width != f.params.width || w.sentParams.height != f.params.height {
				if err := t.writeMetadata(w.pub, f.ts-w.base, f.params); err != nil {
					return err
				}
			}
			if err := w.pub.WriteVideo(f.ts-w.base, f.params.seqHeader); err != nil {
				return fmt.Errorf("sequence header: %w", err)
			}
			w.sentParams = f.params
		}
	}
	if err := w.pub.WriteVideo(f.ts-w.base, f.body); err != nil {
		return err
	}
	t.framesSent.Add(1)
	t.latency.observe(time.Since(f.recvAt))
	if !w.started {
		w.started = true
		t.setState(TargetLive)
		t.log.Info("live")
	}
	return nil
}

func (t *Target) writeMetadata(pub *rtmppush.Publisher, ts uint32, ps *paramSet) error {
	fps := ps.spsFPS
	if v := t.b.s.video; fps == 0 && v != nil {
		fps = v.fps()
	}
	md := flv.Metadata{
		Width:         ps.width,
		Height:        ps.height,
		FrameRate:     roundTo(fps, 100),
		VideoCodecID:  7,
		VideoDataRate: float64(t.spec.VideoBitrate) / 1000,
		Encoder:       encoderName,
	}
	body, err := flv.AppendSetDataFrame(nil, md)
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
	t.stopOnce.Do(func() { close(t.stopCh) })
	if t.publisher() == nil {
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
	ti := TargetInfo{ID: t.id, Output: t.ep.Redacted(), State: t.state, Reconnects: t.reconnects}
	if t.err != nil {
		ti.Error = &ErrorInfo{Code: t.err.Code, Message: t.err.Message}
	}
	return ti
}

func roundTo(v float64, scale float64) float64 {
	return float64(int64(v*scale+0.5)) / scale
}
