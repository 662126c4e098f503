package dtlssrtp

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"testing"

	"github.com/pion/srtp/v2"
)

// Crafted handshakes check the parser's refusals; the derivation itself is
// checked against pion in sniffer_test.go.

func record(epoch uint16, body []byte) []byte {
	r := []byte{contentTypeHandshake, 0xfe, 0xfd, byte(epoch >> 8), byte(epoch), 0, 0, 0, 0, 0, 1, 0, 0}
	binary.BigEndian.PutUint16(r[11:], uint16(len(body)))
	return append(r, body...)
}

func handshakeMsg(typ byte, seq uint16, body []byte, off, n int) []byte {
	h := make([]byte, handshakeHeaderLen)
	h[0] = typ
	put24(h[1:], len(body))
	binary.BigEndian.PutUint16(h[4:], seq)
	put24(h[6:], off)
	put24(h[9:], n)
	return append(h, body[off:off+n]...)
}

func put24(b []byte, v int) { b[0], b[1], b[2] = byte(v>>16), byte(v>>8), byte(v) }

func clientHelloBody(random byte) []byte {
	b := []byte{0xfe, 0xfd}
	b = append(b, bytes.Repeat([]byte{random}, randomLen)...)
	return append(b, 0, 0, 0, 2, 0xc0, 0x2b, 1, 0) // no session, no cookie, one suite, null compression
}

type shOpts struct {
	version  uint16
	suite    uint16
	profiles []uint16
	mki      []byte
	noSRTP   bool
	twoSRTP  bool
	random   byte
	trailing bool
}

func serverHelloBody(o shOpts) []byte {
	b := binary.BigEndian.AppendUint16(nil, o.version)
	b = append(b, bytes.Repeat([]byte{o.random}, randomLen)...)
	b = append(b, 0) // session id
	b = binary.BigEndian.AppendUint16(b, o.suite)
	b = append(b, 0)
	var ext []byte
	ext = append(ext, 0, 23, 0, 0) // extended_master_secret
	useSRTP := binary.BigEndian.AppendUint16(nil, uint16(2*len(o.profiles)))
	for _, p := range o.profiles {
		useSRTP = binary.BigEndian.AppendUint16(useSRTP, p)
	}
	useSRTP = append(useSRTP, byte(len(o.mki)))
	useSRTP = append(useSRTP, o.mki...)
	n := 1
	if o.noSRTP {
		n = 0
	} else if o.twoSRTP {
		n = 2
	}
	for range n {
		ext = binary.BigEndian.AppendUint16(ext, extensionUseSRTP)
		ext = binary.BigEndian.AppendUint16(ext, uint16(len(useSRTP)))
		ext = append(ext, useSRTP...)
	}
	b = binary.BigEndian.AppendUint16(b, uint16(len(ext)))
	b = append(b, ext...)
	if o.trailing {
		b = append(b, 0)
	}
	return b
}

func goodSH() shOpts {
	return shOpts{version: versionDTLS12, suite: 0xc02b, profiles: []uint16{1}, random: 0xbb}
}

func keyLogFor(random byte) []byte {
	return []byte("CLIENT_RANDOM " + hex.EncodeToString(bytes.Repeat([]byte{random}, randomLen)) + " " + hex.EncodeToString(bytes.Repeat([]byte{0x5e}, masterSecretLen)) + "\n")
}

// crafted feeds an outbound ClientHello, inbound ServerHello datagrams and a
// key log.
func crafted(sh ...[]byte) *Sniffer {
	s := &Sniffer{}
	ch := clientHelloBody(0xaa)
	s.Outbound(record(0, handshakeMsg(handshakeTypeClientHello, 0, ch, 0, len(ch))))
	for _, d := range sh {
		s.Inbound(d)
	}
	_, _ = s.Write(keyLogFor(0xaa))
	return s
}

func shDatagram(o shOpts) []byte {
	b := serverHelloBody(o)
	return record(0, handshakeMsg(handshakeTypeServerHello, 0, b, 0, len(b)))
}

func TestCraftedServerHello(t *testing.T) {
	k, ok := crafted(shDatagram(goodSH())).Keys()
	if !ok {
		t.Fatal("control: no keys from a good crafted handshake")
	}
	// Known-answer: the exporter output for these inputs (TLS 1.2 PRF
	// SHA-256), computed independently with the reference P_hash below.
	want := refPHash(t, bytes.Repeat([]byte{0x5e}, masterSecretLen),
		append(append([]byte("EXTRACTOR-dtls_srtp"), bytes.Repeat([]byte{0xaa}, 32)...), bytes.Repeat([]byte{0xbb}, 32)...), 60)
	if k.Profile != srtp.ProtectionProfileAes128CmHmacSha1_80 ||
		!bytes.Equal(k.LocalKey, want[0:16]) || !bytes.Equal(k.RemoteKey, want[16:32]) ||
		!bytes.Equal(k.LocalSalt, want[32:46]) || !bytes.Equal(k.RemoteSalt, want[46:60]) {
		t.Errorf("keys %+v, want split of %x", k, want)
	}

	for name, o := range map[string]func(*shOpts){
		"dtls1.0":          func(o *shOpts) { o.version = 0xfeff },
		"unknown suite":    func(o *shOpts) { o.suite = 0x1301 },
		"unknown profile":  func(o *shOpts) { o.profiles = []uint16{5} },
		"two profiles":     func(o *shOpts) { o.profiles = []uint16{1, 7} },
		"no profile":       func(o *shOpts) { o.profiles = nil },
		"mki":              func(o *shOpts) { o.mki = []byte{1, 2} },
		"no use_srtp":      func(o *shOpts) { o.noSRTP = true },
		"use_srtp twice":   func(o *shOpts) { o.twoSRTP = true },
		"trailing garbage": func(o *shOpts) { o.trailing = true },
	} {
		sh := goodSH()
		o(&sh)
		if _, ok := crafted(shDatagram(sh)).Keys(); ok {
			t.Errorf("%s: keys from an unusable ServerHello", name)
		}
	}

	// A retransmitted ServerHello is fine; a different second one is not.
	if _, ok := crafted(shDatagram(goodSH()), shDatagram(goodSH())).Keys(); !ok {
		t.Error("retransmitted ServerHello: no keys")
	}
	other := goodSH()
	other.random = 0xcc
	if _, ok := crafted(shDatagram(goodSH()), shDatagram(other)).Keys(); ok {
		t.Error("keys despite two different ServerHellos")
	}
	// Epoch 1 records are not parsed.
	b := serverHelloBody(goodSH())
	if _, ok := crafted(record(1, handshakeMsg(handshakeTypeServerHello, 0, b, 0, len(b)))).Keys(); ok {
		t.Error("keys from an epoch-1 ServerHello")
	}
	// Several records in one datagram, the ServerHello in three fragments
	// spread over two datagrams, with a truncated record at the end.
	n := len(b)
	d1 := append(record(0, handshakeMsg(handshakeTypeServerHello, 0, b, 0, 10)), record(0, handshakeMsg(handshakeTypeServerHello, 0, b, 30, n-30))...)
	d2 := append(record(0, handshakeMsg(handshakeTypeServerHello, 0, b, 5, 30)), 22, 0xfe, 0xfd, 0, 0)
	if k, ok := crafted(d1, d2).Keys(); !ok || !bytes.Equal(k.RemoteKey, want[16:32]) {
		t.Errorf("fragmented ServerHello: keys %v %x", ok, k.RemoteKey)
	}
	// A fragmented ServerHello declaring more than the reassembly bound.
	big := make([]byte, maxHelloLen+1)
	copy(big, b)
	if _, ok := crafted(record(0, handshakeMsg(handshakeTypeServerHello, 0, big, 0, 100))).Keys(); ok {
		t.Error("keys from an over-long fragment")
	}
}

func TestConflictingClientHellos(t *testing.T) {
	s := &Sniffer{}
	for _, r := range []byte{0xaa, 0xab} {
		ch := clientHelloBody(r)
		s.Outbound(record(0, handshakeMsg(handshakeTypeClientHello, 0, ch, 0, len(ch))))
	}
	s.Inbound(shDatagram(goodSH()))
	_, _ = s.Write(keyLogFor(0xaa))
	_, _ = s.Write(keyLogFor(0xab))
	if _, ok := s.Keys(); ok {
		t.Error("keys despite two ClientHello randoms")
	}
}

// refPHash is RFC 5246's P_hash written plainly (HMAC over A(i) | seed).
func refPHash(t *testing.T, secret, seed []byte, n int) []byte {
	t.Helper()
	var out []byte
	a := hmacSHA256(secret, seed)
	for len(out) < n {
		out = append(out, hmacSHA256(secret, append(append([]byte{}, a...), seed...))...)
		a = hmacSHA256(secret, a)
	}
	return out[:n]
}

func hmacSHA256(key, msg []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write(msg)
	return m.Sum(nil)
}
