// Package rtmpout is a broadcast's RTMP outputs: one Target per ingest,
// with its own bounded queue and writer goroutine (so a slow ingest never
// holds up the others; while the ingest keeps up, the enqueuer writes
// each frame itself, without waiting on the socket), reconnects with backoff, the onMetaData it writes,
// its latency and counters, and the target configuration the API takes
// (nanoStream's transcodingTargets). A target knows its stream only
// through the small Host interface.
package rtmpout

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/castbridge/castbridge/gateway/apierr"
	"github.com/castbridge/castbridge/gateway/events"
	"github.com/castbridge/castbridge/gateway/media"
	"github.com/castbridge/castbridge/gateway/meter"
	"github.com/castbridge/castbridge/gateway/outpolicy"
	"github.com/castbridge/castbridge/transmux/format/flv"
	"github.com/castbridge/castbridge/transmux/rtmp/rtmppush"
)

// State is a target's state as the API reports it.
type State string

// Target states. A target is live only while its connection is up and
// video flows on it: a dead push never shows live.
const (
	Connecting   State = "connecting" // dialing, or published and waiting for a keyframe
	Live         State = "live"
	Reconnecting State = "reconnecting"
	Failed       State = "failed"
	Stopped      State = "stopped"
)

// stallAfter is how long the writer may be stuck in one write before the
// target reports itself stalled (Info.Stalled, Stats.Stalled: API.md's
// "stalled": true beside a state that stays live or becomes
// reconnecting): the ingest stopped reading, and what is queued cannot
// drain. It reports the writer, not the connection: it ends when the
// write completes or fails (reconnecting). A write blocks only once the socket's send
// buffer is full, so this long in one write means the ingest is not
// reading.
const stallAfter = 500 * time.Millisecond

// Host is what a target needs of the stream it serves. Its methods are
// also called on the goroutine that hands the target a frame (an offer
// writes the frame itself), with whatever locks that deliverer holds: they
// must not take a lock held while frames are delivered.
type Host interface {
	// RequestKeyframe asks the publisher for a keyframe (rate-limited).
	RequestKeyframe(reason string)
	// Publish reports one of the target's events.
	events.Publisher
	// HasVideo: the stream has a video track (else the target starts on
	// its first audio frame).
	HasVideo() bool
	// ObservedFPS is the publisher's frame rate as received, for
	// onMetaData when the SPS carries none.
	ObservedFPS() float64
	// ObservedVideoBitrate is the publisher's video bit rate as received
	// (bit/s, 0 before it is known), onMetaData's videodatarate when the
	// target sets no videobitrate.
	ObservedVideoBitrate() float64
	// UserMetadata is the client's last onMetaData values, or nil.
	UserMetadata() map[string]any
}

// AudioSource is the audio output a target takes frames from; it says what
// the audio is in onMetaData (called as Host's methods are).
type AudioSource interface {
	AudioMetadata(md map[string]any)
}

// Settings are the gateway-wide settings a target runs with.
type Settings struct {
	// PublishTimeout bounds a connect + publish handshake.
	PublishTimeout time.Duration
	Reconnect      ReconnectPolicy
	// RootCAs verify rtmps:// ingests; nil means the system's roots
	// (SSL_CERT_FILE, SSL_CERT_DIR). See LoadRootCAs.
	RootCAs *x509.CertPool
	// Policy decides which addresses a target may dial (nil: the default
	// policy). The host is resolved and checked on every dial, and the
	// checked address is the one dialed.
	Policy *outpolicy.Policy
	// Observe takes the targets' timings for the metrics.
	Observe Observers
	Logger  *slog.Logger
}

const (
	// queueFrames bounds a target's backlog (~13 s of 30 fps video with
	// its ~47 AAC frames a second).
	queueFrames = 1024
	// dropQueueFrames is the backlog of a dropframes target (~0.5 s).
	dropQueueFrames = 40
	// maxQueueBytes bounds a target's backlog in bytes.
	maxQueueBytes = 8 << 20
	// audioFlushDelay is the longest an audio frame waits in the target's
	// send buffer. Audio is not written on its own (one write syscall per
	// 20 ms frame was about a third of the gateway's CPU in the 100-stream
	// profile, with the video's writes): it goes out with the next video
	// frame, which flushes at once, or after this delay (audio-only).
	audioFlushDelay = 40 * time.Millisecond
)

// Target is one RTMP ingest of a broadcast, with its own bounded queue and
// writer goroutine. Its owner (the broadcast) starts it with Connect and
// Start and joins it with Stop.
type Target struct {
	id    string
	spec  Spec
	ep    rtmppush.Endpoint
	host  Host
	cfg   Settings
	log   *slog.Logger
	audio AudioSource // the output whose frames it takes, nil for none

	queue     chan *media.Frame
	writing   atomic.Bool     // the writer goroutine was started
	accepting atomic.Bool     // enqueue takes frames
	needKey   atomic.Bool     // a frame was dropped: skip to the next keyframe
	gap       atomic.Bool     // enqueue only: a frame was dropped and no keyframe queued since
	ctx       context.Context // ends when the target is stopped
	cancel    context.CancelFunc
	done      chan struct{}
	pub       atomic.Pointer[rtmppush.Publisher] // set by Connect; written by the writer only

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
	lateAudio     atomic.Uint64 // audio frames older than what the connection had written
	latency       latencyHistogram
	rate          meter.Rate

	// The writer's interleaving (order.go): frames taken off the queue and
	// not yet written, per kind; held counts them for Idle.
	holdRings [2]frameRing
	held      atomic.Int32

	// wmu serializes the writer's work (on its goroutine, or an offer's);
	// inline is the connection's writer while offers may write on it;
	// queued counts frames sent to queue and not yet taken (a frame
	// must not overtake them); kick tells the writer goroutine that an
	// offer left work: bytes the socket kept back, or a failed write.
	wmu    sync.Mutex
	inline atomic.Pointer[writer]
	queued atomic.Int32
	kick   chan struct{}
	// inlineTakes counts frames an offer wrote itself.
	inlineTakes atomic.Uint64

	// busySince is when the writer began the work it is doing now (Unix
	// ns), 0 while it waits for work: a stuck write shows as a busySince
	// long ago. stalled is set (once) by whoever notices first (an
	// enqueue or a state read) and cleared by the writer when the work
	// completes; stallMu orders the two, so TargetRecovered always
	// follows its TargetStalled. The frame paths only read the atomics.
	busySince atomic.Int64
	stalled   atomic.Bool
	stallMu   sync.Mutex

	mu         sync.Mutex
	state      State
	err        *apierr.Error
	reconnects int
}

// New makes a target for a validated spec (see Spec.Validate for ep) that
// lives until Stop or until ctx ends. It does nothing until Connect.
func New(ctx context.Context, id string, spec Spec, ep rtmppush.Endpoint, audio AudioSource, host Host, cfg Settings) *Target {
	n := queueFrames
	if spec.DropFrames {
		n = dropQueueFrames
	}
	ctx, cancel := context.WithCancel(ctx)
	return &Target{
		ctx:    ctx,
		cancel: cancel,
		id:     id,
		spec:   spec,
		ep:     ep,
		host:   host,
		cfg:    cfg,
		audio:  audio,
		log:    cfg.Logger.With("target", id, "output", ep.Redacted()),
		queue:  make(chan *media.Frame, n),
		done:   make(chan struct{}),
		kick:   make(chan struct{}, 1),
		state:  Connecting,
	}
}

func (t *Target) publisher() *rtmppush.Publisher { return t.pub.Load() }

// ID is the target's API id.
func (t *Target) ID() string { return t.id }

// Spec is what the target was asked for.
func (t *Target) Spec() Spec { return t.spec }

// Audio is the audio output the target takes.
func (t *Target) Audio() AudioSource { return t.audio }

// Connect dials the ingest and publishes, within the publish timeout. On
// failure the target is failed with the ingest's error, which is returned.
func (t *Target) Connect() *apierr.Error {
	ctx, cancel := context.WithTimeout(t.ctx, t.cfg.PublishTimeout)
	defer cancel()
	dialed := time.Now()
	pub, err := rtmppush.Dial(ctx, t.dialConfig())
	if err != nil {
		t.log.Debug("dial failed", "err", err)
		e := ingestError(t.ep, err)
		t.fail(e)
		return e
	}
	observe(t.cfg.Observe.PublishTime, time.Since(dialed))
	t.pub.Store(pub)
	t.log.Info("publishing")
	return nil
}

// Abandon closes a connected target that will not be started (its
// broadcast stopped while it connected).
func (t *Target) Abandon() {
	t.cancel()
	if p := t.publisher(); p != nil {
		_ = p.Close()
	}
	t.setState(Stopped)
}

// fourCCList is the E-RTMP fourCcList a target announces in connect: the
// video codec it sends over Enhanced RTMP, nothing for H.264 (legacy FLV,
// which every ingest takes without being told).
func fourCCList(videoCodec string) []string {
	switch videoCodec {
	case VideoVP9:
		return []string{string(flv.FourCCVP9[:])}
	case VideoAV1:
		return []string{string(flv.FourCCAV1[:])}
	case VideoHEVC:
		return []string{string(flv.FourCCHEVC[:])}
	}
	return nil
}

// fourCCName is the codec of an E-RTMP video FourCC as the API names it.
func fourCCName(fourCC string) string {
	switch fourCC {
	case string(flv.FourCCVP9[:]):
		return media.CodecVP9.DisplayName()
	case string(flv.FourCCAV1[:]):
		return media.CodecAV1.DisplayName()
	case string(flv.FourCCHEVC[:]):
		return media.CodecHEVC.DisplayName()
	}
	return fourCC
}

func (t *Target) dialConfig() rtmppush.Config {
	return rtmppush.Config{
		Endpoint:       t.ep,
		ConnectInfo:    t.spec.ConnectInfo,
		FourCCList:     fourCCList(t.spec.VideoCodec),
		PublishTimeout: t.cfg.PublishTimeout,
		TLSConfig:      t.tlsConfig(),
		DialContext:    t.cfg.Policy.Dial,
		Logger:         t.log,
	}
}

// tlsConfig is what rtmps dials verify with: the configured roots, or
// the system's. Verification is never turned off.
func (t *Target) tlsConfig() *tls.Config {
	if t.cfg.RootCAs == nil {
		return nil
	}
	return &tls.Config{RootCAs: t.cfg.RootCAs}
}

// ingestError turns a publish failure into the API's error. Beyond an
// ingest's refusal, a policy's and a certificate's, the message says only
// that the ingest cannot be reached: refused, reset, timed out or not RTMP
// look the same to the client, so the API is no port scanner (the detail
// is logged at debug).
func ingestError(ep rtmppush.Endpoint, err error) *apierr.Error {
	var rej *rtmppush.RejectedError
	if errors.As(err, &rej) {
		return apierr.Wrap(apierr.CodeIngestRejected, err,
			"ingest %s refused the publish: %s %s", ep.Redacted(), rej.Code, rej.Description)
	}
	var refused *rtmppush.CodecRefusedError
	if errors.As(err, &refused) {
		return apierr.Wrap(apierr.CodeIngestRejected, err,
			"ingest %s does not take %s video (Enhanced RTMP FourCC %q): its connect reply lists only %q; give the target videocodec \"h264\" or one the ingest lists",
			ep.Redacted(), fourCCName(refused.FourCC), refused.FourCC, refused.Have)
	}
	if errors.Is(err, rtmppush.ErrCodecRefused) {
		return apierr.Wrap(apierr.CodeIngestRejected, err,
			"ingest %s does not take this stream's video codec over Enhanced RTMP (it said so in its connect reply): %v; give the target videocodec \"h264\"", ep.Redacted(), err)
	}
	var denied *outpolicy.DeniedError
	if errors.As(err, &denied) {
		return apierr.Wrap(policyCode(denied), err, "output %s", denied)
	}
	if hint := certificateHint(err); hint != "" {
		return apierr.Wrap(apierr.CodeIngestUnreachable, err, "ingest %s cannot be reached: its TLS certificate is not trusted: %s: %v", ep.Redacted(), hint, err)
	}
	if errors.Is(err, outpolicy.ErrLookup) {
		return apierr.Wrap(apierr.CodeIngestUnreachable, err, "ingest %s cannot be reached: its host name does not resolve", ep.Redacted())
	}
	return apierr.Wrap(apierr.CodeIngestUnreachable, err, "ingest %s cannot be reached", ep.Redacted())
}

// certificateHint says what to do about an ingest certificate the dial
// refused, "" when err is not one.
func certificateHint(err error) string {
	var unknown x509.UnknownAuthorityError
	var host x509.HostnameError
	var invalid x509.CertificateInvalidError
	switch {
	case errors.As(err, &unknown):
		return "it is signed by an authority this gateway does not know; add the CA with --rtmps-ca (or SSL_CERT_FILE)"
	case errors.As(err, &host):
		return "it is not for this host name; use the name the certificate was issued for in the output URL"
	case errors.As(err, &invalid):
		return "it is invalid (expired, not yet valid, or not for servers)"
	}
	return ""
}

// fail marks the target failed for good and says so.
func (t *Target) fail(e *apierr.Error) {
	t.accepting.Store(false)
	t.mu.Lock()
	t.state, t.err = Failed, e
	t.mu.Unlock()
	t.log.Warn("target failed", "code", e.Code, "err", e.Message)
	t.host.Publish(TargetFailed{TargetID: t.id, Output: t.ep.Redacted(), Code: e.Code, Message: e.Message})
}

func (t *Target) setState(st State) {
	t.mu.Lock()
	t.state = st
	t.mu.Unlock()
}

// State is the target's current state.
func (t *Target) State() State {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.state
}

// Stalled reports whether the target is connected but its writer has been
// stuck in one write for stallAfter or longer.
func (t *Target) Stalled() bool {
	t.checkStall(time.Now())
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.reportedStall()
}

// reportedStall: stalled only while connected (a failed write ends the
// stall with a reconnect). Called with t.mu held.
func (t *Target) reportedStall() bool {
	return (t.state == Live || t.state == Connecting) && t.stalled.Load()
}

// Err is why the target failed or is reconnecting, nil otherwise.
func (t *Target) Err() *apierr.Error {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.err
}

// Start runs the writer goroutine of a connected target.
func (t *Target) Start() {
	t.writing.Store(true)
	t.accepting.Store(true)
	go t.run()
}

// Writing reports whether the writer was started: the target takes frames.
func (t *Target) Writing() bool { return t.writing.Load() }

// Enqueue offers a video frame without blocking. A full queue drops the frame and
// makes the writer skip to the next keyframe, which is asked for. Frames
// after a drop are not queued until a keyframe is: they reference the
// dropped one, and a keyframe queued before the drop (which ends the
// writer's skip) must not let them through.
func (t *Target) Enqueue(f *media.Frame) {
	if !t.accepting.Load() {
		return
	}
	t.checkStall(f.RecvAt)
	if !f.Keyframe && t.gap.Load() {
		t.framesDropped.Add(1)
		return
	}
	size := int64(len(f.Body))
	if t.queuedBytes.Load()+size > maxQueueBytes {
		t.dropForGap(f)
		return
	}
	f.Retain()
	t.queuedBytes.Add(size)
	if t.offer(f) {
		t.enqueuedMs.Store(f.TS)
		if f.Keyframe {
			t.gap.Store(false)
		}
		t.dropIfClosed()
	} else {
		t.queuedBytes.Add(-size)
		f.Release()
		t.dropForGap(f)
	}
}

// dropForGap drops a frame the queue cannot take: what follows waits for a
// keyframe, which is asked for.
func (t *Target) dropForGap(f *media.Frame) {
	t.framesDropped.Add(1)
	t.gap.Store(true)
	if !t.needKey.Swap(true) || f.Keyframe {
		t.host.RequestKeyframe("target queue full")
	}
}

// EnqueueData queues a data frame and says whether the target took it. It
// is never dropped for a gap (it does not depend on other frames) but
// still bounded by the queue.
func (t *Target) EnqueueData(f *media.Frame) bool {
	if !t.accepting.Load() {
		return false
	}
	f.Retain()
	t.queuedBytes.Add(int64(len(f.Body)))
	if t.offer(f) {
		t.enqueuedMs.Store(f.TS)
		t.dropIfClosed()
	} else {
		t.queuedBytes.Add(-int64(len(f.Body)))
		f.Release()
	}
	return true
}

// EnqueueAudio queues an audio frame. Audio depends on no other frame and
// never waits for a keyframe; a full queue drops it.
func (t *Target) EnqueueAudio(f *media.Frame) {
	if !t.accepting.Load() {
		return
	}
	t.checkStall(f.RecvAt)
	f.Retain()
	// Counted like the others: the writer uncounts every frame it takes.
	t.queuedBytes.Add(int64(len(f.Body)))
	if t.offer(f) {
		t.enqueuedMs.Store(f.TS)
		t.dropIfClosed()
	} else {
		t.queuedBytes.Add(-int64(len(f.Body)))
		f.Release()
		t.framesDropped.Add(1)
	}
}

// dropIfClosed empties the queue when the target stopped taking frames: a
// frame whose enqueuer saw it accepting just before closeConnection
// drained the queue would stay there, held, with no writer to release it.
func (t *Target) dropIfClosed() {
	for !t.accepting.Load() {
		select {
		case f := <-t.queue:
			t.queuedBytes.Add(-int64(len(f.Body)))
			t.queued.Add(-1)
			f.Release()
		default:
			return
		}
	}
}

// checkStall marks the target stalled when the writer has been in one
// piece of work since stallAfter before now, and says so once. The frame
// paths pass their frame's receive time, so it costs them an atomic load
// and no clock read.
func (t *Target) checkStall(now time.Time) {
	since := t.busySince.Load()
	if since == 0 || now.UnixNano()-since < int64(stallAfter) || t.stalled.Load() {
		return
	}
	t.stallMu.Lock()
	defer t.stallMu.Unlock()
	if t.stalled.Load() || t.busySince.Load() != since {
		return
	}
	t.stalled.Store(true)
	stuck := time.Duration(now.UnixNano() - since)
	qms := t.queueMs()
	t.log.Warn("stalled: the ingest is not reading", "writeBlockedFor", stuck, "queueMs", qms)
	t.host.Publish(TargetStalled{TargetID: t.id, Output: t.ep.Redacted(),
		BlockedMs: stuck.Milliseconds(), QueueMs: qms})
	if t.busySince.Load() != since {
		// The write completed as the flag was set: the writer may have
		// looked before it was.
		t.recovered(since)
	}
}

// busy records that the writer began work at now (see busySince).
func (t *Target) busy(now time.Time) { t.busySince.Store(now.UnixNano()) }

// idle records that the writer's work completed: a stall it was in is
// over, and is reported as such.
func (t *Target) idle() {
	since := t.busySince.Swap(0)
	if t.stalled.Load() {
		t.stallMu.Lock()
		if t.stalled.Load() {
			t.recovered(since)
		}
		t.stallMu.Unlock()
	}
}

// recovered ends a stall whose write began at since (Unix ns) and says so.
// Called with stallMu held.
func (t *Target) recovered(since int64) {
	t.stalled.Store(false)
	stuck := time.Since(time.Unix(0, since))
	t.log.Info("recovered from stall", "stalledFor", stuck)
	t.host.Publish(TargetRecovered{TargetID: t.id, Output: t.ep.Redacted(), StalledMs: stuck.Milliseconds()})
}

// Idle reports whether nothing waits in the queue (or nothing can).
// Frames the writer holds for interleaving count as waiting.
func (t *Target) Idle() bool {
	return !t.accepting.Load() || (t.queued.Load() == 0 && t.held.Load() == 0)
}

// writer is the state of the writer goroutine for one connection.
type writer struct {
	pub        *rtmppush.Publisher
	started    bool   // a keyframe (audio-only: an audio frame) went out on this connection
	base       uint32 // stream time of that frame: connection time 0
	last       uint32 // last connection timestamp written, any kind
	sentParams *media.ParamSet
	sentAudio  *media.AudioHeader // the audio sequence header sent on this connection
	// preroll is the newest audio frame from before the first keyframe
	// (retained): the connection starts with it when it covers the
	// keyframe's time (see startTS).
	preroll *media.Frame

	flush     *time.Timer // the audio flush (audioFlushDelay)
	holdTimer *time.Timer // the earliest held frame's holdMax
	armed     bool        // flush is set
	holdDue   time.Time   // when holdTimer fires; zero: stopped
	err       error       // an offer's write failed
}

// prerollMaxMs is how far before the first keyframe an audio frame may
// start and still open the connection: a frame's length (AAC 21.3 ms,
// Opus 20 ms) and some.
const prerollMaxMs = 24

// release gives back what the writer holds when its connection ends.
func (w *writer) release() {
	if w.preroll != nil {
		w.preroll.Release()
		w.preroll = nil
	}
}

// ts maps stream time to this connection's time, never going back across
// all of the connection's tags (the writer interleaves them in order; a
// frame that comes later than holdMax is clamped).
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
		w := &writer{pub: t.publisher()}
		err := t.pump(w)
		if err == nil && t.ctx.Err() != nil {
			t.endSequence(w)
		}
		// A stall ends with its connection, unannounced: what follows
		// (stopped, reconnecting) says what became of it.
		t.stallMu.Lock()
		t.busySince.Store(0)
		t.stalled.Store(false)
		t.stallMu.Unlock()
		t.closeConnection()
		if err == nil || t.ctx.Err() != nil {
			// Stopped; a write that failed after the stop is the cut
			// connection of Stop's deadline, not an ingest to come back to.
			t.setState(Stopped)
			return
		}
		if !t.reconnect(err) {
			return
		}
	}
}

// pump writes queued frames on one connection. It returns nil when the
// target was stopped, or why the connection is no longer usable. Its work
// runs under wmu, which offer takes to write a frame itself.
func (t *Target) pump(w *writer) error {
	w.pub.SetBatching(true)
	w.flush = time.NewTimer(audioFlushDelay)
	w.flush.Stop()
	defer w.flush.Stop()
	w.holdTimer = time.NewTimer(holdMax)
	w.holdTimer.Stop()
	defer w.holdTimer.Stop()
	defer t.dropHeld()
	defer w.release()
	if w.pub.CanWriteNonBlocking() {
		t.inline.Store(w)
		defer func() {
			// Under wmu: an offer writing on w is done, and none starts
			// (an offer checks inline again once it holds wmu).
			t.wmu.Lock()
			t.inline.Store(nil)
			t.wmu.Unlock()
		}()
	}
	writeFailed := func(err error) error {
		return apierr.Wrap(apierr.CodeIngestUnreachable, err, "ingest %s: write failed: %v", t.ep.Redacted(), err)
	}
	for {
		var err error
		select {
		case f := <-t.queue:
			t.wmu.Lock()
			err = t.take(w, f)
			t.queued.Add(-1)
			t.wmu.Unlock()
		case <-t.kick:
			t.wmu.Lock()
			if err = w.err; err == nil {
				t.busy(time.Now())
				err = w.pub.Drain()
				t.idle()
			}
			t.wmu.Unlock()
		case <-w.holdTimer.C:
			t.wmu.Lock()
			err = t.releaseDue(w)
			t.wmu.Unlock()
		case <-w.flush.C:
			t.wmu.Lock()
			w.armed = false
			t.busy(time.Now())
			err = w.pub.Flush()
			t.idle()
			t.wmu.Unlock()
		case <-w.pub.Done():
			err := w.pub.Err()
			return apierr.Wrap(apierr.CodeIngestUnreachable, err, "ingest %s closed the connection: %v", t.ep.Redacted(), err)
		case <-t.ctx.Done():
			t.inline.Store(nil)
			t.wmu.Lock()
			// What is held goes out, in order, with the goodbye.
			if _, err := t.release(w, time.Now(), true); err == nil {
				_ = w.pub.Flush()
			}
			t.wmu.Unlock()
			return nil
		}
		if err != nil {
			return writeFailed(err)
		}
	}
}

// take is the writer's work for one frame off the queue: hold it, write
// what may go out, and set the timers for the rest. t.wmu held.
func (t *Target) take(w *writer, f *media.Frame) error {
	if w.err != nil {
		f.Release()
		return w.err
	}
	t.queuedBytes.Add(-int64(len(f.Body)))
	now := time.Now()
	if !f.RecvAt.IsZero() {
		observe(t.cfg.Observe.QueueTime, now.Sub(f.RecvAt))
	}
	t.busy(now)
	defer t.idle()
	if err := t.hold(w, f, now); err != nil {
		return err
	}
	due, err := t.release(w, now, false)
	if err != nil {
		return err
	}
	if !due.Equal(w.holdDue) {
		w.holdDue = due
		if due.IsZero() {
			w.holdTimer.Stop()
		} else {
			w.holdTimer.Reset(max(due.Sub(now), 0))
		}
	}
	w.armFlush()
	return nil
}

// releaseDue writes what waited its holdMax. t.wmu held.
func (t *Target) releaseDue(w *writer) error {
	now := time.Now()
	t.busy(now)
	defer t.idle()
	due, err := t.release(w, now, false)
	if err != nil {
		return err
	}
	if w.holdDue = due; !due.IsZero() {
		w.holdTimer.Reset(max(due.Sub(now), 0))
	}
	w.armFlush()
	return nil
}

// armFlush sets the audio flush timer while something is left in the send
// buffer: video and data flush as they are written, audio waits.
func (w *writer) armFlush() {
	if pending := w.pub.Buffered() > 0; pending != w.armed {
		if pending {
			w.flush.Reset(audioFlushDelay)
		} else {
			w.flush.Stop()
		}
		w.armed = pending
	}
}

// offer hands f, counted in queuedBytes, to the writer and says whether
// it was taken. When nothing waits before it (queued, or kept back by
// the socket) and nobody is writing, it is written at once on the
// caller's goroutine, without waiting on the ingest (non-blocking
// writes): a goroutine wake-up a frame less than queueing it. Else it is
// queued for the writer goroutine.
func (t *Target) offer(f *media.Frame) bool {
	if w := t.inline.Load(); w != nil && t.queued.Load() == 0 && t.wmu.TryLock() {
		if t.queued.Load() == 0 && t.inline.Load() == w && w.err == nil && w.pub.Spilled() == 0 {
			w.pub.SetNonBlocking(true)
			err := t.take(w, f)
			w.pub.SetNonBlocking(false)
			t.inlineTakes.Add(1)
			if err != nil || w.pub.Spilled() > 0 {
				// The writer goroutine takes over: it ends the
				// connection, or writes what the socket kept back.
				w.err = err
				select {
				case t.kick <- struct{}{}:
				default:
				}
			}
			t.wmu.Unlock()
			return true
		}
		t.wmu.Unlock()
	}
	t.queued.Add(1)
	select {
	case t.queue <- f:
		return true
	default:
		t.queued.Add(-1)
		return false
	}
}

// endSequence tells an ingest of an E-RTMP video codec that its sequence
// ends (VideoPacketType SequenceEnd) before a clean unpublish; legacy AVC
// ends without one, as FFmpeg's muxer does.
func (t *Target) endSequence(w *writer) {
	ps := w.sentParams
	if ps == nil || ps.FourCC == ([4]byte{}) || w.pub == nil {
		return
	}
	if err := w.pub.WriteVideo(w.last, flv.AppendExVideoSequenceEnd(nil, ps.FourCC)); err == nil {
		_ = w.pub.Flush()
	}
}

// closeConnection stops taking frames, drops what is queued (after a stop
// nobody is watching; after a failure it cannot be written), and tells the
// ingest FCUnpublish/deleteStream before closing.
func (t *Target) closeConnection() {
	t.accepting.Store(false)
	t.dropIfClosed()
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
	policy := t.cfg.Reconnect
	started := time.Now()
	for attempt := 1; ; attempt++ {
		if time.Since(started) > policy.Window {
			t.fail(apierr.Wrap(apierr.CodeIngestUnreachable, cause,
				"ingest %s: gave up after %v of reconnecting: %v", t.ep.Redacted(), policy.Window, apierr.As(cause).Message))
			return false
		}
		delay := policy.delay(attempt)
		ce := apierr.As(cause)
		t.mu.Lock()
		t.state = Reconnecting
		t.err = ce
		t.mu.Unlock()
		t.log.Warn("reconnecting", "attempt", attempt, "in", delay, "err", ce.Message)
		t.host.Publish(TargetReconnecting{TargetID: t.id, Output: t.ep.Redacted(), Attempt: attempt,
			DelayMs: delay.Milliseconds(), Code: ce.Code, Message: ce.Message})
		timer := time.NewTimer(delay)
		select {
		case <-timer.C:
		case <-t.ctx.Done():
			timer.Stop()
			t.setState(Stopped)
			return false
		}
		ctx, cancel := context.WithTimeout(t.ctx, t.cfg.PublishTimeout)
		dialed := time.Now()
		pub, err := rtmppush.Dial(ctx, t.dialConfig())
		cancel()
		if err != nil {
			t.log.Debug("redial failed", "attempt", attempt, "err", err)
			ierr := ingestError(t.ep, err)
			if ierr.Code == apierr.CodeIngestRejected || ierr.Code == apierr.CodeOutputNotAllowed || ierr.Code == apierr.CodeForbidden {
				t.fail(ierr) // a bad key stays bad: no retrying forever
				return false
			}
			cause = ierr
			continue
		}
		observe(t.cfg.Observe.PublishTime, time.Since(dialed))
		t.pub.Store(pub)
		t.mu.Lock()
		t.reconnects++
		t.state = Connecting
		t.mu.Unlock()
		t.needKey.Store(true)
		t.gap.Store(true)
		t.accepting.Store(true)
		t.host.RequestKeyframe("target reconnected")
		t.log.Info("reconnected", "attempt", attempt)
		return true
	}
}

// write sends one frame. Video starts on a keyframe with onMetaData and the
// AVC sequence header before it; a new sequence header goes out whenever
// the SPS/PPS change. Timestamps start at 0 on each connection.
func (t *Target) write(w *writer, f *media.Frame) error {
	switch f.TagType {
	case flv.TagScript:
		return t.writeData(w, f)
	case flv.TagAudio:
		return t.writeAudio(w, f)
	}
	if !f.Keyframe && (!w.started || t.needKey.Load()) {
		if w.started {
			t.framesDropped.Add(1)
		}
		return nil
	}
	if f.Keyframe {
		t.needKey.Store(false)
		ts := uint32(0)
		var pre *media.Frame
		if !w.started {
			pre = w.startTS(f)
		} else {
			ts = w.ts(f.TS)
		}
		if f.Params != w.sentParams {
			if w.sentParams == nil || w.sentParams.Width != f.Params.Width || w.sentParams.Height != f.Params.Height {
				if err := t.writeMetadata(w.pub, ts, f.Params); err != nil {
					return err
				}
			}
			if err := w.pub.WriteVideo(ts, f.Params.SeqHeader); err != nil {
				return fmt.Errorf("sequence header: %w", err)
			}
			w.sentParams = f.Params
		}
		if pre != nil {
			if err := t.writeAudioAt(w, 0, pre); err != nil {
				return err
			}
		}
		if !w.started {
			w.release() // used, or too old to be
		}
	}
	if err := w.pub.WriteVideo(w.ts(f.TS), f.Body); err != nil {
		return err
	}
	// With the audio written since the last video frame, in one write.
	if err := w.pub.Flush(); err != nil {
		return err
	}
	t.framesSent.Add(1)
	lat := time.Since(f.RecvAt)
	t.latency.observe(lat)
	observe(t.cfg.Observe.FrameLatency, lat)
	if !w.started {
		t.goneLive(w)
	}
	return nil
}

// startTS opens the connection's timeline on its first keyframe: time 0
// is the keyframe, or the audio frame that covers the keyframe's time,
// which is returned to go first. Audio must not start later than the
// video: ingests take the first sample of any track as the start of a
// recording (MediaMTX's recorder then discards the keyframe as "too late"
// when the audio's second frame comes before the video's), and FFmpeg's
// muxer starts audio at or before video too.
func (w *writer) startTS(key *media.Frame) *media.Frame {
	w.base, w.last = key.TS, 0
	pre := w.preroll
	if pre == nil || tsBefore(key.TS, pre.TS) || key.TS-pre.TS > prerollMaxMs {
		return nil
	}
	w.base = pre.TS
	return pre
}

// writeAudioAt writes an audio frame at connection time ts, after its
// sequence header when this connection has not had it.
func (t *Target) writeAudioAt(w *writer, ts uint32, f *media.Frame) error {
	if f.AudioHeader != w.sentAudio {
		if f.AudioHeader != nil && f.AudioHeader.Body != nil {
			if err := w.pub.WriteAudio(ts, f.AudioHeader.Body); err != nil {
				return fmt.Errorf("audio sequence header: %w", err)
			}
		}
		w.sentAudio = f.AudioHeader
	}
	if err := w.pub.WriteAudio(ts, f.Body); err != nil {
		return err
	}
	t.audioSent.Add(1)
	return nil
}

func (t *Target) goneLive(w *writer) {
	w.started = true
	t.setState(Live)
	t.log.Info("live")
	t.mu.Lock()
	reconnects := t.reconnects
	t.err = nil
	t.mu.Unlock()
	t.host.Publish(TargetConnected{TargetID: t.id, Output: t.ep.Redacted(), Reconnects: reconnects})
}

// writeAudio writes an audio frame, after its sequence header when this
// connection has not had it. On a stream with video nothing goes out before
// the first keyframe (the FLV starts with onMetaData, the sequence headers
// and an IDR), and audio from before it is dropped; an audio-only stream
// starts on its first audio frame.
func (t *Target) writeAudio(w *writer, f *media.Frame) error {
	if !w.started {
		if t.host.HasVideo() {
			// Kept: it may open the connection with the keyframe.
			if w.preroll != nil {
				w.preroll.Release()
			}
			f.Retain()
			w.preroll = f
			return nil
		}
		w.base = f.TS
		if err := t.writeMetadata(w.pub, 0, nil); err != nil {
			return err
		}
		t.goneLive(w)
	}
	d := int32(f.TS - w.base)
	if d < 0 {
		return nil // before the connection's first frame
	}
	if ts := uint32(d); tsBefore(ts, w.last) {
		// Later than holdMax behind the video (the audio stalled, or the
		// encoder's last frames at the end of a broadcast): written at the
		// connection's time they would be a burst of equal timestamps,
		// which decoders reject. Dropped.
		t.lateAudio.Add(1)
		return nil
	}
	return t.writeAudioAt(w, w.ts(f.TS), f)
}

// writeData writes a client's metadata. Before video has started on this
// connection there is nothing to attach it to: onMetaData goes out with the
// first keyframe anyway, and a cue point before any picture means nothing.
func (t *Target) writeData(w *writer, f *media.Frame) error {
	if !w.started {
		return nil
	}
	var err error
	if f.MetaRefresh {
		err = t.writeMetadata(w.pub, w.ts(f.TS), w.sentParams)
	} else {
		err = w.pub.WriteData(w.ts(f.TS), f.Body)
	}
	if err != nil {
		return err
	}
	return w.pub.Flush()
}

func (t *Target) writeMetadata(pub *rtmppush.Publisher, ts uint32, ps *media.ParamSet) error {
	body, err := appendOnMetaData(nil, t.metadataValues(ps))
	if err != nil {
		return fmt.Errorf("onMetaData: %w", err)
	}
	if err := pub.WriteData(ts, body); err != nil {
		return fmt.Errorf("onMetaData: %w", err)
	}
	return nil
}

// Stop ends the target and waits for its writer. The writer says
// FCUnpublish/deleteStream to the ingest unless ctx ends first; then the
// connection is cut. Either way the writer has ended when Stop returns.
func (t *Target) Stop(ctx context.Context) {
	t.cancel()
	if !t.writing.Load() {
		if p := t.publisher(); p != nil {
			_ = p.Close() // connected, never started
		}
		return
	}
	select {
	case <-t.done:
	case <-ctx.Done():
		if p := t.publisher(); p != nil {
			p.Abort()
		}
		<-t.done
	}
}

// Info returns the API view of the target.
func (t *Target) Info() Info {
	t.checkStall(time.Now())
	t.mu.Lock()
	defer t.mu.Unlock()
	ti := Info{ID: t.id, Output: t.ep.Redacted(), State: t.state, Stalled: t.reportedStall(), Reconnects: t.reconnects,
		VideoBitrate: t.spec.VideoBitrate, Framerate: t.spec.Framerate, AudioCodec: "aac", VideoCodec: t.spec.VideoCodec}
	switch {
	case t.spec.AudioCodec == "opus":
		ti.AudioCodec = "opus"
	case t.spec.IcecastAudio:
		ti.AudioCodec = "icecast"
	default:
		ti.AudioBitrate = t.spec.AudioBitrate
	}
	if t.err != nil {
		ei := t.err.Info()
		ti.Error = &ei
	}
	return ti
}
