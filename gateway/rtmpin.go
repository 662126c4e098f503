package gateway

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"math"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/castbridge/castbridge/gateway/apierr"
	"github.com/castbridge/castbridge/gateway/media"
	"github.com/castbridge/castbridge/gateway/meter"
	"github.com/castbridge/castbridge/gateway/rtmpout"
	"github.com/castbridge/castbridge/transmux/codec/aaclc"
	"github.com/castbridge/castbridge/transmux/format/flv"
	"github.com/castbridge/castbridge/transmux/rtmp/ingest"
)

// RTMP in: a publish to the built-in ingest whose stream name is a relay's
// key (rtmp://host/live/<relay key>, as OBS's "Stream Key") becomes a
// stream like a WHIP publisher's. Its frames are passed through as they
// came (the publisher's own sequence headers, composition times, AAC),
// their timestamps moved onto the stream's timeline, which goes on across
// a publisher that drops and comes back within Config.RTMPResume.

// DefaultRTMPResume is how long an RTMP stream waits for its publisher to
// come back after a disconnect (--rtmp-resume).
const DefaultRTMPResume = 5 * time.Second

const (
	// gopWarnMs: a publisher keyframe interval over this gets a
	// PublisherKeyframeInterval warning. castbridge cannot ask an RTMP
	// publisher for a keyframe, so a target that (re)connects waits up to
	// a GOP; platforms want 2 s and refuse over 4 s.
	gopWarnMs = 4000
	// The GOP cache (the frames since the last keyframe, which a
	// broadcast starting mid-GOP begins with) is bounded; a GOP past
	// either bound is not cached.
	gopCacheFrames = 1024
	gopCacheBytes  = 16 << 20
	// The publisher's onMetaData is bounded before it is merged into
	// every target's.
	maxPublisherMetaKeys = 64
	maxPublisherMetaLen  = 256
	// audioOnlyAfterMs: audio this long with no video (and no onMetaData
	// saying video) makes the stream an audio-only one.
	audioOnlyAfterMs = 2000
)

// Errors a Sink returns to the ingest, which then ends the connection.
var (
	errRTMPStreamClosed = errors.New("the stream of this publish has closed")
	errRTMPReplaced     = errors.New("this publish was replaced")
)

// PublisherKeyframeInterval warns that an RTMP publisher's keyframes come
// further apart than 4 s: targets that connect or reconnect wait that long
// for a picture, and platforms (YouTube, Twitch) refuse or warn about it.
// Sent once, again after the interval came back under it.
type PublisherKeyframeInterval struct {
	StreamID   string `json:"streamId"`
	IntervalMs int64  `json:"intervalMs"`
	LimitMs    int64  `json:"limitMs"`
}

// EventName implements events.Payload.
func (PublisherKeyframeInterval) EventName() string { return "PublisherKeyframeInterval" }

// RouteRTMP is the built-in ingest's Config.Route. A publish whose name
// (without its query) is a relay's key becomes a stream broadcasting to the
// relay's targets, or continues the stream of that key whose publisher
// dropped less than RTMPResume ago; the same key published twice at once is
// refused (NetStream.Publish.BadName). Any other name is refused with
// NetStream.Publish.BadName too, unless Config.RTMPRecordOthers leaves it to
// the ingest's own rules (--local-ingest-key, recording). Publishers count
// toward MaxStreams. No key is ever logged.
func (m *Manager) RouteRTMP(info ingest.PublishInfo) (ingest.Sink, error) {
	key := info.Name
	if q := strings.IndexByte(key, '?'); q >= 0 {
		key = key[:q]
	}
	i := m.relayIndex(key)
	if i < 0 {
		if m.cfg.RTMPRecordOthers {
			return nil, nil
		}
		return nil, &ingest.Reject{Code: "NetStream.Publish.BadName", Description: "no relay has this stream key"}
	}
	added := false
	defer func() { // after the unlock below: the cluster registers the stream
		if added {
			m.changed()
		}
	}()
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.draining {
		return nil, &ingest.Reject{Code: "NetStream.Publish.Failed", Description: "the gateway is shutting down"}
	}
	if s := m.rtmpIn[i]; s != nil {
		pub, err := s.rtmp.resumeWith()
		if err != nil {
			return nil, err
		}
		if pub != nil {
			s.log.Info("rtmp publisher came back: the broadcast goes on")
			return pub, nil
		}
		// Its resume window passed: it is closing, and this publish is
		// a new stream.
	}
	if m.cfg.MaxStreams > 0 && len(m.streams)+m.starting >= m.cfg.MaxStreams {
		m.refused(apierr.LimitStreams)
		return nil, &ingest.Reject{Code: "NetStream.Publish.Failed",
			Description: fmt.Sprintf("the gateway already runs %d streams, its limit", m.cfg.MaxStreams)}
	}
	relay := m.cfg.Relays[i]
	name := relay.Name
	if name == "" {
		name = "rtmp"
	}
	s := newRTMPStream(m, newID("st_"), name, i)
	pub := s.rtmp.firstPublish()
	m.streams[s.id] = s
	m.rtmpIn[i] = s
	m.totals.streams.Add(1)
	added = true
	acc, _ := m.accessFor(nil) // the unrestricted caller's access never fails
	s.startWhenReady(relay.Targets, acc)
	s.log.Info("rtmp publish: stream created", "relay", relay.Name, "targets", len(relay.Targets))
	return pub, nil
}

// newRTMPStream makes the stream of an RTMP publish to relay (its index).
func newRTMPStream(m *Manager, id, name string, relay int) *Stream {
	s := newStreamBase(m, id, name, m.log.With("stream", id, "source", "rtmp"))
	s.videoCodec = media.CodecH264
	s.rtmp = &rtmpSource{s: s, relay: relay, resume: m.cfg.RTMPResume, frames: m.frames, out: &rtmpAudio{}}
	s.src = s.rtmp
	return s
}

// rtmpSource is an RTMP publish as a stream's media source. The ingest's
// connection goroutine calls message; the broadcast attaches and detaches;
// the targets' writers read the atomics and the metadata.
type rtmpSource struct {
	s      *Stream
	relay  int           // the relay's index in Config.Relays
	resume time.Duration // <= 0: a publisher's disconnect ends the stream
	frames *media.FramePool
	out    *rtmpAudio // the one audio output every target takes

	params      atomic.Pointer[media.ParamSet]
	audioOnly   atomic.Bool // no video: targets start on audio
	muted       atomic.Bool
	lastMs      atomic.Uint32
	fpsBits     atomic.Uint64
	gopMs       atomic.Int64
	videoBytes  atomic.Uint64
	audioBytes  atomic.Uint64
	videoFrames atomic.Uint64
	keyframes   atomic.Uint64
	dropped     atomic.Uint64 // video tags dropped: undecodable, before a sequence header or keyframe
	rate        meter.Rate    // VideoBitrate's, for onMetaData
	// meta is the publisher's onMetaData values. Targets read it as they
	// write, on the goroutine that delivers to them with mu held: it
	// cannot be under mu.
	meta atomic.Pointer[map[string]any]

	mu       sync.Mutex
	pub      *rtmpPublish // the publish feeding the stream; nil while waiting for one
	closed   bool
	expired  bool        // the resume window passed: the stream is closing
	timer    *time.Timer // the resume window
	sink     *Broadcast
	audioHdr *media.AudioHeader
	silent   []byte         // one silent frame of the header's AAC-LC format; nil: none can be made
	gop      []*media.Frame // since the last keyframe, retained
	gopBytes int
	caching  bool
	waitKey  bool // after a resume: video waits for a keyframe
	// The timeline: stream time = publisher time + delta, delta set by
	// each publish's first message so that the stream's time goes on
	// from lastOut across a resume by the time the publisher was away.
	delta      uint32
	lastOut    uint32
	haveOut    bool
	lastAt     time.Time
	haveVideo  bool
	firstAudio uint32
	haveAudio  bool
	lastKey    uint32
	haveKey    bool
	gopWarned  bool
	lastVideo  uint32
	avgDelta   float64 // EWMA of the video's DTS spacing, ms
}

// rtmpPublish is one publish feeding an rtmpSource: the ingest's Sink.
type rtmpPublish struct {
	r       *rtmpSource
	started bool // its first message set the source's delta
}

// Message implements ingest.Sink.
func (p *rtmpPublish) Message(m ingest.Message) error { return p.r.message(p, m) }

// End implements ingest.Sink.
func (p *rtmpPublish) End(reason string) { p.r.end(p, reason) }

func (r *rtmpSource) firstPublish() *rtmpPublish {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.pub = &rtmpPublish{r: r}
	return r.pub
}

// resumeWith takes a new publish of the stream's key: a publish to go on
// with, nil when the stream is past its resume window (closing), or a
// refusal while a publisher is still on.
func (r *rtmpSource) resumeWith() (*rtmpPublish, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed || r.expired {
		return nil, nil
	}
	if r.pub != nil {
		return nil, &ingest.Reject{Code: "NetStream.Publish.BadName", Description: "this stream key is already being published"}
	}
	if r.timer != nil {
		r.timer.Stop() // expire, if it fired, finds a publish and gives up
	}
	r.pub = &rtmpPublish{r: r}
	r.waitKey = true
	return r.pub, nil
}

// end is a publish's end. A disconnect leaves the stream (and its
// broadcast, its targets' connections) waiting for the publisher to come
// back; an unpublish (FCUnpublish, deleteStream: the publisher stopped on
// purpose) or no resume window ends the stream at once.
func (r *rtmpSource) end(p *rtmpPublish, reason string) {
	r.mu.Lock()
	if r.pub != p || r.closed {
		r.mu.Unlock()
		return
	}
	r.pub = nil
	r.waitKey = true
	r.dropCache()
	r.caching = false
	if r.resume <= 0 || reason != "disconnect" {
		r.expired = true
		r.mu.Unlock()
		r.s.setCloseCause("rtmp publisher: " + reason)
		r.s.owner.closeAsync(r.s)
		return
	}
	r.timer = time.AfterFunc(r.resume, r.expire)
	r.mu.Unlock()
	r.s.log.Info("rtmp publisher disconnected: waiting for it to come back", "resume", r.resume)
}

func (r *rtmpSource) expire() {
	r.mu.Lock()
	if r.pub != nil || r.closed || r.expired {
		r.mu.Unlock()
		return
	}
	r.expired = true
	r.mu.Unlock()
	r.s.setCloseCause(fmt.Sprintf("rtmp publisher did not come back within %v", r.resume))
	r.s.owner.closeAsync(r.s)
}

// close is the stream's: nothing is delivered any more, and the next
// message of a publish still on ends its connection.
func (r *rtmpSource) close() {
	r.mu.Lock()
	r.closed = true
	r.sink = nil
	if r.timer != nil {
		r.timer.Stop()
	}
	r.dropCache()
	r.mu.Unlock()
}

func (r *rtmpSource) publishing() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.pub != nil && r.s.mediaSeen.Load()
}

func (r *rtmpSource) setMuted(on bool) { r.muted.Store(on) }

// message takes one audio, video or data message of publish p, on the
// ingest connection's goroutine; m.Body is copied into a pooled frame.
func (r *rtmpSource) message(p *rtmpPublish, m ingest.Message) error {
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed || r.expired {
		return errRTMPStreamClosed
	}
	if r.pub != p {
		return errRTMPReplaced
	}
	ts := r.rebase(p, m.Timestamp, now)
	switch m.Type {
	case flv.TagVideo:
		r.onVideo(ts, m.Body, now)
	case flv.TagAudio:
		r.onAudio(ts, m.Body, now)
	case flv.TagScript:
		r.onData(ts, m)
	}
	return nil
}

// rebase moves a publisher timestamp onto the stream's timeline.
func (r *rtmpSource) rebase(p *rtmpPublish, in uint32, now time.Time) uint32 {
	if !p.started {
		p.started = true
		base := uint32(0)
		if r.haveOut {
			// Resumed: on from where the last publish stopped, by the
			// time it was away (at least a millisecond).
			gap := min(max(now.Sub(r.lastAt).Milliseconds(), 1), int64(r.resume/time.Millisecond)+1000)
			base = r.lastOut + uint32(gap)
		}
		r.delta = base - in
		r.haveKey = false // a GOP across the gap is no GOP
		r.haveAudio = false
	}
	out := in + r.delta
	if !r.haveOut || int32(out-r.lastOut) > 0 {
		r.lastOut = out
	}
	r.haveOut, r.lastAt = true, now
	return out
}

func (r *rtmpSource) onVideo(ts uint32, body []byte, now time.Time) {
	tag, err := flv.ParseVideoTag(body)
	if err != nil {
		r.dropped.Add(1)
		return
	}
	switch {
	case tag.FrameType == 5:
		return // video info / command frame: nothing to show
	case tag.SequenceStart():
		if cur := r.params.Load(); cur == nil || !bytes.Equal(cur.SeqHeader, body) {
			ps, err := media.ParamSetFromSequenceHeader(body, tag)
			if err != nil {
				r.s.log.Warn("rtmp publisher's video sequence header is not usable", "err", err)
				return
			}
			// A new pointer: the targets write it before the next keyframe.
			r.params.Store(ps)
		}
		return
	case tag.Enhanced && tag.PacketType == flv.VideoPacketTypeSequenceEnd,
		!tag.Enhanced && tag.CodecID == 7 && tag.PacketType == 2:
		return // end of sequence: the next publish starts its own
	case !tag.Enhanced && tag.CodecID != 7:
		r.dropped.Add(1)
		return // a legacy codec other than H.264: no target takes it
	}
	ps := r.params.Load()
	if ps == nil {
		r.dropped.Add(1)
		return
	}
	key := tag.Keyframe()
	if r.waitKey {
		if !key {
			r.dropped.Add(1)
			return
		}
		r.waitKey = false
	}
	r.haveVideo = true
	r.audioOnly.Store(false)
	r.videoBytes.Add(uint64(len(body)))
	r.videoFrames.Add(1)
	r.lastMs.Store(ts)
	r.updateFPS(ts)
	if key {
		r.onKeyframe(ts)
	}
	f := r.frames.Get()
	f.TagType, f.TS, f.Keyframe, f.Params, f.RecvAt = flv.TagVideo, ts, key, ps, now
	f.Body = append(f.Body, body...)
	r.cache(f)
	if r.sink != nil {
		r.sink.Deliver(f)
	}
	f.Release()
	r.s.onMedia(now, 0) // the first keyframe makes the publisher connected
}

func (r *rtmpSource) updateFPS(ts uint32) {
	if r.videoFrames.Load() > 1 {
		if d := int32(ts - r.lastVideo); d > 0 && d < 1000 {
			if r.avgDelta == 0 {
				r.avgDelta = float64(d)
			} else {
				r.avgDelta += (float64(d) - r.avgDelta) / 16
			}
			r.fpsBits.Store(math.Float64bits(1000 / r.avgDelta))
		}
	}
	r.lastVideo = ts
}

func (r *rtmpSource) onKeyframe(ts uint32) {
	r.keyframes.Add(1)
	if r.haveKey {
		if gop := int64(int32(ts - r.lastKey)); gop > 0 {
			r.gopMs.Store(gop)
			switch {
			case gop > gopWarnMs && !r.gopWarned:
				r.gopWarned = true
				r.s.log.Warn("rtmp publisher's keyframe interval is over 4 s: targets that connect wait that long for a picture; set the encoder's keyframe interval to 2 s", "intervalMs", gop)
				r.s.events.Publish(PublisherKeyframeInterval{StreamID: r.s.id, IntervalMs: gop, LimitMs: gopWarnMs})
			case gop <= gopWarnMs:
				r.gopWarned = false
			}
		}
	}
	r.lastKey, r.haveKey = ts, true
}

func (r *rtmpSource) onAudio(ts uint32, body []byte, now time.Time) {
	tag, err := flv.ParseAudioTag(body)
	if err != nil {
		return
	}
	const aac, exHeader = 10, 9
	needsHeader := tag.SoundFormat == aac || tag.SoundFormat == exHeader
	switch {
	case needsHeader && tag.PacketType == flv.AudioPacketTypeSequenceStart:
		if r.audioHdr == nil || !bytes.Equal(r.audioHdr.Body, body) {
			r.audioHdr = &media.AudioHeader{Body: bytes.Clone(body)}
			r.silent = nil
			if tag.SoundFormat == aac {
				r.silent = silentAAC(tag.Payload)
			}
			info := r.out.set(tag)
			r.s.mu.Lock()
			r.s.audioInfo = &info
			r.s.mu.Unlock()
		}
		return
	case tag.SoundFormat == exHeader && tag.PacketType != flv.AudioPacketTypeCodedFrames:
		return
	case needsHeader && r.audioHdr == nil:
		return // a frame before its configuration: undecodable
	}
	hdr := r.audioHdr
	if !needsHeader {
		hdr = nil // MP3 and the other legacy formats need no header
		if r.out.format() != tag.SoundFormat {
			info := r.out.set(tag)
			r.s.mu.Lock()
			r.s.audioInfo = &info
			r.s.mu.Unlock()
		}
	}
	r.audioBytes.Add(uint64(len(body)))
	if !r.haveAudio {
		r.firstAudio, r.haveAudio = ts, true
	}
	if !r.haveVideo && !r.audioOnly.Load() && int32(ts-r.firstAudio) > audioOnlyAfterMs {
		r.audioOnly.Store(true)
		r.s.log.Info("rtmp publisher sends no video: an audio-only stream")
	}
	if !r.haveVideo {
		r.lastMs.Store(ts)
	}
	if r.audioOnly.Load() {
		r.s.onMedia(now, 0)
	}
	muted := r.muted.Load()
	if muted && (r.silent == nil || tag.SoundFormat != aac) {
		return // nothing to stand in: the targets' audio pauses
	}
	f := r.frames.Get()
	f.TagType, f.TS, f.AudioHeader, f.RecvAt = flv.TagAudio, ts, hdr, now
	if muted {
		// The tag's two header bytes, then silence in the same format:
		// the ingest's audio goes on at the publisher's pace.
		f.Body = append(append(f.Body, body[:2]...), r.silent...)
	} else {
		f.Body = append(f.Body, body...)
	}
	r.cache(f)
	if r.sink != nil {
		r.sink.SendAudio(r.out, f)
	}
	f.Release()
}

// onData takes the publisher's data messages: onMetaData is merged into
// every target's (sent again now), the other handlers that carry timed
// data (cue points, captions, text) are passed on.
func (r *rtmpSource) onData(ts uint32, m ingest.Message) {
	switch m.Handler {
	case "onMetaData":
		vals, _ := m.Values.(map[string]any)
		if pm := publisherMeta(vals); pm != nil {
			r.meta.Store(&pm)
		} else {
			r.meta.Store(nil)
		}
		if _, v := vals["videocodecid"]; !v && vals != nil && !r.haveVideo {
			if _, a := vals["audiocodecid"]; a {
				r.audioOnly.Store(true)
			}
		}
		if r.sink != nil {
			r.sink.deliverData(true, nil, ts)
		}
	case "onCuePoint", "onTextData", "onCaption", "onCaptionInfo", "onFI":
		if r.sink != nil {
			r.sink.deliverData(false, m.Body, ts)
		}
	}
}

// publisherMeta keeps the publisher's onMetaData values a target can take:
// numbers, strings and booleans, bounded, without the file's duration and
// size (a live stream has neither).
func publisherMeta(vals map[string]any) map[string]any {
	if vals == nil {
		return nil
	}
	md := make(map[string]any, min(len(vals), maxPublisherMetaKeys))
	for k, v := range vals {
		if len(md) == maxPublisherMetaKeys {
			break
		}
		switch strings.ToLower(k) {
		case "duration", "filesize", "":
			continue
		}
		if len(k) > maxPublisherMetaLen {
			continue
		}
		switch x := v.(type) {
		case float64, bool:
			md[k] = x
		case string:
			if len(x) <= maxPublisherMetaLen {
				md[k] = x
			}
		}
	}
	return md
}

// metadata is the publisher's onMetaData with the client's (user) over it.
func (r *rtmpSource) metadata(user map[string]any) map[string]any {
	p := r.meta.Load()
	if p == nil {
		return user
	}
	md := maps.Clone(*p)
	maps.Copy(md, user)
	return md
}

// cache keeps the frames since the last keyframe, for a broadcast that
// attaches mid-GOP.
func (r *rtmpSource) cache(f *media.Frame) {
	if f.TagType == flv.TagVideo && f.Keyframe {
		r.dropCache()
		r.caching = true
	}
	if !r.caching {
		return
	}
	if len(r.gop) >= gopCacheFrames || r.gopBytes+len(f.Body) > gopCacheBytes {
		r.dropCache()
		r.caching = false
		return
	}
	f.Retain()
	r.gop = append(r.gop, f)
	r.gopBytes += len(f.Body)
}

func (r *rtmpSource) dropCache() {
	for i, f := range r.gop {
		f.Release()
		r.gop[i] = nil
	}
	r.gop, r.gopBytes = r.gop[:0], 0
}

// The rtmpSource as a mediaSource.

func (r *rtmpSource) Kind() string                 { return "rtmp" }
func (r *rtmpSource) HasVideo() bool               { return !r.audioOnly.Load() }
func (r *rtmpSource) VideoParams() *media.ParamSet { return r.params.Load() }
func (r *rtmpSource) FPS() float64 {
	return math.Round(math.Float64frombits(r.fpsBits.Load())*100) / 100
}
func (r *rtmpSource) LastMillis() uint32 { return r.lastMs.Load() }

func (r *rtmpSource) VideoBitrate(now time.Time) float64 {
	return r.rate.Bitrate(r.videoBytes.Load(), now)
}

// RequestKeyframe cannot ask an RTMP publisher: the targets wait for its
// next one (PublisherKeyframeInterval warns of long GOPs).
func (r *rtmpSource) RequestKeyframe(string) {}

func (r *rtmpSource) NewAudio(*Broadcast) broadcastAudio { return rtmpAudioOutputs{r.out} }

// Attach starts delivering to b with the frames since the last keyframe,
// so that the targets begin at once rather than at the next keyframe.
func (r *rtmpSource) Attach(b *Broadcast) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return
	}
	r.sink = b
	for _, f := range r.gop {
		if f.TagType == flv.TagVideo {
			b.Deliver(f)
		} else {
			b.SendAudio(r.out, f)
		}
	}
}

func (r *rtmpSource) Detach(b *Broadcast) {
	r.mu.Lock()
	if r.sink == b {
		r.sink = nil
	}
	r.mu.Unlock()
}

// stats fills an RTMP stream's inbound counters.
func (r *rtmpSource) stats(st *Stats, now time.Time) {
	if r.videoFrames.Load() > 0 || r.params.Load() != nil {
		vs := &VideoStats{
			Bitrate:            r.s.videoRate.Bitrate(r.videoBytes.Load(), now),
			FPS:                r.FPS(),
			Keyframes:          r.keyframes.Load(),
			FramesDropped:      r.dropped.Load(),
			KeyframeIntervalMs: r.gopMs.Load(),
		}
		if ps := r.params.Load(); ps != nil {
			vs.Width, vs.Height = ps.Width, ps.Height
		}
		st.Inbound.Video = vs
	}
	r.s.mu.Lock()
	hasAudio := r.s.audioInfo != nil
	r.s.mu.Unlock()
	if hasAudio {
		st.Inbound.Audio = &AudioStats{Bitrate: r.s.audioRate.Bitrate(r.audioBytes.Load(), now)}
	}
}

// rtmpAudio is an RTMP stream's one audio output: the publisher's audio
// as it came. Its onMetaData fields come from the audio's header.
type rtmpAudio struct {
	mu   sync.Mutex
	tag  flv.AudioTag // of the header (AAC, E-RTMP) or the last frame; Payload nil
	rate int
	ch   int
}

var aacRates = [...]int{96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350}

// set takes the audio's format from a header (or a headerless frame) and
// returns the view's AudioInfo.
func (a *rtmpAudio) set(tag flv.AudioTag) AudioInfo {
	rate, ch := 0, 0
	codec := "audio"
	switch tag.SoundFormat {
	case 10:
		codec = "aac"
		if p := tag.Payload; len(p) >= 2 {
			if i := int(p[0]&7)<<1 | int(p[1]>>7); i < len(aacRates) {
				rate = aacRates[i]
			}
			ch = int(p[1] >> 3 & 0x0f)
		}
	case 9:
		codec = strings.ToLower(strings.TrimSpace(string(tag.FourCC[:])))
	case 2, 14:
		codec = "mp3"
	}
	if rate == 0 && tag.SoundFormat != 9 {
		rate = [...]int{5512, 11025, 22050, 44100}[tag.SoundRate&3]
	}
	if ch == 0 && tag.SoundFormat != 9 {
		ch = int(tag.SoundType) + 1
	}
	a.mu.Lock()
	a.tag, a.rate, a.ch = tag, rate, ch
	a.tag.Payload = nil
	a.mu.Unlock()
	return AudioInfo{Codec: codec, SampleRate: rate, Channels: ch}
}

func (a *rtmpAudio) format() uint8 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.tag.SoundFormat
}

// AudioMetadata implements audio.Output and rtmpout.AudioSource.
func (a *rtmpAudio) AudioMetadata(md map[string]any) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.tag.SoundFormat == 0 && a.rate == 0 {
		return // no audio seen yet
	}
	if a.tag.SoundFormat == 9 {
		md["audiocodecid"] = flv.FourCCNumber(a.tag.FourCC)
	} else {
		md["audiocodecid"] = float64(a.tag.SoundFormat)
	}
	if a.rate > 0 {
		md["audiosamplerate"] = float64(a.rate)
	}
	md["audiosamplesize"] = float64(16)
	md["stereo"] = a.ch >= 2
}

// rtmpAudioOutputs is an RTMP stream's broadcast audio: every target takes
// the one passthrough; there is nothing to start or flush.
type rtmpAudioOutputs struct{ out *rtmpAudio }

func (o rtmpAudioOutputs) For(rtmpout.Spec, *http.Client) (rtmpout.AudioSource, error) {
	return o.out, nil
}
func (rtmpAudioOutputs) Release(rtmpout.AudioSource) {}
func (rtmpAudioOutputs) Install()                    {}
func (rtmpAudioOutputs) Uninstall()                  {}

// Empty is false: a stopping broadcast lets its targets write what is
// queued (Broadcast.stop's audio drain).
func (rtmpAudioOutputs) Empty() bool { return false }
func (rtmpAudioOutputs) Close()      {}

// silentAAC returns one raw AAC-LC frame of digital silence in the format
// of the AudioSpecificConfig asc, made by castbridge's encoder, or nil where
// that encoder cannot make it (HE-AAC, other rates, more channels). While an
// RTMP stream is muted it stands in for each of the publisher's frames.
func silentAAC(asc []byte) []byte {
	if len(asc) < 2 || asc[0]>>3 != 2 { // audioObjectType 2: AAC-LC
		return nil
	}
	idx := int(asc[0]&7)<<1 | int(asc[1]>>7)
	ch := int(asc[1] >> 3 & 0x0f)
	if idx >= len(aacRates) || ch < 1 || ch > 2 {
		return nil
	}
	enc, err := aaclc.NewEncoder(aaclc.Config{SampleRate: aacRates[idx], Channels: ch})
	if err != nil {
		return nil
	}
	pcm := make([]int16, aaclc.FrameSamples*ch)
	var frame []byte
	// Past the encoder's delay every frame of silence is the same (its
	// look-ahead, the next frame's start, silent too).
	for range 4 {
		if frame, err = enc.Encode(frame[:0], pcm, pcm[:aaclc.LookAheadSamples*ch]); err != nil {
			return nil
		}
	}
	return bytes.Clone(frame)
}
