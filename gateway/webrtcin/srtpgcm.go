package webrtcin

import (
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"errors"
	"fmt"
)

// gcmOpener decrypts SRTP under AEAD_AES_128_GCM and AEAD_AES_256_GCM
// (RFC 7714), the profiles browsers and pion negotiate, for the fast path.
// pion/srtp's Context does the same but allocates its IV per packet (a
// stack array passed through the AEAD interface) and keeps its own
// rollover state; the fast path has the extended sequence number already
// (its replay window). The HMAC-SHA1 profiles stay with pion's Context.
type gcmOpener struct {
	aead cipher.AEAD
	salt [12]byte
	iv   [12]byte // scratch, here so the AEAD call does not move it to the heap
}

// SRTP key derivation labels (RFC 3711 §4.3.1).
const (
	labelSRTPEncryption = 0x00
	labelSRTPSalt       = 0x02
)

var errSRTPPacket = errors.New("srtp: malformed RTP packet")

func newGCMOpener(masterKey, masterSalt []byte) (*gcmOpener, error) {
	if len(masterSalt) != 12 {
		return nil, fmt.Errorf("srtp gcm: master salt of %d bytes, want 12", len(masterSalt))
	}
	key, err := srtpKDF(masterKey, masterSalt, labelSRTPEncryption, len(masterKey))
	if err != nil {
		return nil, err
	}
	salt, err := srtpKDF(masterKey, masterSalt, labelSRTPSalt, 12)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("srtp gcm: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("srtp gcm: %w", err)
	}
	o := &gcmOpener{aead: aead}
	copy(o.salt[:], salt)
	return o, nil
}

// srtpKDF is SRTP's AES-CM key derivation with a key derivation rate of
// 0 (RFC 3711 §4.3.1 and §4.3.3; RFC 7714 §11 keeps it for GCM): the
// master salt with the label at byte 7, AES-CM keystream from it.
func srtpKDF(masterKey, masterSalt []byte, label byte, n int) ([]byte, error) {
	block, err := aes.NewCipher(masterKey)
	if err != nil {
		return nil, fmt.Errorf("srtp kdf: %w", err)
	}
	var in [16]byte
	copy(in[:14], masterSalt)
	in[7] ^= label
	out := make([]byte, (n+15)/16*16)
	for i := 0; i < len(out); i += 16 {
		binary.BigEndian.PutUint16(in[14:], uint16(i/16))
		block.Encrypt(out[i:i+16], in[:])
	}
	return out[:n], nil
}

// rtpHeaderLen is the length of b's RTP header: fixed part, CSRCs and
// header extension.
func rtpHeaderLen(b []byte) (int, error) {
	if len(b) < 12 {
		return 0, errSRTPPacket
	}
	n := 12 + 4*int(b[0]&0x0f)
	if b[0]&0x10 != 0 {
		if len(b) < n+4 {
			return 0, errSRTPPacket
		}
		n += 4 + 4*int(binary.BigEndian.Uint16(b[n+2:]))
	}
	if len(b) < n {
		return 0, errSRTPPacket
	}
	return n, nil
}

// open authenticates and decrypts pkt, whose packet index has rollover
// counter roc, into dst (which must not overlap pkt); it returns the
// plain RTP packet.
func (o *gcmOpener) open(dst, pkt []byte, roc uint32) ([]byte, error) {
	hl, err := rtpHeaderLen(pkt)
	if err != nil {
		return nil, err
	}
	tag := o.aead.Overhead()
	if len(pkt) < hl+tag || cap(dst) < len(pkt)-tag {
		return nil, errSRTPPacket
	}
	// RFC 7714 §8.1: 0x0000 || SSRC || ROC || SEQ, XOR the session salt.
	o.iv = [12]byte{}
	copy(o.iv[2:6], pkt[8:12])
	binary.BigEndian.PutUint32(o.iv[6:], roc)
	copy(o.iv[10:], pkt[2:4])
	for i := range o.iv {
		o.iv[i] ^= o.salt[i]
	}
	dst = append(dst[:0], pkt[:hl]...)
	if _, err := o.aead.Open(dst[hl:hl], o.iv[:], pkt[hl:], pkt[:hl]); err != nil {
		return nil, err
	}
	return dst[:len(pkt)-tag], nil
}
