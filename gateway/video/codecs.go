package video

import (
	"bytes"
	"fmt"
	"time"

	"github.com/pion/rtp"

	"github.com/castbridge/castbridge/gateway/media"
	"github.com/castbridge/castbridge/transmux/format/flv"
	"github.com/castbridge/castbridge/transmux/rtp/rtpframe"
)

// The E-RTMP codecs' path through the pipeline: the same reordering,
// NACKs, clock, loss rule (a broken frame is dropped whole, nothing is
// forwarded before the next keyframe, which is asked for at once by PLI)
// and delivery as H.264, with rtpframe's depacketizer and a configuration
// taken from the bitstream: a VP9 key frame's header, an AV1 sequence
// header OBU, H.265 VPS/SPS/PPS.

// StartCodec is Start for a track of codec (h264 is Start itself).
func (v *Pipeline) StartCodec(ssrc uint32, codec media.VideoCodec) error {
	if err := v.setCodec(codec); err != nil {
		return err
	}
	v.Start(ssrc)
	return nil
}

// setCodec makes the depacketizer of a codec other than H.264, once,
// before any packet.
func (v *Pipeline) setCodec(codec media.VideoCodec) error {
	switch codec {
	case media.CodecH264, "":
	case media.CodecVP9:
		v.frames = rtpframe.New(rtpframe.VP9, v.cfg.AUBuffers)
	case media.CodecAV1:
		v.frames = rtpframe.New(rtpframe.AV1, v.cfg.AUBuffers)
	case media.CodecHEVC:
		v.frames = rtpframe.New(rtpframe.H265, v.cfg.AUBuffers)
	default:
		return fmt.Errorf("video codec %q has no pipeline", codec)
	}
	return nil
}

// Codec is the track's codec.
func (v *Pipeline) Codec() media.VideoCodec {
	if v.frames == nil {
		return media.CodecH264
	}
	switch v.frames.Codec() {
	case rtpframe.VP9:
		return media.CodecVP9
	case rtpframe.AV1:
		return media.CodecAV1
	}
	return media.CodecHEVC
}

func (v *Pipeline) pushFrame(pkt *rtp.Packet, lost bool, now time.Time) {
	fr, done, err := v.frames.Push(pkt, lost)
	if lost {
		st := v.reorder.Stats()
		v.lost.Store(st.Lost)
		if st.Resets != v.resets {
			v.resets = st.Resets
			v.timeline.Rebase()
		}
	}
	if lost || err != nil {
		v.onBrokenFrame()
	}
	if done {
		v.onFrame(&fr, now)
	}
}

func (v *Pipeline) onFrame(fr *rtpframe.Frame, now time.Time) {
	v.updateCodecParams(fr)
	ms := v.frameMillis(fr.Timestamp, now)
	ps, sink, ok := v.admit(fr.Keyframe, "no codec configuration yet")
	if !ok {
		return
	}
	f := v.newFrame(ms, fr.Keyframe, ps, now)
	switch v.frames.Codec() {
	case rtpframe.VP9:
		f.Body = flv.AppendVP9Frame(f.Body, fr.Units[0], fr.Keyframe)
	case rtpframe.AV1:
		f.Body = flv.AppendAV1Frame(f.Body, fr.Units, fr.Keyframe)
	case rtpframe.H265:
		f.Body = flv.AppendHEVCNALUs(f.Body, fr.Units, fr.Keyframe, 0)
	}
	v.deliver(sink, f)
}

// updateCodecParams makes a new parameter set when the frame carries a
// configuration that differs from the one in force. Only key frames (and
// H.265 parameter sets, which come before them) are looked at, so the
// steady state compares nothing.
func (v *Pipeline) updateCodecParams(fr *rtpframe.Frame) {
	cur := v.params.Load()
	var ps *media.ParamSet
	var err error
	switch v.frames.Codec() {
	case rtpframe.VP9:
		if !fr.Keyframe {
			return
		}
		ps, err = media.NewVP9ParamSet(fr.Units[0])
		if err == nil && cur != nil && bytes.Equal(cur.Source, ps.Source) {
			return
		}
	case rtpframe.AV1:
		for _, u := range fr.Units {
			if flv.AV1OBUType(u) != flv.AV1OBUSequenceHeader {
				continue
			}
			if cur != nil && bytes.Equal(cur.Source, u) {
				return
			}
			ps, err = media.NewAV1ParamSet(u)
			break
		}
		if ps == nil && err == nil {
			return
		}
	case rtpframe.H265:
		seen := false
		for _, u := range fr.Units {
			switch flv.HEVCNALUType(u) {
			case flv.HEVCNALUVPS:
				v.pendingVPS = append(v.pendingVPS[:0], u...)
			case flv.HEVCNALUSPS:
				v.pendingSPS = append(v.pendingSPS[:0], u...)
			case flv.HEVCNALUPPS:
				v.pendingPPS = append(v.pendingPPS[:0], u...)
			default:
				continue
			}
			seen = true
		}
		if !seen || v.pendingVPS == nil || v.pendingSPS == nil || v.pendingPPS == nil {
			return
		}
		if cur != nil && bytes.Equal(cur.VPS, v.pendingVPS) && bytes.Equal(cur.SPS, v.pendingSPS) && bytes.Equal(cur.PPS, v.pendingPPS) {
			return
		}
		ps, err = media.NewHEVCParamSet(v.pendingVPS, v.pendingSPS, v.pendingPPS)
	}
	if err != nil {
		v.log.Warn("unusable video configuration from publisher", "codec", v.frames.Codec().String(), "err", err)
		return
	}
	v.log.Info("video parameters", "codec", v.frames.Codec().String(), "width", ps.Width, "height", ps.Height, "profile", ps.Profile)
	v.params.Store(ps)
}
