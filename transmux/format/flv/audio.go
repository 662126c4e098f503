package flv

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Legacy audio tag header values (FLV spec v10.1, AUDIODATA): the first byte
// is SoundFormat(4) | SoundRate(2) | SoundSize(1) | SoundType(1).
const (
	soundFormatMP3   = 2
	soundFormatExHdr = 9 // E-RTMP: FourCC mode
	soundFormatAAC   = 10
	soundFormatMP38k = 14

	soundRate44k    = 3 << 2
	soundSize16     = 1 << 1
	soundTypeStereo = 1

	aacPacketSequenceHeader = 0
	aacPacketRaw            = 1

	// aacHeaderByte is what every AAC tag starts with: the rate, size and
	// type bits are fixed for AAC (the real values are in the
	// AudioSpecificConfig), and players expect 44 kHz/16-bit/stereo there.
	aacHeaderByte = soundFormatAAC<<4 | soundRate44k | soundSize16 | soundTypeStereo
)

// Enhanced RTMP audio (veovera enhanced-rtmp v2, "Enhanced Audio",
// ExAudioTagHeader): when SoundFormat is ExHeader (9) the low four bits are
// an AudioPacketType instead of rate/size/type, and (outside multitrack and
// ModEx) a FOURCC follows, then the body:
//
//	soundFormat = UB[4] as SoundFormat          // 9, ExHeader
//	audioPacketType = UB[4] as AudioPacketType  // SequenceStart 0, CodedFrames 1
//	audioFourCc = FOURCC as AudioFourCc         // "Opus"
//	SequenceStart body for Opus: the Opus ID header, OpusHead (RFC 7845, 5.1)
//	CodedFrames body for Opus: one Opus packet
const (
	AudioPacketTypeSequenceStart = 0
	AudioPacketTypeCodedFrames   = 1
	AudioPacketTypeSequenceEnd   = 2
)

// FourCCOpus is the E-RTMP AudioFourCc of Opus.
var FourCCOpus = [4]byte{'O', 'p', 'u', 's'}

// AppendAACSequenceHeader appends an audio tag body carrying the
// AudioSpecificConfig (AACPacketType 0), which must precede the first raw
// AAC frame on every connection.
func AppendAACSequenceHeader(dst, asc []byte) []byte {
	dst = append(dst, aacHeaderByte, aacPacketSequenceHeader)
	return append(dst, asc...)
}

// AppendAACRaw appends an audio tag body carrying one raw AAC frame
// (AACPacketType 1, no ADTS header).
func AppendAACRaw(dst, frame []byte) []byte {
	dst = append(dst, aacHeaderByte, aacPacketRaw)
	return append(dst, frame...)
}

// AppendMP3 appends an audio tag body carrying one MP3 frame, header
// included. The FLV rate field only knows 5.5, 11, 22 and 44 kHz, so other
// rates are declared as the nearest one not above them (48 kHz as 44 kHz);
// decoders take the real rate from the MP3 frame header. 8 kHz MP3 uses its
// own SoundFormat (14), as the FLV spec asks.
func AppendMP3(dst, frame []byte, sampleRate, channels int) []byte {
	format := byte(soundFormatMP3)
	var rate byte
	switch {
	case sampleRate == 8000:
		format, rate = soundFormatMP38k, 0
	case sampleRate < 11025:
		rate = 0
	case sampleRate < 22050:
		rate = 1 << 2
	case sampleRate < 44100:
		rate = 2 << 2
	default:
		rate = soundRate44k
	}
	var typ byte
	if channels > 1 {
		typ = soundTypeStereo
	}
	dst = append(dst, format<<4|rate|soundSize16|typ)
	return append(dst, frame...)
}

// AppendOpusSequenceStart appends an E-RTMP audio tag body announcing Opus
// (AudioPacketType SequenceStart, FourCC "Opus") whose body is an OpusHead
// for channel mapping family 0 (mono or stereo). sampleRate is the
// informational input rate of the header (48000 for WebRTC). Pre-skip is 0:
// the packets are passed through from a live RTP stream whose timestamps
// already place the audio, so nothing is to be trimmed at the start.
func AppendOpusSequenceStart(dst []byte, channels int, sampleRate int) []byte {
	if channels < 1 || channels > 2 {
		channels = 2
	}
	if sampleRate <= 0 {
		sampleRate = 48000
	}
	dst = append(dst, soundFormatExHdr<<4|AudioPacketTypeSequenceStart)
	dst = append(dst, FourCCOpus[:]...)
	dst = append(dst, "OpusHead"...)
	dst = append(dst, 1, byte(channels)) // version 1, output channel count
	dst = binary.LittleEndian.AppendUint16(dst, 0)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(sampleRate))
	dst = binary.LittleEndian.AppendUint16(dst, 0) // output gain
	return append(dst, 0)                          // channel mapping family 0
}

// AppendOpusFrame appends an E-RTMP audio tag body carrying one Opus packet
// (AudioPacketType CodedFrames, FourCC "Opus").
func AppendOpusFrame(dst, packet []byte) []byte {
	dst = append(dst, soundFormatExHdr<<4|AudioPacketTypeCodedFrames)
	dst = append(dst, FourCCOpus[:]...)
	return append(dst, packet...)
}

// ErrInvalidAudioTag is returned by ParseAudioTag for bodies it cannot read.
var ErrInvalidAudioTag = errors.New("invalid FLV audio tag")

// AudioTag is a parsed audio tag body. Payload aliases the body.
type AudioTag struct {
	// SoundFormat is the legacy format (2 MP3, 10 AAC, 14 MP3 8 kHz) or 9
	// for an E-RTMP tag, in which case FourCC and PacketType are set.
	SoundFormat uint8
	// Legacy rate/size/type bits (meaningless for E-RTMP tags).
	SoundRate, SoundSize, SoundType uint8
	// AACPacketType (AAC) or AudioPacketType (E-RTMP).
	PacketType uint8
	FourCC     [4]byte
	Payload    []byte
}

// ParseAudioTag reads the header of an audio tag body as built by the
// Append* functions here: legacy MP3 and AAC, and single-track E-RTMP
// without ModEx. It does not allocate.
func ParseAudioTag(body []byte) (AudioTag, error) {
	if len(body) < 1 {
		return AudioTag{}, fmt.Errorf("audio tag: empty body: %w", ErrInvalidAudioTag)
	}
	t := AudioTag{
		SoundFormat: body[0] >> 4,
		SoundRate:   body[0] >> 2 & 3,
		SoundSize:   body[0] >> 1 & 1,
		SoundType:   body[0] & 1,
	}
	switch t.SoundFormat {
	case soundFormatExHdr:
		t.SoundRate, t.SoundSize, t.SoundType = 0, 0, 0
		t.PacketType = body[0] & 0x0f
		if t.PacketType > AudioPacketTypeSequenceEnd {
			return AudioTag{}, fmt.Errorf("audio tag: E-RTMP packet type %d not supported: %w", t.PacketType, ErrInvalidAudioTag)
		}
		if len(body) < 5 {
			return AudioTag{}, fmt.Errorf("audio tag: E-RTMP header truncated: %w", ErrInvalidAudioTag)
		}
		copy(t.FourCC[:], body[1:5])
		t.Payload = body[5:]
	case soundFormatAAC:
		if len(body) < 2 {
			return AudioTag{}, fmt.Errorf("audio tag: AAC header truncated: %w", ErrInvalidAudioTag)
		}
		t.PacketType = body[1]
		t.Payload = body[2:]
	default:
		t.Payload = body[1:]
	}
	return t, nil
}
