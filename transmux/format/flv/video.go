// Package flv builds FLV tag bodies (the payload of RTMP audio, video and
// data messages) and writes FLV files.
//
// The Append* builders append into a caller-provided slice so that the media
// path can reuse one buffer per stream and run without allocations.
package flv

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
)

// Tag types of FLV tags and of the matching RTMP message types.
const (
	TagAudio  uint8 = 8
	TagVideo  uint8 = 9
	TagScript uint8 = 18
)

// Video tag header values (FLV spec, VIDEODATA).
const (
	frameTypeKey   = 1
	frameTypeInter = 2
	codecIDAVC     = 7

	avcPacketSequenceHeader = 0
	avcPacketNALU           = 1
)

// ErrInvalidParameterSet is returned when an SPS or PPS cannot go into an
// AVCDecoderConfigurationRecord.
var ErrInvalidParameterSet = errors.New("invalid H.264 parameter set")

// AppendAVCSequenceHeader appends a video tag body carrying the
// AVCDecoderConfigurationRecord built from sps and pps (AVCPacketType 0).
//
// Players and ingests need this record before the first frame: it is the only
// place where SPS and PPS travel in FLV/RTMP, which is why AppendAVCNALUs drops
// in-band parameter sets. NALU lengths are declared as 4 bytes
// (lengthSizeMinusOne = 3), matching AppendAVCNALUs.
func AppendAVCSequenceHeader(dst []byte, sps, pps []byte) ([]byte, error) {
	if len(sps) < 4 || h264.NALUType(sps[0]&0x1f) != h264.NALUTypeSPS {
		return dst, fmt.Errorf("avc sequence header: SPS: %w", ErrInvalidParameterSet)
	}
	if len(pps) < 1 || h264.NALUType(pps[0]&0x1f) != h264.NALUTypePPS {
		return dst, fmt.Errorf("avc sequence header: PPS: %w", ErrInvalidParameterSet)
	}
	if len(sps) > 0xffff || len(pps) > 0xffff {
		return dst, fmt.Errorf("avc sequence header: parameter set longer than 65535 bytes: %w", ErrInvalidParameterSet)
	}

	profile := sps[1]
	// High profiles carry chroma format and bit depths in an extension of
	// the record (ISO/IEC 14496-15 5.2.4.1); decoders that follow the
	// standard strictly (and ffmpeg when remuxing to MP4) expect it.
	var ext []byte
	var extBuf [4]byte
	switch profile {
	case 100, 110, 122, 144:
		var s h264.SPS
		if err := s.Unmarshal(sps); err != nil {
			return dst, fmt.Errorf("avc sequence header: parse SPS: %w: %w", ErrInvalidParameterSet, err)
		}
		extBuf = [4]byte{
			0xfc | byte(s.ChromaFormatIdc&0x03),
			0xf8 | byte(s.BitDepthLumaMinus8&0x07),
			0xf8 | byte(s.BitDepthChromaMinus8&0x07),
			0, // numOfSequenceParameterSetExt
		}
		ext = extBuf[:]
	}

	dst = append(dst,
		frameTypeKey<<4|codecIDAVC,
		avcPacketSequenceHeader,
		0, 0, 0, // composition time
		1,       // configurationVersion
		profile, // AVCProfileIndication
		sps[2],  // profile_compatibility
		sps[3],  // AVCLevelIndication
		0xfc|3,  // reserved + lengthSizeMinusOne
		0xe0|1,  // reserved + numOfSequenceParameterSets
	)
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(sps)))
	dst = append(dst, sps...)
	dst = append(dst, 1) // numOfPictureParameterSets
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(pps)))
	dst = append(dst, pps...)
	dst = append(dst, ext...)
	return dst, nil
}

// AppendAVCNALUs appends a video tag body (AVCPacketType 1) carrying the NAL
// units of one access unit in AVCC form (4-byte big-endian lengths).
//
// Access unit delimiters and SPS/PPS are left out: the former mean nothing in
// FLV and the latter travel in the sequence header (AppendAVCSequenceHeader),
// and some ingests choke on duplicates. SEI and slices are kept. cts is the
// composition time offset (PTS-DTS) in milliseconds, 0 without B-frames.
//
// It does not allocate when dst has enough capacity.
func AppendAVCNALUs(dst []byte, nalus [][]byte, keyframe bool, cts int32) []byte {
	size := 5
	for _, n := range nalus {
		if keepNALU(n) {
			size += 4 + len(n)
		}
	}
	if cap(dst)-len(dst) < size {
		grown := make([]byte, len(dst), len(dst)+size)
		copy(grown, dst)
		dst = grown
	}

	frameType := byte(frameTypeInter)
	if keyframe {
		frameType = frameTypeKey
	}
	dst = append(dst,
		frameType<<4|codecIDAVC,
		avcPacketNALU,
		byte(cts>>16), byte(cts>>8), byte(cts),
	)
	for _, n := range nalus {
		if !keepNALU(n) {
			continue
		}
		dst = binary.BigEndian.AppendUint32(dst, uint32(len(n)))
		dst = append(dst, n...)
	}
	return dst
}

func keepNALU(n []byte) bool {
	if len(n) == 0 {
		return false
	}
	switch h264.NALUType(n[0] & 0x1f) {
	case h264.NALUTypeAccessUnitDelimiter, h264.NALUTypeSPS, h264.NALUTypePPS:
		return false
	}
	return true
}
