package rtmpout

import (
	"time"

	"github.com/castbridge/castbridge/gateway/media"
	"github.com/castbridge/castbridge/transmux/format/flv"
)

// Interleaving. Audio and video reach a target's queue from different
// goroutines, and not in timestamp order: an AAC frame is queued about two
// frames (43 ms, the encoder's delay) plus an Opus packet after the video of
// the same time, silence later still. Ingests want a connection's tags in
// non-decreasing timestamp order across tracks, as FFmpeg's FLV muxer writes
// them (MediaMTX discards a sample "received too late", SRS asks for
// mix_correct). So the writer holds each kind in a small ring and writes the
// older head first; a head is written alone once the other kind has been
// seen at or past its time (nothing older can follow, each kind arrives in
// its own order), when the other kind does not exist on this stream, when it
// has waited holdMax (the other kind stalled: its late frames are then
// dropped, audio, or clamped to the connection's last timestamp, video and
// data, which later frames depend on), or when its ring is full.

const (
	// holdMax is the longest a frame waits for the other kind. Normally
	// video waits 43-63 ms for the AAC of its time (the encoder's delay
	// and the Opus packet); holdMax only bounds a stall, and must be well
	// above what a loaded machine delays the audio by: audio later than
	// the video written is lost (see writeAudio). 1 s was not: a full
	// end-to-end run under -race beside other work lost 20 AAC frames of
	// 2900, shifting the audio 449 ms. A publisher that sends no audio
	// costs nothing here (the pipeline fills silence after 500 ms).
	holdMax = 2 * time.Second
	// holdFrames bounds each ring: more than holdMax of 60 fps video or of
	// 20 ms Opus packets.
	holdFrames = 160
)

// Ring indexes of Target.hold.
const (
	kindAudio = 0
	kindVideo = 1 // video and data tags, in their queue order
)

type heldFrame struct {
	f  *media.Frame
	at time.Time // when the writer took it off the queue
}

// frameRing is a fixed-size FIFO of held frames.
type frameRing struct {
	buf  [holdFrames]heldFrame
	head int
	n    int
	// seen: a frame of this kind was taken off the queue on this
	// connection, the newest at stream time seenTS; the next one can come
	// no earlier than seenTS+seenLen (the frame's length, when known).
	seen    bool
	seenTS  uint32
	seenLen uint32
}

// aacMinFrameMs is the shortest AAC frame the gateway sends: 1024 samples
// at 48 kHz (its encoder's rate; an Icecast source's are longer).
const aacMinFrameMs = 21

// frameLenMs is how long a frame surely lasts: what its producer said
// (Opus packets), AAC frames 1024 samples; others (video) count 0.
func frameLenMs(f *media.Frame) uint32 {
	if f.DurationMs > 0 {
		return f.DurationMs
	}
	if f.TagType == flv.TagAudio && len(f.Body) > 0 && f.Body[0]>>4 == flv.AudioCodecAAC {
		return aacMinFrameMs
	}
	return 0
}

func (r *frameRing) full() bool { return r.n == len(r.buf) }

func (r *frameRing) push(f *media.Frame, at time.Time) {
	r.buf[(r.head+r.n)%len(r.buf)] = heldFrame{f: f, at: at}
	r.n++
	if !r.seen || tsBefore(r.seenTS, f.TS) {
		r.seenTS, r.seenLen = f.TS, frameLenMs(f)
	}
	r.seen = true
}

func (r *frameRing) peek() *heldFrame { return &r.buf[r.head] }

func (r *frameRing) pop() *media.Frame {
	h := &r.buf[r.head]
	f := h.f
	*h = heldFrame{}
	r.head = (r.head + 1) % len(r.buf)
	r.n--
	return f
}

// tsBefore reports a < b on the wrapping 32-bit stream clock.
func tsBefore(a, b uint32) bool { return int32(a-b) < 0 }

func frameKind(f *media.Frame) int {
	if f.TagType == flv.TagAudio {
		return kindAudio
	}
	return kindVideo
}

// hold takes a frame off the queue into its ring; a full ring first writes
// its head (the other ring is empty then: release never leaves both
// holding).
func (t *Target) hold(w *writer, f *media.Frame, now time.Time) error {
	r := &t.holdRings[frameKind(f)]
	if r.full() {
		if err := t.writeHeld(w, r); err != nil {
			f.Release()
			return err
		}
	}
	r.push(f, now)
	t.held.Add(1)
	return nil
}

// release writes every held frame that may go out now, in timestamp order;
// force writes them all (the target is stopping). It returns when the
// earliest remaining frame's hold runs out, zero when nothing is held.
func (t *Target) release(w *writer, now time.Time, force bool) (time.Time, error) {
	a, v := &t.holdRings[kindAudio], &t.holdRings[kindVideo]
	for {
		var r *frameRing
		switch {
		case a.n > 0 && v.n > 0:
			// Ties go to video: a connection opens on its keyframe.
			r = v
			if tsBefore(a.peek().f.TS, v.peek().f.TS) {
				r = a
			}
		case a.n > 0:
			if force || t.mayWriteAlone(a, v, !t.host.HasVideo(), now) {
				r = a
			}
		case v.n > 0:
			if force || t.mayWriteAlone(v, a, t.audio == nil, now) {
				r = v
			}
		}
		if r == nil {
			break
		}
		if err := t.writeHeld(w, r); err != nil {
			return time.Time{}, err
		}
	}
	switch {
	case a.n > 0:
		return a.peek().at.Add(holdMax), nil
	case v.n > 0:
		return v.peek().at.Add(holdMax), nil
	}
	return time.Time{}, nil
}

// mayWriteAlone says whether r's head may be written while the other ring
// is empty.
func (t *Target) mayWriteAlone(r, other *frameRing, otherAbsent bool, now time.Time) bool {
	h := r.peek()
	switch {
	case otherAbsent:
		return true
	case other.seen && !tsBefore(other.seenTS+other.seenLen, h.f.TS):
		// The other kind's next frame is at or past it: nothing older can
		// come. (With AAC that spares the video a frame's wait.)
		return true
	}
	return !now.Before(h.at.Add(holdMax))
}

// writeHeld writes r's head and releases it.
func (t *Target) writeHeld(w *writer, r *frameRing) error {
	f := r.pop()
	t.held.Add(-1)
	t.dequeuedMs.Store(f.TS)
	err := t.write(w, f)
	f.Release()
	return err
}

// dropHeld releases every held frame and forgets what was seen: the
// connection is gone.
func (t *Target) dropHeld() {
	for i := range t.holdRings {
		r := &t.holdRings[i]
		for r.n > 0 {
			r.pop().Release()
			t.held.Add(-1)
		}
		r.seen = false
	}
}
