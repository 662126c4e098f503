package video

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/pion/rtcp"

	"github.com/castbridge/castbridge/gateway/media"
	"github.com/castbridge/castbridge/gateway/webrtcin"
	"github.com/castbridge/castbridge/transmux/format/flv"
	"github.com/castbridge/castbridge/transmux/rtp/rtpframe"
)

const (
	// layerTimeout is how long a simulcast layer may send nothing before
	// it counts as stopped (a publisher that drops a layer for bandwidth or
	// CPU just stops sending it).
	layerTimeout = 600 * time.Millisecond
	// layerEvalGap is how often, at most, the layer choice is reviewed.
	layerEvalGap = 100 * time.Millisecond
	// layerPLIRetry is how soon a switch's unanswered keyframe request to
	// the layer switched to repeats.
	layerPLIRetry = 500 * time.Millisecond
	// sameClockSlack is how far a layer's RTP time may be from where the
	// forwarded layer's clock says it should be and still count as on the
	// same clock (libwebrtc gives all layers one timestamp base).
	sameClockSlack = 90000 / 10
	// maxLayers bounds a publisher's layers (RFC 8853 allows any number;
	// browsers and OBS send at most 3 or 4).
	maxLayers = 8
)

// Layer is one rid of a simulcast publisher's video (H.264, VP9 or AV1:
// inspect reads its key frames' configuration). Its packets come from
// its own read goroutine (HandlePacket); of the layers, the pipeline gets
// those of the highest that is flowing, switched only at a keyframe.
type Layer struct {
	sel  *layers
	rid  string
	ssrc uint32
	rank int // order of arrival, for ties in resolution
	rtp  *webrtcin.RTPStats

	// shared
	lastAt  atomic.Int64 // unix ns of the newest packet
	params  atomic.Pointer[media.ParamSet]
	packets atomic.Uint64
	bytesIn atomic.Uint64

	// the layer's read goroutine's own
	sps, pps []byte
	rec      []byte // VP9: the record of its newest key frame

	// guarded by sel.mu
	offset    uint32 // added to the layer's RTP timestamps when forwarded
	lastRaw   uint32 // its newest RTP timestamp, as sent
	lastRawAt int64
	haveRaw   bool
	srNTP     uint64 // its newest Sender Report
	srRTP     uint32
	haveSR    bool
	pliAt     int64 // unix ns of the last keyframe request to it
}

// layers is the pipeline's simulcast selection.
type layers struct {
	v  *Pipeline
	mu sync.Mutex
	// guarded by mu; the pipeline's receive state too is only touched
	// with mu held while the publisher sends simulcast
	all       []*Layer
	active    *Layer // forwarded
	target    *Layer // to switch to at its next keyframe
	lastEval  int64
	lastOutTS uint32 // RTP time (with offset) of the newest forwarded packet
	lastOutAt int64
	haveOut   bool
	switches  atomic.Uint64
	activeRID atomic.Pointer[string]
}

// AddLayer registers the simulcast layer rid (pion's OnTrack fires once per
// rid) and returns it; its read loop hands its packets to its HandlePacket.
// A layer beyond maxLayers is returned unforwarded (it is only read).
func (v *Pipeline) AddLayer(rid string, ssrc uint32) *Layer {
	v.layersMu.Lock()
	s := v.layers.Load()
	if s == nil {
		s = &layers{v: v}
		v.layers.Store(s)
	}
	v.layersMu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	l := &Layer{sel: s, rid: rid, ssrc: ssrc, rank: len(s.all), rtp: webrtcin.NewRTPStats(90000)}
	if len(s.all) < maxLayers {
		s.all = append(s.all, l)
	} else {
		v.log.Warn("simulcast layer ignored: too many", "rid", rid, "max", maxLayers)
		l.sel = nil
	}
	v.log.Info("simulcast layer", "rid", rid, "ssrc", ssrc)
	return l
}

// AddCodecLayer is AddLayer for a VP9 or AV1 publisher's layer: the first
// one makes the pipeline's depacketizer for the codec. The layers are
// ranked by the resolution of their key frames (a VP9 key frame's header,
// an AV1 sequence header).
func (v *Pipeline) AddCodecLayer(rid string, ssrc uint32, codec media.VideoCodec) (*Layer, error) {
	if codec != media.CodecVP9 && codec != media.CodecAV1 {
		return nil, fmt.Errorf("simulcast layers of %s are not selected", codec)
	}
	v.layersMu.Lock()
	var err error
	if v.frames == nil {
		err = v.setCodec(codec)
	} else if v.Codec() != codec {
		err = fmt.Errorf("a %s layer for a %s pipeline", codec, v.Codec())
	}
	v.layersMu.Unlock()
	if err != nil {
		return nil, err
	}
	return v.AddLayer(rid, ssrc), nil
}

// RTP is the layer's reception statistics.
func (l *Layer) RTP() *webrtcin.RTPStats { return l.rtp }

// HandlePacket takes one RTP packet of the layer (its read loop's handler).
// The packet's timestamp is rewritten in place when it is forwarded.
func (l *Layer) HandlePacket(pkt []byte, now time.Time) {
	if l.sel == nil || len(pkt) < 12 {
		return
	}
	ns := now.UnixNano()
	payload := rtpPayload(pkt)
	// A layer is flowing while it sends media: Chromium keeps probing
	// bandwidth with padding-only packets on a layer it stopped encoding.
	if len(payload) > 0 {
		l.lastAt.Store(ns)
	}
	l.packets.Add(1)
	l.bytesIn.Add(uint64(len(pkt)))
	key := l.inspect(payload)
	ts := binary.BigEndian.Uint32(pkt[4:8])

	s := l.sel
	s.mu.Lock()
	defer s.mu.Unlock()
	l.lastRaw, l.lastRawAt, l.haveRaw = ts, ns, true
	if ns-s.lastEval >= int64(layerEvalGap) || s.active == nil {
		s.lastEval = ns
		s.review(ns)
	}
	if key && l == s.target {
		s.switchTo(l, ts, ns)
	}
	if l != s.active {
		return
	}
	out := ts + l.offset
	binary.BigEndian.PutUint32(pkt[4:8], out)
	s.lastOutTS, s.lastOutAt, s.haveOut = out, ns, true
	s.v.HandlePacket(pkt, now)
}

// inspect keeps the layer's SPS and PPS (its resolution) from the packet's
// payload and reports whether the packet begins a keyframe the pipeline
// can start from: an SPS, or an IDR slice's first packet once the layer's
// parameter sets are known. It allocates only when they change.
func (l *Layer) inspect(p []byte) bool {
	if len(p) == 0 {
		return false
	}
	if d := l.sel.v.frames; d != nil {
		return l.inspectCodec(d.Codec(), p)
	}
	switch typ := h264.NALUType(p[0] & 0x1f); typ {
	case h264.NALUTypeSPS, h264.NALUTypePPS:
		l.keepParamSet(p)
		return typ == h264.NALUTypeSPS
	case h264.NALUTypeSTAPA:
		var first h264.NALUType // the first aggregated NAL unit's type
		for b := p[1:]; len(b) > 2; {
			n := int(binary.BigEndian.Uint16(b))
			if n == 0 || 2+n > len(b) {
				break
			}
			nalu := b[2 : 2+n]
			if first == 0 {
				first = h264.NALUType(nalu[0] & 0x1f)
			}
			l.keepParamSet(nalu)
			b = b[2+n:]
		}
		switch first {
		case h264.NALUTypeSPS:
			return true
		case h264.NALUTypeIDR:
			return l.params.Load() != nil
		}
	case h264.NALUTypeFUA:
		return len(p) > 1 && p[1]&0x80 != 0 && h264.NALUType(p[1]&0x1f) == h264.NALUTypeIDR && l.params.Load() != nil
	case h264.NALUTypeIDR:
		return l.params.Load() != nil
	}
	return false
}

// inspectCodec is inspect for VP9 and AV1: a packet that starts a key
// frame, whose configuration (the VP9 record its header makes, the AV1
// sequence header) becomes the layer's parameter set when it changed.
func (l *Layer) inspectCodec(c rtpframe.Codec, p []byte) bool {
	start, ok := rtpframe.KeyframeStart(c, p)
	if !ok {
		return false
	}
	cur := l.params.Load()
	var ps *media.ParamSet
	var err error
	switch c {
	case rtpframe.VP9:
		rec, _, rerr := flv.AppendVPCodecConfigurationRecord(l.rec[:0], start)
		if rerr != nil {
			return false
		}
		l.rec = rec
		if cur != nil && bytes.Equal(cur.Source, rec) {
			return true
		}
		ps, err = media.NewVP9ParamSet(start)
	case rtpframe.AV1:
		if cur != nil && bytes.Equal(cur.Source, start) {
			return true
		}
		ps, err = media.NewAV1ParamSet(start)
	default:
		return false
	}
	if err != nil {
		l.sel.v.log.Warn("unusable configuration on simulcast layer", "rid", l.rid, "codec", c.String(), "err", err)
		return false
	}
	l.params.Store(ps)
	return true
}

func (l *Layer) keepParamSet(nalu []byte) {
	switch h264.NALUType(nalu[0] & 0x1f) {
	case h264.NALUTypeSPS:
		if bytes.Equal(l.sps, nalu) {
			return
		}
		l.sps = append(l.sps[:0], nalu...)
	case h264.NALUTypePPS:
		if bytes.Equal(l.pps, nalu) {
			return
		}
		l.pps = append(l.pps[:0], nalu...)
	default:
		return
	}
	if l.sps == nil || l.pps == nil {
		return
	}
	ps, err := media.NewParamSet(l.sps, l.pps)
	if err != nil {
		l.sel.v.log.Warn("unusable SPS/PPS on simulcast layer", "rid", l.rid, "err", err)
		return
	}
	l.params.Store(ps)
}

// rtpPayload is a marshalled RTP packet's payload, without padding, or nil.
func rtpPayload(pkt []byte) []byte {
	off := 12 + 4*int(pkt[0]&0x0f)
	if pkt[0]&0x10 != 0 {
		if len(pkt) < off+4 {
			return nil
		}
		off += 4 + 4*int(binary.BigEndian.Uint16(pkt[off+2:]))
	}
	end := len(pkt)
	if pkt[0]&0x20 != 0 && end > 12 {
		end -= int(pkt[end-1])
	}
	if off >= end {
		return nil
	}
	return pkt[off:end]
}

// flowing reports whether the layer sent media within layerTimeout of now.
func (l *Layer) flowing(now int64) bool {
	at := l.lastAt.Load()
	return at != 0 && now-at < int64(layerTimeout)
}

// better reports whether l ranks above o: more pixels, then (unknown or
// equal resolutions) the layer that came first.
func (l *Layer) better(o *Layer) bool {
	lp, op := l.pixels(), o.pixels()
	if lp != op {
		return lp > op
	}
	return l.rank < o.rank
}

func (l *Layer) pixels() int {
	if ps := l.params.Load(); ps != nil {
		return ps.Width * ps.Height
	}
	return 0
}

// review picks the layer to forward: the best that is flowing. A better
// layer than the forwarded one (or any, when the forwarded one stopped)
// becomes the target, asked for a keyframe until it sends one. A layer
// whose resolution is not known yet (its first keyframe was lost, or it
// started mid-GOP) is asked for one too, so it can be ranked.
func (s *layers) review(now int64) {
	var best *Layer
	for _, l := range s.all {
		if !l.flowing(now) {
			continue
		}
		if l != s.active && l.params.Load() == nil {
			s.askKeyframe(l, now)
		}
		if best == nil || l.better(best) {
			best = l
		}
	}
	if best == nil || best == s.active || (s.active != nil && s.active.flowing(now) && !best.better(s.active)) {
		s.target = nil
		return
	}
	if best != s.target {
		s.target, best.pliAt = best, 0
	}
	s.askKeyframe(best, now)
}

// askKeyframe sends l a PLI unless it was sent one within layerPLIRetry.
func (s *layers) askKeyframe(l *Layer, now int64) {
	if l.pliAt == 0 || now-l.pliAt >= int64(layerPLIRetry) {
		l.pliAt = now
		s.v.cfg.Feedback.SendPLI(l.ssrc)
	}
}

// switchTo makes l the forwarded layer from its keyframe at RTP time ts,
// placing it on the forwarded timeline: where the old layer's clock says
// the layers' shared clock is, or (layers on clocks of their own) where
// their Sender Reports put it, or else where the wall clock does.
func (s *layers) switchTo(l *Layer, ts uint32, now int64) {
	old := s.active
	how := "first"
	switch {
	case old == nil || !s.haveOut:
		l.offset = 0
	case old.haveRaw && abs32(int32(ts-(old.lastRaw+ticks(now-old.lastRawAt)))) < sameClockSlack:
		l.offset, how = old.offset, "same clock"
	case old.haveSR && l.haveSR:
		// old's RTP time at l's report's NTP time, against l's.
		d := int64(l.srNTP) - int64(old.srNTP) // 32.32 fixed point seconds
		oldAt := old.srRTP + uint32(d*90000>>32)
		l.offset, how = old.offset+oldAt-l.srRTP, "sender reports"
	default:
		l.offset, how = s.lastOutTS+max(ticks(now-s.lastOutAt), 1)-ts, "arrival"
	}
	from := ""
	if old != nil {
		from = old.rid
	}
	s.active, s.target = l, nil
	s.activeRID.Store(&l.rid)
	if old != nil {
		s.switches.Add(1)
	}
	s.v.switchSource(l.ssrc, l.params.Load())
	s.v.log.Info("simulcast layer forwarded", "rid", l.rid, "from", from, "timeline", how)
}

// ticks is a duration in ns on the 90 kHz clock.
func ticks(ns int64) uint32 { return uint32(max(ns, 0) * 9 / 100000) }

func abs32(d int32) int32 {
	if d < 0 {
		return -d
	}
	return d
}

// SenderReport notes the layer's Sender Report and returns it moved onto
// the forwarded timeline when the layer is the one forwarded; ok is false
// otherwise (only the forwarded layer's reports place the video).
func (l *Layer) SenderReport(sr *rtcp.SenderReport) (moved *rtcp.SenderReport, ok bool) {
	if l.sel == nil {
		return nil, false
	}
	s := l.sel
	s.mu.Lock()
	defer s.mu.Unlock()
	l.srNTP, l.srRTP, l.haveSR = sr.NTPTime, sr.RTPTime, true
	if l != s.active {
		return nil, false
	}
	if l.offset == 0 {
		return sr, true
	}
	c := *sr
	c.RTPTime += l.offset
	return &c, true
}

// LayerInfo is one simulcast layer as the API reports it.
type LayerInfo struct {
	RID       string
	SSRC      uint32
	Width     int // 0 until its SPS arrived
	Height    int
	Active    bool // sending (media within layerTimeout)
	Forwarded bool // the layer the pipeline takes
	Packets   uint64
	BytesIn   uint64
	RTP       *webrtcin.RTPStats
}

// Layers lists the simulcast layers in the order they arrived (active as
// of now), and how many times the forwarded layer switched; nil for a
// publisher without simulcast.
func (v *Pipeline) Layers(at time.Time) ([]LayerInfo, uint64) {
	s := v.layers.Load()
	if s == nil {
		return nil, 0
	}
	now := at.UnixNano()
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]LayerInfo, 0, len(s.all))
	for _, l := range s.all {
		li := LayerInfo{RID: l.rid, SSRC: l.ssrc, Active: l.flowing(now), Forwarded: l == s.active,
			Packets: l.packets.Load(), BytesIn: l.bytesIn.Load(), RTP: l.rtp}
		if ps := l.params.Load(); ps != nil {
			li.Width, li.Height = ps.Width, ps.Height
		}
		out = append(out, li)
	}
	return out, s.switches.Load()
}

// Simulcast reports whether the publisher sends simulcast layers.
func (v *Pipeline) Simulcast() bool { return v.layers.Load() != nil }
