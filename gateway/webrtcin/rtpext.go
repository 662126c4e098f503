package webrtcin

import "encoding/binary"

// rtpExtension returns the payload of header extension id in a marshalled
// RTP packet (RFC 8285 one-byte or two-byte form), or nil. It reads the
// bytes in place: the receive path calls it per packet, and parsing a whole
// rtp.Header there allocated.
func rtpExtension(raw []byte, id uint8) []byte {
	if len(raw) < 12 || raw[0]&0x10 == 0 || id == 0 {
		return nil
	}
	off := 12 + 4*int(raw[0]&0x0f)
	if len(raw) < off+4 {
		return nil
	}
	profile := binary.BigEndian.Uint16(raw[off:])
	end := off + 4 + 4*int(binary.BigEndian.Uint16(raw[off+2:]))
	if end > len(raw) {
		return nil
	}
	b := raw[off+4 : end]
	switch {
	case profile == 0xBEDE: // one-byte elements
		for i := 0; i < len(b); {
			if b[i] == 0 { // padding
				i++
				continue
			}
			eid, l := b[i]>>4, int(b[i]&0x0f)+1
			if eid == 15 { // reserved: stop parsing (RFC 8285 4.2)
				return nil
			}
			if i+1+l > len(b) {
				return nil
			}
			if eid == id {
				return b[i+1 : i+1+l]
			}
			i += 1 + l
		}
	case profile&0xfff0 == 0x1000: // two-byte elements
		for i := 0; i < len(b); {
			if b[i] == 0 {
				i++
				continue
			}
			if i+2 > len(b) {
				return nil
			}
			eid, l := b[i], int(b[i+1])
			if i+2+l > len(b) {
				return nil
			}
			if eid == id {
				return b[i+2 : i+2+l]
			}
			i += 2 + l
		}
	}
	return nil
}
