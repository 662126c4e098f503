package dtlssrtp

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"strings"
	"testing"

	"github.com/pion/dtls/v2"
	"github.com/pion/rtp"
	"github.com/pion/srtp/v2"
)

var (
	testProfiles = []dtls.SRTPProtectionProfile{
		dtls.SRTP_AES128_CM_HMAC_SHA1_80,
		dtls.SRTP_AES128_CM_HMAC_SHA1_32,
		dtls.SRTP_AEAD_AES_128_GCM,
		dtls.SRTP_AEAD_AES_256_GCM,
	}
	testSuites = []dtls.CipherSuiteID{
		dtls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
		dtls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	}
)

// TestKeysMatchExporter runs real handshakes and compares the sniffed keys
// with what each side's own DTLS exporter gives.
func TestKeysMatchExporter(t *testing.T) {
	for _, weAreClient := range []bool{true, false} {
		for _, profile := range testProfiles {
			for _, suite := range testSuites {
				for _, ems := range []dtls.ExtendedMasterSecretType{dtls.RequireExtendedMasterSecret, dtls.DisableExtendedMasterSecret} {
					name := fmt.Sprintf("client=%v/%v/%v/ems=%v", weAreClient, srtp.ProtectionProfile(profile), suite, ems)
					t.Run(name, func(t *testing.T) {
						s := &Sniffer{}
						h := handshake(t, handshakeOpts{weAreClient: weAreClient, profile: profile, suite: suite, ems: ems, sniffer: s, keyLog: s})
						got, ok := s.Keys()
						if !ok {
							t.Fatal("no keys after a complete handshake")
						}
						ours := exported(t, h.ours, weAreClient)
						assertKeys(t, got, ours)
						// And from the peer's point of view, mirrored.
						peer := exported(t, h.peer, !weAreClient)
						if !bytes.Equal(got.RemoteKey, peer.LocalKey) || !bytes.Equal(got.RemoteSalt, peer.LocalSalt) {
							t.Errorf("remote key/salt %x/%x, peer's local %x/%x", got.RemoteKey, got.RemoteSalt, peer.LocalKey, peer.LocalSalt)
						}
						wantKey, _ := got.Profile.KeyLen()
						wantSalt, _ := got.Profile.SaltLen()
						if len(got.RemoteKey) != wantKey || len(got.RemoteSalt) != wantSalt {
							t.Errorf("key/salt lengths %d/%d, want %d/%d", len(got.RemoteKey), len(got.RemoteSalt), wantKey, wantSalt)
						}
					})
				}
			}
		}
	}
}

// TestDecryptPeerSRTP encrypts with a Context built from the peer's own
// exported keys and decrypts with one built from the sniffed keys, both ways.
func TestDecryptPeerSRTP(t *testing.T) {
	for _, weAreClient := range []bool{true, false} {
		for _, profile := range []dtls.SRTPProtectionProfile{dtls.SRTP_AES128_CM_HMAC_SHA1_80, dtls.SRTP_AEAD_AES_128_GCM} {
			t.Run(fmt.Sprintf("client=%v/%v", weAreClient, srtp.ProtectionProfile(profile)), func(t *testing.T) {
				s := &Sniffer{}
				h := handshake(t, handshakeOpts{weAreClient: weAreClient, profile: profile, suite: dtls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, ems: dtls.RequestExtendedMasterSecret, sniffer: s, keyLog: s})
				k, ok := s.Keys()
				if !ok {
					t.Fatal("no keys")
				}
				var cfg srtp.Config
				cfg.Profile = srtp.ProtectionProfile(profile)
				peerState := h.peer.ConnectionState()
				if err := cfg.ExtractSessionKeysFromDTLS(&peerState, !weAreClient); err != nil {
					t.Fatal(err)
				}
				peerEnc, err := srtp.CreateContext(cfg.Keys.LocalMasterKey, cfg.Keys.LocalMasterSalt, cfg.Profile)
				if err != nil {
					t.Fatal(err)
				}
				ourDec, err := srtp.CreateContext(k.RemoteKey, k.RemoteSalt, k.Profile)
				if err != nil {
					t.Fatal(err)
				}
				roundTrip(t, peerEnc, ourDec, 0x11223344)

				ourEnc, err := srtp.CreateContext(k.LocalKey, k.LocalSalt, k.Profile)
				if err != nil {
					t.Fatal(err)
				}
				peerDec, err := srtp.CreateContext(cfg.Keys.RemoteMasterKey, cfg.Keys.RemoteMasterSalt, cfg.Profile)
				if err != nil {
					t.Fatal(err)
				}
				roundTrip(t, ourEnc, peerDec, 0x55667788)
			})
		}
	}
}

func roundTrip(t *testing.T, enc, dec *srtp.Context, ssrc uint32) {
	t.Helper()
	payload := []byte("castbridge sniffed srtp payload")
	pkt := &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: 4242, Timestamp: 90000, SSRC: ssrc}, Payload: payload}
	plain, err := pkt.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	cipher, err := enc.EncryptRTP(nil, plain, nil)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(cipher, payload) {
		t.Fatal("payload not encrypted")
	}
	got, err := dec.DecryptRTP(nil, cipher, nil)
	if err != nil {
		t.Fatalf("decrypt with sniffed keys: %v", err)
	}
	if !bytes.Equal(got, plain) {
		t.Fatalf("decrypted %x, want %x", got, plain)
	}
}

// recordHandshake runs a handshake with no live Sniffer and returns our
// side's datagrams and key log for replays.
func recordHandshake(t testing.TB, o handshakeOpts) ([]event, []byte, Keys) {
	t.Helper()
	var log lockedBuffer
	o.keyLog = &log
	h := handshake(t, o)
	want := exported(t, h.ours, o.weAreClient)
	// Close now: pion's goroutines left running would add coverage noise to
	// the fuzzer's workers, which record handshakes for their seeds.
	h.close()
	return h.tap.recorded(), log.Bytes(), want
}

func defaultOpts(weAreClient bool) handshakeOpts {
	return handshakeOpts{weAreClient: weAreClient, profile: dtls.SRTP_AES128_CM_HMAC_SHA1_80, suite: dtls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, ems: dtls.RequestExtendedMasterSecret}
}

func TestNoKeysWithoutMatchingKeyLog(t *testing.T) {
	for _, weAreClient := range []bool{true, false} {
		t.Run(fmt.Sprintf("client=%v", weAreClient), func(t *testing.T) {
			events, keyLog, want := recordHandshake(t, defaultOpts(weAreClient))
			if !bytes.HasPrefix(keyLog, []byte("CLIENT_RANDOM ")) || !bytes.HasSuffix(keyLog, []byte("\n")) {
				t.Fatalf("unexpected key log shape (%d bytes)", len(keyLog))
			}
			// Control: the recording does give the keys.
			if k, ok := replay(events, keyLog).Keys(); !ok {
				t.Fatal("replay with the key log gives no keys")
			} else {
				assertKeys(t, k, want)
			}
			if _, ok := replay(events, nil).Keys(); ok {
				t.Error("keys without a key-log line")
			}
			// The same line with one client-random nibble changed.
			bad := bytes.Clone(keyLog)
			i := len("CLIENT_RANDOM ") + 5
			bad[i] = "01"[bytesIndex(bad[i], '0')]
			if _, ok := replay(events, bad).Keys(); ok {
				t.Error("keys from a key-log line with another client random")
			}
			// The key log of another handshake.
			_, otherLog, _ := recordHandshake(t, defaultOpts(weAreClient))
			if _, ok := replay(events, otherLog).Keys(); ok {
				t.Error("keys from another association's key log")
			}
			// Both lines: the matching one is taken.
			k, ok := replay(events, append(bytes.Clone(otherLog), keyLog...)).Keys()
			if !ok {
				t.Fatal("no keys with the matching line among others")
			}
			assertKeys(t, k, want)
			// Handshake datagrams of only one direction give no keys either.
			var half []event
			for _, e := range events {
				if e.inbound == weAreClient { // the ServerHello's direction only
					half = append(half, e)
				}
			}
			if _, ok := replay(half, keyLog).Keys(); ok {
				t.Error("keys without the ClientHello")
			}
		})
	}
}

// bytesIndex returns 1 if c == want else 0, to flip a hex digit.
func bytesIndex(c, want byte) int {
	if c == want {
		return 1
	}
	return 0
}

func TestKeyLogPartialWritesAndOrder(t *testing.T) {
	events, keyLog, want := recordHandshake(t, defaultOpts(true))
	// Key log first, byte by byte, after an overlong and a malformed line.
	s := &Sniffer{}
	junk := strings.Repeat("x", 2*maxKeyLogLine) + "\nCLIENT_RANDOM zz 00\n"
	for _, part := range [][]byte{[]byte(junk), keyLog} {
		for i := range part {
			if n, err := s.Write(part[i : i+1]); n != 1 || err != nil {
				t.Fatalf("Write = %d, %v", n, err)
			}
		}
	}
	if _, ok := s.Keys(); ok {
		t.Fatal("keys before any datagram")
	}
	for _, e := range events {
		if e.inbound {
			s.Inbound(e.data)
		} else {
			s.Outbound(e.data)
		}
	}
	k, ok := s.Keys()
	if !ok {
		t.Fatal("no keys with the key log written first, byte by byte")
	}
	assertKeys(t, k, want)
	// Keys returns copies.
	k.RemoteKey[0] ^= 0xff
	k2, _ := s.Keys()
	assertKeys(t, k2, want)
}

// TestRetransmissionsAndFragments replays every datagram twice (retransmitted
// flights) and has the peer fragment its handshake messages.
func TestRetransmissionsAndFragments(t *testing.T) {
	for _, weAreClient := range []bool{true, false} {
		t.Run(fmt.Sprintf("client=%v", weAreClient), func(t *testing.T) {
			o := defaultOpts(weAreClient)
			o.peerMTU = 60
			events, keyLog, want := recordHandshake(t, o)
			if weAreClient && !hasFragmentedHello(events, true, handshakeTypeServerHello) {
				t.Fatal("the peer's ServerHello was not fragmented; the test would not exercise reassembly")
			}
			if !weAreClient && !hasFragmentedHello(events, true, handshakeTypeClientHello) {
				t.Fatal("the peer's ClientHello was not fragmented; the test would not exercise reassembly")
			}
			var doubled []event
			for _, e := range events {
				doubled = append(doubled, e, e)
			}
			k, ok := replay(doubled, keyLog).Keys()
			if !ok {
				t.Fatal("no keys with fragments and retransmissions")
			}
			assertKeys(t, k, want)
			// Fragments in reverse order within the peer's flight.
			rev := append([]event(nil), events...)
			for i, j := 0, len(rev)-1; i < j; i, j = i+1, j-1 {
				rev[i], rev[j] = rev[j], rev[i]
			}
			k, ok = replay(rev, keyLog).Keys()
			if !ok {
				t.Fatal("no keys with datagrams reversed")
			}
			assertKeys(t, k, want)
		})
	}
}

func hasFragmentedHello(events []event, inbound bool, typ byte) bool {
	for _, e := range events {
		if e.inbound != inbound {
			continue
		}
		d := e.data
		for len(d) >= recordHeaderLen {
			n := int(binary.BigEndian.Uint16(d[11:13]))
			if recordHeaderLen+n > len(d) {
				break
			}
			b := d[recordHeaderLen : recordHeaderLen+n]
			if d[0] == contentTypeHandshake && len(b) >= handshakeHeaderLen && b[0] == typ && uint24(b[9:12]) < uint24(b[1:4]) {
				return true
			}
			d = d[recordHeaderLen+n:]
		}
	}
	return false
}
