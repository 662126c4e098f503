package mediafile

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/opus"
)

// OpusPacket is one Opus packet read from an Ogg file.
type OpusPacket struct {
	Data []byte
	// Duration is the audio duration the packet carries, from its TOC.
	Duration time.Duration
}

// ReadOpusFile reads the Opus packets of the first logical stream of an
// Ogg Opus file (RFC 7845), skipping the OpusHead and OpusTags headers.
// Packets spanning several pages are reassembled.
func ReadOpusFile(path string) ([]OpusPacket, error) {
	buf, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var (
		packets [][]byte
		partial []byte
		serial  uint32
		first   = true
	)
	for len(buf) > 0 {
		if len(buf) < 27 || !bytes.Equal(buf[:4], []byte("OggS")) {
			return nil, fmt.Errorf("%s: bad Ogg page", path)
		}
		nseg := int(buf[26])
		if len(buf) < 27+nseg {
			return nil, fmt.Errorf("%s: truncated Ogg page", path)
		}
		lacing := buf[27 : 27+nseg]
		bodyLen := 0
		for _, l := range lacing {
			bodyLen += int(l)
		}
		if len(buf) < 27+nseg+bodyLen {
			return nil, fmt.Errorf("%s: truncated Ogg page body", path)
		}
		pageSerial := binary.LittleEndian.Uint32(buf[14:18])
		body := buf[27+nseg : 27+nseg+bodyLen]
		buf = buf[27+nseg+bodyLen:]
		if first {
			serial = pageSerial
			first = false
		}
		if pageSerial != serial {
			continue
		}
		for _, l := range lacing {
			partial = append(partial, body[:l]...)
			body = body[l:]
			if l < 255 {
				packets = append(packets, partial)
				partial = nil
			}
		}
	}
	if len(packets) < 2 || !bytes.HasPrefix(packets[0], []byte("OpusHead")) ||
		!bytes.HasPrefix(packets[1], []byte("OpusTags")) {
		return nil, fmt.Errorf("%s: not an Ogg Opus file", path)
	}
	var out []OpusPacket
	for _, p := range packets[2:] {
		if len(p) == 0 {
			continue
		}
		d := time.Duration(opus.PacketDuration2(p)) * time.Second / 48000
		if d <= 0 {
			return nil, fmt.Errorf("%s: bad Opus packet", path)
		}
		out = append(out, OpusPacket{Data: p, Duration: d})
	}
	if len(out) == 0 {
		return nil, errors.New(path + ": no Opus packets")
	}
	return out, nil
}
