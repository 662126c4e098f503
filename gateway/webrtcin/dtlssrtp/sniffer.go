// Package dtlssrtp recovers the SRTP master keys of a DTLS-SRTP association
// (RFC 5764) from outside the DTLS stack: it watches the association's
// plaintext handshake datagrams and the NSS key-log line the stack writes.
//
// pion/webrtc v3 does not export the SRTP keys it negotiates, but it can
// write "CLIENT_RANDOM <client random> <master secret>" lines
// (SettingEngine.SetDTLSKeyLogWriter). The client random, the server random,
// the negotiated cipher suite (which fixes the PRF hash) and the negotiated
// SRTP protection profile travel in clear in the epoch-0 ClientHello and
// ServerHello. With them the DTLS-SRTP exporter (RFC 5705 over the TLS 1.2
// PRF, label "EXTRACTOR-dtls_srtp") yields the same keys the stack uses.
//
// Anything unexpected (an unknown cipher suite or profile, conflicting
// handshake messages, a key-log line for another association) leaves Keys
// false: the caller then keeps using the stack's own SRTP path. Nothing here
// ever guesses.
package dtlssrtp

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"hash"
	"sync"
	"sync/atomic"

	"github.com/pion/srtp/v2"
)

// Keys are the SRTP master keys and salts of one association.
type Keys struct {
	Profile srtp.ProtectionProfile
	// RemoteKey and RemoteSalt are what the peer encrypts its SRTP with:
	// use them to decrypt the peer's packets.
	RemoteKey, RemoteSalt []byte
	// LocalKey and LocalSalt are what our side encrypts with.
	LocalKey, LocalSalt []byte
}

func (k *Keys) clone() Keys {
	return Keys{
		Profile:    k.Profile,
		RemoteKey:  bytes.Clone(k.RemoteKey),
		RemoteSalt: bytes.Clone(k.RemoteSalt),
		LocalKey:   bytes.Clone(k.LocalKey),
		LocalSalt:  bytes.Clone(k.LocalSalt),
	}
}

const (
	randomLen       = 32
	masterSecretLen = 48
	// maxKeyLogEntries bounds how many distinct key-log lines are kept while
	// waiting for the handshake messages; pion writes one per handshake (a
	// few identical ones at most), so a handful is plenty.
	maxKeyLogEntries = 4
	// maxKeyLogLine bounds a buffered partial key-log line. A TLS 1.2 line is
	// 176 bytes.
	maxKeyLogLine = 512
)

// Sniffer watches one DTLS association: its datagrams both ways and its key
// log. The zero value is ready to use; it is safe for concurrent use.
//
// Once the keys are known (or the Sniffer has given up), Inbound and Outbound
// cost one atomic load; datagrams that are not DTLS cost one byte compare.
type Sniffer struct {
	// finished is set once keys were derived or the association cannot give
	// keys; it lets the per-datagram path skip the mutex.
	finished atomic.Bool

	mu   sync.Mutex
	keys *Keys // guarded by mu; set once

	// Handshake state, guarded by mu, released once finished.
	hello [2]helloState // indexed by direction

	serverHelloSeen bool
	serverDir       direction
	serverHello     []byte // raw body, to recognise retransmissions
	serverRandom    [randomLen]byte
	hashFn          func() hash.Hash
	profile         srtp.ProtectionProfile

	keyLog     [maxKeyLogEntries]keyLogEntry
	keyLogN    int
	keyLogNext int
	line       []byte
	lineDrop   bool // the current line overflowed; skip to its newline
}

type direction int

const (
	dirInbound direction = iota
	dirOutbound
)

// helloState is what one direction's handshake contributed.
type helloState struct {
	clientRandom     [randomLen]byte
	clientRandomSeen bool
	// Reassembly of fragmented ClientHello/ServerHello messages.
	asm [2]assembler // [0] ClientHello, [1] ServerHello
}

type keyLogEntry struct {
	clientRandom [randomLen]byte
	masterSecret [masterSecretLen]byte
}

// Inbound is called with every datagram received from the peer, of any kind.
func (s *Sniffer) Inbound(datagram []byte) { s.observe(dirInbound, datagram) }

// Outbound is called with every datagram sent to the peer, of any kind.
func (s *Sniffer) Outbound(datagram []byte) { s.observe(dirOutbound, datagram) }

func (s *Sniffer) observe(dir direction, datagram []byte) {
	// RFC 7983: DTLS datagrams start with a byte in 20..63.
	if len(datagram) == 0 || datagram[0] < 20 || datagram[0] > 63 {
		return
	}
	if s.finished.Load() {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.finished.Load() {
		return
	}
	s.parseDatagram(dir, datagram)
	s.tryDerive()
}

// Keys returns the association's SRTP keys once both the key-log line and the
// handshake messages have been seen. The returned slices are the caller's.
func (s *Sniffer) Keys() (Keys, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.keys == nil {
		return Keys{}, false
	}
	return s.keys.clone(), true
}

// giveUp stops watching: this association will never give keys.
func (s *Sniffer) giveUp() {
	s.release()
	s.finished.Store(true)
}

// release drops the handshake state and wipes any master secret held.
func (s *Sniffer) release() {
	for i := range s.keyLog {
		clear(s.keyLog[i].masterSecret[:])
	}
	s.keyLogN = 0
	clear(s.line)
	s.line = nil
	s.hello = [2]helloState{}
	s.serverHello = nil
}

// Write accepts the DTLS stack's NSS key log (io.Writer for
// SetDTLSKeyLogWriter). It never fails: a key-log problem must not disturb
// the handshake. Malformed lines are ignored.
func (s *Sniffer) Write(p []byte) (int, error) {
	n := len(p)
	if s.finished.Load() {
		return n, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.finished.Load() {
		return n, nil
	}
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		chunk := p
		if i >= 0 {
			chunk = p[:i]
		}
		if !s.lineDrop {
			if len(s.line)+len(chunk) > maxKeyLogLine {
				s.lineDrop = true
				clear(s.line)
				s.line = s.line[:0]
			} else {
				s.line = append(s.line, chunk...)
			}
		}
		if i < 0 {
			break
		}
		if !s.lineDrop {
			s.keyLogLine(s.line)
		}
		clear(s.line)
		s.line = s.line[:0]
		s.lineDrop = false
		p = p[i+1:]
	}
	s.tryDerive()
	return n, nil
}

var keyLogLabel = []byte("CLIENT_RANDOM ")

// keyLogLine records one complete line (without its newline).
func (s *Sniffer) keyLogLine(line []byte) {
	line = bytes.TrimSuffix(line, []byte("\r"))
	rest, ok := bytes.CutPrefix(line, keyLogLabel)
	if !ok || len(rest) != 2*randomLen+1+2*masterSecretLen || rest[2*randomLen] != ' ' {
		return
	}
	var e keyLogEntry
	if !decodeHex(e.clientRandom[:], rest[:2*randomLen]) ||
		!decodeHex(e.masterSecret[:], rest[2*randomLen+1:]) {
		clear(e.masterSecret[:])
		return
	}
	for i := 0; i < s.keyLogN; i++ {
		if s.keyLog[i].clientRandom == e.clientRandom {
			// A repeat for the same handshake; a different secret for the
			// same random would mean we cannot tell which is right.
			if subtle.ConstantTimeCompare(s.keyLog[i].masterSecret[:], e.masterSecret[:]) != 1 {
				clear(e.masterSecret[:])
				s.giveUp()
			}
			return
		}
	}
	if s.keyLogN < maxKeyLogEntries {
		s.keyLog[s.keyLogN] = e
		s.keyLogN++
	} else {
		// Replace the oldest: the newest handshake is the one that counts.
		clear(s.keyLog[s.keyLogNext].masterSecret[:])
		s.keyLog[s.keyLogNext] = e
		s.keyLogNext = (s.keyLogNext + 1) % maxKeyLogEntries
	}
	clear(e.masterSecret[:])
}

func decodeHex(dst, src []byte) bool {
	if len(src) != 2*len(dst) {
		return false
	}
	for i := range dst {
		hi, ok1 := fromHexChar(src[2*i])
		lo, ok2 := fromHexChar(src[2*i+1])
		if !ok1 || !ok2 {
			return false
		}
		dst[i] = hi<<4 | lo
	}
	return true
}

func fromHexChar(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// tryDerive derives the keys once the ServerHello, the matching ClientHello
// and the matching key-log line are all known.
func (s *Sniffer) tryDerive() {
	if s.finished.Load() || !s.serverHelloSeen {
		return
	}
	// The ClientHello travels the other way from the ServerHello.
	ch := &s.hello[1-s.serverDir]
	if !ch.clientRandomSeen {
		return
	}
	var secret *keyLogEntry
	for i := 0; i < s.keyLogN; i++ {
		if s.keyLog[i].clientRandom == ch.clientRandom {
			secret = &s.keyLog[i]
			break
		}
	}
	if secret == nil {
		return
	}
	keyLen, err := s.profile.KeyLen()
	if err != nil {
		s.giveUp()
		return
	}
	saltLen, err := s.profile.SaltLen()
	if err != nil {
		s.giveUp()
		return
	}
	material := exportDTLSSRTP(s.hashFn, secret.masterSecret[:], ch.clientRandom[:], s.serverRandom[:], 2*(keyLen+saltLen))
	// RFC 5764 4.2: client_write_key | server_write_key | client_write_salt | server_write_salt.
	clientKey := material[:keyLen]
	serverKey := material[keyLen : 2*keyLen]
	clientSalt := material[2*keyLen : 2*keyLen+saltLen]
	serverSalt := material[2*keyLen+saltLen:]
	k := &Keys{Profile: s.profile}
	if s.serverDir == dirInbound {
		// The peer sent the ServerHello: it is the DTLS server.
		k.RemoteKey, k.RemoteSalt = serverKey, serverSalt
		k.LocalKey, k.LocalSalt = clientKey, clientSalt
	} else {
		k.RemoteKey, k.RemoteSalt = clientKey, clientSalt
		k.LocalKey, k.LocalSalt = serverKey, serverSalt
	}
	s.keys = k
	s.giveUp()
}

// exportDTLSSRTP is the RFC 5705 exporter without context over the TLS 1.2
// PRF (RFC 5246 5): P_hash(master_secret, label | client_random | server_random).
func exportDTLSSRTP(h func() hash.Hash, masterSecret, clientRandom, serverRandom []byte, n int) []byte {
	const label = "EXTRACTOR-dtls_srtp"
	seed := make([]byte, 0, len(label)+2*randomLen)
	seed = append(seed, label...)
	seed = append(seed, clientRandom...)
	seed = append(seed, serverRandom...)
	return pHash(h, masterSecret, seed, n)
}

func pHash(h func() hash.Hash, secret, seed []byte, n int) []byte {
	mac := hmac.New(h, secret)
	mac.Write(seed)
	a := mac.Sum(nil) // A(1)
	out := make([]byte, 0, n+mac.Size())
	for len(out) < n {
		mac.Reset()
		mac.Write(a)
		mac.Write(seed)
		out = mac.Sum(out)
		mac.Reset()
		mac.Write(a)
		a = mac.Sum(a[:0])
	}
	return out[:n:n]
}

// prfHash maps the TLS 1.2 cipher suites pion/dtls v2 implements to their PRF
// hash (pion/dtls v2.2.12 internal/ciphersuite HashFunc). Anything else is
// unknown and gives no keys.
func prfHash(suite uint16) func() hash.Hash {
	switch suite {
	case 0xc02c, // TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384
		0xc030: // TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384
		return sha512.New384
	case 0xc02b, // TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
		0xc02f, // TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
		0xc0ac, // TLS_ECDHE_ECDSA_WITH_AES_128_CCM
		0xc0ae, // TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8
		0xc00a, // TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA (TLS 1.2 PRF is SHA-256)
		0xc014, // TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA
		0xc0a4, // TLS_PSK_WITH_AES_128_CCM
		0xc0a8, // TLS_PSK_WITH_AES_128_CCM_8
		0xc0a9, // TLS_PSK_WITH_AES_256_CCM_8
		0x00a8, // TLS_PSK_WITH_AES_128_GCM_SHA256
		0x00ae, // TLS_PSK_WITH_AES_128_CBC_SHA256
		0xc037: // TLS_ECDHE_PSK_WITH_AES_128_CBC_SHA256
		return sha256.New
	}
	return nil
}

// srtpProfile maps a use_srtp profile (RFC 5764 4.1.2, RFC 7714 14.2) to the
// srtp package's; pion/srtp shares the IANA numbering but not every profile
// is implemented there.
func srtpProfile(id uint16) (srtp.ProtectionProfile, bool) {
	switch p := srtp.ProtectionProfile(id); p {
	case srtp.ProtectionProfileAes128CmHmacSha1_80,
		srtp.ProtectionProfileAes128CmHmacSha1_32,
		srtp.ProtectionProfileAeadAes128Gcm,
		srtp.ProtectionProfileAeadAes256Gcm:
		return p, true
	}
	return 0, false
}
