package dtlssrtp

import (
	"bytes"
	"encoding/binary"

	"github.com/pion/srtp/v2"
)

const (
	recordHeaderLen    = 13
	handshakeHeaderLen = 12

	contentTypeHandshake = 22

	handshakeTypeClientHello = 1
	handshakeTypeServerHello = 2

	extensionUseSRTP = 14
	versionDTLS12    = 0xfefd

	// maxHelloLen bounds the reassembly of a fragmented Client/ServerHello.
	// Real ones are a few hundred bytes; a larger one is given up on.
	maxHelloLen = 4096
)

// parseDatagram walks the DTLS records of one datagram (RFC 6347 4.1) and
// feeds the epoch-0 handshake messages to handleFragment. Truncated or
// malformed input ends the walk; it never reads out of bounds.
func (s *Sniffer) parseDatagram(dir direction, d []byte) {
	for len(d) >= recordHeaderLen && !s.finished.Load() {
		contentType := d[0]
		epoch := binary.BigEndian.Uint16(d[3:5])
		n := int(binary.BigEndian.Uint16(d[11:13]))
		if recordHeaderLen+n > len(d) {
			return
		}
		body := d[recordHeaderLen : recordHeaderLen+n]
		d = d[recordHeaderLen+n:]
		// Later epochs are encrypted; only the epoch-0 flight is readable.
		if contentType != contentTypeHandshake || epoch != 0 {
			continue
		}
		s.parseHandshakeRecord(dir, body)
	}
}

// parseHandshakeRecord walks the handshake messages (or fragments) of one
// record; a record may carry several (RFC 6347 4.2.3).
func (s *Sniffer) parseHandshakeRecord(dir direction, b []byte) {
	for len(b) >= handshakeHeaderLen && !s.finished.Load() {
		typ := b[0]
		length := uint24(b[1:4])
		seq := binary.BigEndian.Uint16(b[4:6])
		off := uint24(b[6:9])
		fragLen := uint24(b[9:12])
		if handshakeHeaderLen+fragLen > len(b) {
			return
		}
		frag := b[handshakeHeaderLen : handshakeHeaderLen+fragLen]
		b = b[handshakeHeaderLen+fragLen:]
		if off+fragLen > length {
			continue
		}
		var slot int
		switch typ {
		case handshakeTypeClientHello:
			slot = 0
		case handshakeTypeServerHello:
			slot = 1
		default:
			continue
		}
		if off == 0 && fragLen == length {
			s.handleMessage(dir, typ, frag)
			continue
		}
		if msg, ok := s.hello[dir].asm[slot].add(seq, length, off, frag); ok {
			s.handleMessage(dir, typ, msg)
		}
	}
}

func uint24(b []byte) int { return int(b[0])<<16 | int(b[1])<<8 | int(b[2]) }

// assembler reassembles one fragmented handshake message (bounded by
// maxHelloLen). Overlapping and repeated fragments are fine as long as they
// agree; a disagreement restarts it.
type assembler struct {
	active bool
	seq    uint16
	length int
	buf    []byte
	have   []uint64 // bitmap of filled bytes
	filled int
}

// add stores a fragment and returns the whole message once complete. The
// returned slice is valid until the next add.
func (a *assembler) add(seq uint16, length, off int, frag []byte) ([]byte, bool) {
	if length > maxHelloLen || length == 0 {
		return nil, false
	}
	if a.active && seq < a.seq {
		return nil, false // a stale retransmission of an earlier message
	}
	if !a.active || seq != a.seq || length != a.length {
		a.reset(seq, length)
	}
	for i, c := range frag {
		p := off + i
		w, bit := p/64, uint64(1)<<(p%64)
		if a.have[w]&bit != 0 {
			if a.buf[p] != c {
				a.reset(seq, length)
				return nil, false
			}
			continue
		}
		a.have[w] |= bit
		a.buf[p] = c
		a.filled++
	}
	if a.filled < a.length {
		return nil, false
	}
	a.active = false
	return a.buf[:a.length], true
}

func (a *assembler) reset(seq uint16, length int) {
	if a.buf == nil {
		a.buf = make([]byte, maxHelloLen)
		a.have = make([]uint64, maxHelloLen/64)
	}
	clear(a.have)
	a.active, a.seq, a.length, a.filled = true, seq, length, 0
}

// handleMessage takes one complete ClientHello or ServerHello body.
func (s *Sniffer) handleMessage(dir direction, typ byte, body []byte) {
	switch typ {
	case handshakeTypeClientHello:
		// client_version(2) random(32) ...; the random is all we need.
		if len(body) < 2+randomLen {
			return
		}
		var r [randomLen]byte
		copy(r[:], body[2:2+randomLen])
		h := &s.hello[dir]
		if h.clientRandomSeen && h.clientRandom != r {
			// RFC 6347 4.2.1: a client keeps its random across
			// HelloVerifyRequest; two randoms mean two handshakes (or an
			// injected one) and we cannot tell which the key log is for.
			s.giveUp()
			return
		}
		h.clientRandom, h.clientRandomSeen = r, true
	case handshakeTypeServerHello:
		if s.serverHelloSeen {
			if dir == s.serverDir && bytes.Equal(body, s.serverHello) {
				return // a retransmitted flight
			}
			s.giveUp()
			return
		}
		sh, ok := parseServerHello(body)
		if !ok {
			s.giveUp()
			return
		}
		s.serverHelloSeen = true
		s.serverDir = dir
		s.serverHello = bytes.Clone(body)
		s.serverRandom = sh.random
		s.hashFn = prfHash(sh.cipherSuite)
		s.profile = sh.profile
	}
}

type serverHello struct {
	random      [randomLen]byte
	cipherSuite uint16
	profile     srtp.ProtectionProfile
}

// parseServerHello reads what key derivation needs from a ServerHello body
// (RFC 5246 7.4.1.3, RFC 6347 4.2.1) and rejects anything it cannot use:
// not DTLS 1.2, a cipher suite of unknown PRF, no or an unsupported
// use_srtp (RFC 5764 4.1.1: exactly one profile), an MKI.
func parseServerHello(b []byte) (serverHello, bool) {
	var sh serverHello
	if len(b) < 2+randomLen+1 || binary.BigEndian.Uint16(b) != versionDTLS12 {
		return sh, false
	}
	copy(sh.random[:], b[2:2+randomLen])
	p := 2 + randomLen
	sidLen := int(b[p])
	p++
	if sidLen > 32 || p+sidLen+3 > len(b) {
		return sh, false
	}
	p += sidLen
	sh.cipherSuite = binary.BigEndian.Uint16(b[p:])
	p += 3 // cipher_suite, compression_method
	if prfHash(sh.cipherSuite) == nil {
		return sh, false
	}
	if p+2 > len(b) {
		return sh, false // no extensions, so no use_srtp
	}
	extLen := int(binary.BigEndian.Uint16(b[p:]))
	p += 2
	if p+extLen != len(b) {
		return sh, false
	}
	ext := b[p:]
	found := false
	for len(ext) > 0 {
		if len(ext) < 4 {
			return sh, false
		}
		typ := binary.BigEndian.Uint16(ext)
		n := int(binary.BigEndian.Uint16(ext[2:]))
		if 4+n > len(ext) {
			return sh, false
		}
		data := ext[4 : 4+n]
		ext = ext[4+n:]
		if typ != extensionUseSRTP {
			continue
		}
		if found {
			return sh, false
		}
		found = true
		// SRTPProtectionProfiles (2-byte length, exactly one), srtp_mki<0..255>.
		// A non-empty MKI would prefix every SRTP packet's tag, which the
		// caller's Context is not set up for: refuse rather than guess.
		if len(data) != 2+2+1 || binary.BigEndian.Uint16(data) != 2 || data[4] != 0 {
			return sh, false
		}
		prof, ok := srtpProfile(binary.BigEndian.Uint16(data[2:]))
		if !ok {
			return sh, false
		}
		sh.profile = prof
	}
	return sh, found
}
