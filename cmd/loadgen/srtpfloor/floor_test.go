package srtpfloor

import (
	"bytes"
	"net"
	"testing"

	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
	"github.com/pion/srtp/v2"

	"github.com/castbridge/castbridge/transmux/format/mediafile"
)

// profiles are the SRTP protection profiles measured: AEAD_AES_256_GCM is
// what two pion peers (the loadgen's publishers and castbridge) negotiate,
// AES_128_GCM and AES128_CM_HMAC_SHA1_80 what browsers offer.
var profiles = []struct {
	name    string
	profile srtp.ProtectionProfile
}{
	{"aes256gcm", srtp.ProtectionProfileAeadAes256Gcm},
	{"aes128gcm", srtp.ProtectionProfileAeadAes128Gcm},
	{"aes128cm-sha1-80", srtp.ProtectionProfileAes128CmHmacSha1_80},
}

// batch is how many packets are in the socket at once: the receive buffer
// (net.core.rmem_default, ~208 KiB, ~2.3 KiB of it per 1.2 KB datagram)
// must hold them all.
const batch = 64

// testPackets packetizes testdata/video.h264 (one 5 s lap, 30 fps) as a
// WebRTC sender does: H.264 packetization mode 1 at MTU 1200, payload type
// 102, abs-send-time and transport-cc header extensions, and returns the
// RTP packets marshalled in plain text.
func testPackets(tb testing.TB) [][]byte {
	tb.Helper()
	frames, err := mediafile.ReadH264File(mediafile.TestdataPath("video.h264"))
	if err != nil {
		tb.Fatal(err)
	}
	var pl codecs.H264Payloader
	var out [][]byte
	seq := uint16(1000) // the lap never wraps: its replays keep the SRTP rollover counter at 0
	for i, f := range frames {
		var annexB []byte
		for _, n := range f.NALUs {
			annexB = append(annexB, 0, 0, 0, 1)
			annexB = append(annexB, n...)
		}
		payloads := pl.Payload(1200-12-8-4, annexB) // header, extensions
		for j, p := range payloads {
			pkt := rtp.Packet{Header: rtp.Header{
				Version: 2, PayloadType: 102, SequenceNumber: seq, Timestamp: uint32(i * 3000),
				SSRC: 0xCAFE, Marker: j == len(payloads)-1,
				Extension: true, ExtensionProfile: 0xBEDE,
			}, Payload: p}
			_ = pkt.SetExtension(2, []byte{0x12, 0x34, 0x56})
			_ = pkt.SetExtension(3, []byte{byte(seq >> 8), byte(seq)})
			raw, err := pkt.Marshal()
			if err != nil {
				tb.Fatal(err)
			}
			out = append(out, raw)
			seq++
		}
	}
	return out
}

// contexts returns an encrypting and a decrypting context for profile.
func contexts(tb testing.TB, profile srtp.ProtectionProfile) (enc, dec *srtp.Context) {
	tb.Helper()
	keyLen, err := profile.KeyLen()
	if err != nil {
		tb.Fatal(err)
	}
	saltLen, err := profile.SaltLen()
	if err != nil {
		tb.Fatal(err)
	}
	key := bytes.Repeat([]byte{0x5a}, keyLen)
	salt := bytes.Repeat([]byte{0xa5}, saltLen)
	if enc, err = srtp.CreateContext(key, salt, profile); err != nil {
		tb.Fatal(err)
	}
	if dec, err = srtp.CreateContext(key, salt, profile); err != nil {
		tb.Fatal(err)
	}
	return enc, dec
}

// encrypted returns the packets in SRTP.
func encrypted(tb testing.TB, profile srtp.ProtectionProfile) (pkts [][]byte, dec *srtp.Context) {
	tb.Helper()
	enc, dec := contexts(tb, profile)
	for _, raw := range testPackets(tb) {
		var h rtp.Header
		if _, err := h.Unmarshal(raw); err != nil {
			tb.Fatal(err)
		}
		out, err := enc.EncryptRTP(nil, raw, &h)
		if err != nil {
			tb.Fatal(err)
		}
		pkts = append(pkts, out)
	}
	return pkts, dec
}

// socketPair is a connected loopback UDP pair.
func socketPair(tb testing.TB) (tx, rx *net.UDPConn) {
	tb.Helper()
	rx, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		tb.Fatal(err)
	}
	tx, err = net.DialUDP("udp4", nil, rx.LocalAddr().(*net.UDPAddr))
	if err != nil {
		tb.Fatal(err)
	}
	_ = rx.SetReadBuffer(4 << 20) // capped by net.core.rmem_max
	tb.Cleanup(func() { _ = tx.Close(); _ = rx.Close() })
	return tx, rx
}

// BenchmarkFloor is the floor under castbridge's per-packet cost, per RTP
// packet (one op) of the test video at MTU 1200:
//
//   - udp+srtp: ReadFromUDP of one SRTP datagram from a loopback socket
//     (what pion's ICE mux does) plus DecryptRTP into a reused buffer;
//   - udp: the receive alone;
//   - srtp: the decryption alone, in memory.
//
// The sending is not timed: each batch of 64 packets is written with the
// timer stopped, then read and decrypted with it running.
func BenchmarkFloor(b *testing.B) {
	for _, p := range profiles {
		b.Run("udp+srtp/"+p.name, func(b *testing.B) { benchUDP(b, p.profile, true) })
	}
	b.Run("udp", func(b *testing.B) { benchUDP(b, srtp.ProtectionProfileAeadAes256Gcm, false) })
	for _, p := range profiles {
		b.Run("srtp/"+p.name, func(b *testing.B) {
			pkts, dec := encrypted(b, p.profile)
			dst := make([]byte, 1500)
			var h rtp.Header
			b.SetBytes(int64(avgLen(pkts)))
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				if _, err := dec.DecryptRTP(dst, pkts[i%len(pkts)], &h); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func benchUDP(b *testing.B, profile srtp.ProtectionProfile, decrypt bool) {
	pkts, dec := encrypted(b, profile)
	tx, rx := socketPair(b)
	buf := make([]byte, 1500)
	dst := make([]byte, 1500)
	var h rtp.Header
	// one untimed round trip so the socket and contexts are warm
	warm := func(n int) {
		for i := range n {
			if _, err := tx.Write(pkts[i%len(pkts)]); err != nil {
				b.Fatal(err)
			}
		}
		for i := range n {
			m, _, err := rx.ReadFromUDP(buf)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := dec.DecryptRTP(dst, buf[:m], &h); err != nil {
				b.Fatalf("packet %d: %v", i, err)
			}
		}
	}
	warm(batch)
	b.SetBytes(int64(avgLen(pkts)))
	b.ReportAllocs()
	b.ResetTimer()
	next := batch
	for done := 0; done < b.N; {
		n := min(batch, b.N-done)
		b.StopTimer()
		for i := range n {
			if _, err := tx.Write(pkts[(next+i)%len(pkts)]); err != nil {
				b.Fatal(err)
			}
		}
		b.StartTimer()
		for range n {
			m, _, err := rx.ReadFromUDP(buf)
			if err != nil {
				b.Fatal(err)
			}
			if decrypt {
				if _, err := dec.DecryptRTP(dst, buf[:m], &h); err != nil {
					b.Fatal(err)
				}
			}
		}
		next += n
		done += n
	}
}

func avgLen(pkts [][]byte) int {
	n := 0
	for _, p := range pkts {
		n += len(p)
	}
	return n / len(pkts)
}

// TestFloorRoundTrip checks the rig: every packet of the lap comes out of
// the socket and decrypts to what was encrypted, twice over (the replayed
// lap must not confuse the rollover counter).
func TestFloorRoundTrip(t *testing.T) {
	plain := testPackets(t)
	if len(plain) < 500 {
		t.Fatalf("%d packets", len(plain))
	}
	for _, p := range profiles {
		t.Run(p.name, func(t *testing.T) {
			pkts, dec := encrypted(t, p.profile)
			tx, rx := socketPair(t)
			buf := make([]byte, 1500)
			var h rtp.Header
			for lap := range 2 {
				for i := 0; i < len(pkts); i += batch {
					end := min(i+batch, len(pkts))
					for _, pkt := range pkts[i:end] {
						if _, err := tx.Write(pkt); err != nil {
							t.Fatal(err)
						}
					}
					for j := i; j < end; j++ {
						m, _, err := rx.ReadFromUDP(buf)
						if err != nil {
							t.Fatal(err)
						}
						out, err := dec.DecryptRTP(nil, buf[:m], &h)
						if err != nil {
							t.Fatalf("lap %d packet %d: %v", lap, j, err)
						}
						if !bytes.Equal(out, plain[j]) {
							t.Fatalf("lap %d packet %d: decrypted packet differs", lap, j)
						}
					}
				}
			}
		})
	}
}
