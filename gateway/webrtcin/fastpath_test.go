package webrtcin

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/srtp/v2"

	"github.com/castbridge/castbridge/gateway/webrtcin/dtlssrtp"
)

// TestReplayWindow: every sequence number passes once, duplicates and
// those older than the window are refused, and the window follows the
// stream across the 16-bit wrap and jumps.
func TestReplayWindow(t *testing.T) {
	var w replayWindow
	for _, c := range []struct {
		seq  uint16
		want bool
	}{
		{65530, true}, {65530, false}, {65531, true}, {65535, true}, {0, true}, {3, true},
		{1, true}, {2, true}, {1, false}, {65533, true}, {65533, false}, // late, within the window
		{1000, true}, {65534, true}, // 1005 back: still within 1024
		{1100, true}, {65532, false}, // now 1105 back: older than the window
		{999, true}, {1000, false}, {60000, false}, // 60000 is 6636 back (the window reads it as old)
	} {
		if got := w.fresh(c.seq); got != c.want {
			t.Errorf("seq %d: fresh %v, want %v", c.seq, got, c.want)
		}
	}
	// A jump past the window forgets it all.
	var j replayWindow
	j.fresh(10)
	j.fresh(5000)
	if !j.fresh(4000) || j.fresh(4000) || j.fresh(10) {
		t.Error("after a jump: 4000 should pass once, 10 is out of the window")
	}
}

// TestReplayWindowShift: the bitmap moves whole words and bits alike.
func TestReplayWindowShift(t *testing.T) {
	for _, k := range []uint64{1, 63, 64, 65, 127, 500, 1023} {
		var w replayWindow
		w.bits[0] = 1<<0 | 1<<5
		w.bits[1] = 1 << 3 // 67
		w.shift(k)
		want := map[uint64]bool{k: true, 5 + k: true, 67 + k: true}
		for i := uint64(0); i < 64*replayWindowWords; i++ {
			got := w.bits[i/64]&(1<<(i%64)) != 0
			if got != want[i] {
				t.Errorf("shift %d: bit %d is %v", k, i, got)
			}
		}
	}
}

// srtpPair is a sender's context and a fast track's decryption on the
// same keys: castbridge's GCM opener for the AEAD profiles, pion's
// Context for the others.
func srtpPair(t testing.TB, profile srtp.ProtectionProfile) (tx *srtp.Context, keyed func(*fastTrack)) {
	t.Helper()
	kl, _ := profile.KeyLen()
	sl, _ := profile.SaltLen()
	key, salt := bytes.Repeat([]byte{7}, kl), bytes.Repeat([]byte{9}, sl)
	tx, err := srtp.CreateContext(key, salt, profile)
	if err != nil {
		t.Fatal(err)
	}
	return tx, func(ft *fastTrack) {
		var err error
		switch profile {
		case srtp.ProtectionProfileAeadAes128Gcm, srtp.ProtectionProfileAeadAes256Gcm:
			ft.gcm, err = newGCMOpener(key, salt)
		default:
			ft.ctx, err = srtp.CreateContext(key, salt, profile)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// keyedTrack is a fast track of ssrc with room for queue packets, keyed
// for profile, with the sender's context and the counters.
func keyedTrack(t testing.TB, profile srtp.ProtectionProfile, ssrc uint32, queue int) (*fastTrack, *srtp.Context, *Counters) {
	tx, keyed := srtpPair(t, profile)
	counters := &Counters{}
	ft := newFastTrack(ssrc, queue, counters)
	keyed(ft)
	return ft, tx, counters
}

func sealed(t testing.TB, tx *srtp.Context, ssrc uint32, seq uint16, payload []byte) []byte {
	t.Helper()
	return sealPacket(t, tx, &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 102, SequenceNumber: seq, Timestamp: uint32(seq) * 3000, SSRC: ssrc}, Payload: payload})
}

// sealPacket marshals p and encrypts it with tx.
func sealPacket(t testing.TB, tx *srtp.Context, p *rtp.Packet) []byte {
	t.Helper()
	plain, err := p.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	out, err := tx.EncryptRTP(nil, plain, nil)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestFastTrackDecrypts: packets taken from the socket come out of the
// queue decrypted, in order, counted as FastRTP; a duplicate is dropped; one
// packet in fastWarmEvery is also left to pion, and pion's copy of it is
// dropped when pion delivers it.
func TestFastTrackDecrypts(t *testing.T) {
	for _, profile := range []srtp.ProtectionProfile{srtp.ProtectionProfileAeadAes128Gcm, srtp.ProtectionProfileAes128CmHmacSha1_80, srtp.ProtectionProfileAeadAes256Gcm} {
		tx, keyed := srtpPair(t, profile)
		var counters Counters
		ft := newFastTrack(42, 8, &counters)
		keyed(ft)
		now := time.Now()
		var toPion []uint16
		for seq := uint16(100); seq < 106; seq++ {
			pkt := sealed(t, tx, 42, seq, []byte{byte(seq), 1, 2, 3})
			if !ft.take(pkt, now, nil) {
				toPion = append(toPion, seq)
			}
			if seq == 102 && !ft.take(pkt, now, nil) { // a duplicate: consumed, not queued
				t.Error("a duplicate went to pion")
			}
		}
		if len(toPion) != 1 || toPion[0] != 100 {
			t.Errorf("%s: left to pion %v, want the first (the warm packet)", profile, toPion)
		}
		// pion's copy of the warm packet arrives decrypted: dropped.
		plain := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 102, SequenceNumber: 100, SSRC: 42}, Payload: []byte{100, 1, 2, 3}}
		b, _ := plain.Marshal()
		if !ft.push(b, now) {
			t.Fatal("push on an open track returned false")
		}
		for seq := uint16(100); seq < 106; seq++ {
			p, ok := ft.next()
			var h rtp.Packet
			if !ok || h.Unmarshal(p.b) != nil || h.SequenceNumber != seq || !bytes.Equal(h.Payload, []byte{byte(seq), 1, 2, 3}) {
				t.Fatalf("%s: packet %d: %v %+v", profile, seq, ok, h.Header)
			}
			ft.recycle(p.b)
		}
		if ft.n != 0 {
			t.Errorf("%s: %d packets queued after the six", profile, ft.n)
		}
		if got := counters.FastRTP.Load(); got != 6 {
			t.Errorf("%s: FastRTP %d, want 6", profile, got)
		}
	}
}

// TestFastTrackHold: when the fast path takes a stream over, its packets
// wait for the one before them still on pion's path; a packet lost on the
// network later holds nothing back; nor does one pion never delivers hold
// them past fastHoldMax.
func TestFastTrackHold(t *testing.T) {
	ft, tx, _ := keyedTrack(t, srtp.ProtectionProfileAeadAes128Gcm, 4, 32)
	now := time.Now()
	ft.nextWarm = now.Add(time.Hour)
	plain := func(seq uint16) []byte {
		p := rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: seq, SSRC: 4}, Payload: []byte{byte(seq)}}
		b, _ := p.Marshal()
		return b
	}
	order := func(want ...uint16) {
		t.Helper()
		for _, w := range want {
			p, ok := ft.next()
			if !ok || p.b[3] != byte(w) {
				t.Fatalf("want packet %d, got %v %x", w, ok, p.b)
			}
			ft.recycle(p.b)
		}
	}
	ft.push(plain(9), now)
	for seq := uint16(11); seq <= 12; seq++ {
		ft.take(sealed(t, tx, 4, seq, []byte{byte(seq)}), now, nil)
	}
	if ft.n != 1 || len(ft.held) != 2 {
		t.Fatalf("%d queued, %d held; want pion's 9 queued, 11 and 12 held", ft.n, len(ft.held))
	}
	ft.push(plain(10), now)
	order(9, 10, 11, 12)
	// 13 lost on the network: 14 is not held.
	ft.take(sealed(t, tx, 4, 14, []byte{14}), now, nil)
	if len(ft.held) != 0 || ft.n != 1 {
		t.Fatalf("after a loss: %d held, %d queued", len(ft.held), ft.n)
	}
	order(14)
	// A packet left to pion (the queue was full) that pion never
	// delivers holds the next fast one only fastHoldMax.
	ft.owed = true
	start := time.Now()
	ft.take(sealed(t, tx, 4, 16, []byte{16}), start, nil)
	order(16)
	if waited := time.Since(start); waited < fastHoldMax-5*time.Millisecond || waited > 20*fastHoldMax {
		t.Errorf("held %v, want about %v", waited, fastHoldMax)
	}
}

// next is ReadRTP's reading a packet at a time: it waits for the next
// packet; false once the track is closed and drained. Give the packet's
// buffer back with recycle.
func (ft *fastTrack) next() (fastPacket, bool) {
	var timer *time.Timer
	defer stopTimer(&timer)
	for ft.wait(&timer) {
		if p, ok, _ := ft.pop(); ok {
			return p, true
		}
	}
	return fastPacket{}, false
}

// woken takes ft's pending wake-up, if there is one.
func woken(ft *fastTrack) bool {
	select {
	case <-ft.wake:
		return true
	default:
		return false
	}
}

// stunish is a datagram the fast path leaves to pion: a STUN header.
var stunish = []byte{0, 1, 0, 0, 0x21, 0x12, 0xa4, 0x42, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}

// TestFastTrackFrameWake: a video track's reader is woken at a frame's
// last packet (the marker) or a full batch, not for every packet; an
// audio track's for every packet.
func TestFastTrackFrameWake(t *testing.T) {
	tx, keyed := srtpPair(t, srtp.ProtectionProfileAeadAes128Gcm)
	seal := func(seq uint16, marker bool) []byte {
		p := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 102, SequenceNumber: seq, SSRC: 6, Marker: marker}, Payload: []byte{1}}
		plain, _ := p.Marshal()
		out, err := tx.EncryptRTP(nil, plain, nil)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	var counters Counters
	ft := newFastTrack(6, 64, &counters)
	ft.frameWake = true
	keyed(ft)
	now := time.Now()
	ft.replay.fresh(0) // pion's path delivered 0: nothing is held
	ft.nextWarm = now.Add(time.Hour)
	for seq := uint16(1); seq < 4; seq++ {
		ft.take(seal(seq, false), now, nil)
	}
	if woken(ft) {
		t.Error("the reader was woken before the frame's last packet")
	}
	ft.take(seal(4, true), now, nil)
	if !woken(ft) || ft.n != 4 {
		t.Errorf("after the marker: woken false or %d queued", ft.n)
	}
	for seq := uint16(5); seq < 5+fastWakeBatch; seq++ {
		ft.take(seal(seq, false), now, nil)
	}
	if !woken(ft) {
		t.Errorf("%d packets queued and the reader not woken", ft.n)
	}
	audio := newFastTrack(6, 64, &counters)
	keyed(audio)
	audio.replay.fresh(99)
	audio.nextWarm = now.Add(time.Hour)
	audio.take(seal(100, false), now, nil)
	if !woken(audio) {
		t.Error("an audio packet did not wake its reader")
	}
}

// TestFastTrackAuthFailures: packets under other keys go to pion, and
// after maxFastAuthFailures of them the track is off the fast path, even
// for good packets.
func TestFastTrackAuthFailures(t *testing.T) {
	tx, keyed := srtpPair(t, srtp.ProtectionProfileAeadAes128Gcm)
	other, err := srtp.CreateContext(bytes.Repeat([]byte{1}, 16), bytes.Repeat([]byte{2}, 12), srtp.ProtectionProfileAeadAes128Gcm)
	if err != nil {
		t.Fatal(err)
	}
	var counters Counters
	ft := newFastTrack(7, 64, &counters)
	keyed(ft)
	now := time.Now()
	for seq := range uint16(maxFastAuthFailures) {
		if ft.take(sealed(t, other, 7, seq, []byte{1}), now, nil) {
			t.Fatal("a packet under other keys was taken")
		}
	}
	if !ft.off || counters.FastAuthFailures.Load() != maxFastAuthFailures {
		t.Fatalf("off %v after %d failures", ft.off, counters.FastAuthFailures.Load())
	}
	if ft.take(sealed(t, tx, 7, 500, []byte{1}), now, nil) {
		t.Error("a track off the fast path took a good packet")
	}
}

// TestFastTrackRollover: the fast path's first packet may come after the
// sequence number wrapped; it still decrypts, and so do the next.
func TestFastTrackRollover(t *testing.T) {
	for _, profile := range []srtp.ProtectionProfile{srtp.ProtectionProfileAeadAes128Gcm, srtp.ProtectionProfileAes128CmHmacSha1_80} {
		tx, keyed := srtpPair(t, profile)
		for seq := uint16(65530); seq != 5; seq++ {
			sealed(t, tx, 9, seq, []byte{1}) // the sender's ROC moves on
		}
		var counters Counters
		ft := newFastTrack(9, 16, &counters)
		keyed(ft)
		now := time.Now()
		for seq := uint16(5); seq < 10; seq++ {
			ft.take(sealed(t, tx, 9, seq, []byte{byte(seq)}), now, nil)
			now = now.Add(time.Second) // every packet is a warm one: queued too
		}
		// Back over the wrap: a late packet of the first cycle.
		late := sealed(t, tx, 9, 65535, []byte{0xff})
		ft.take(late, now, nil)
		if ft.n != 6 || counters.FastAuthFailures.Load() != 0 || counters.FastRTP.Load() != 6 {
			t.Errorf("%s: %d queued, %d decrypted, %d failures; want 6, 6, 0", profile, ft.n, counters.FastRTP.Load(), counters.FastAuthFailures.Load())
		}
	}
}

// TestFastTrackFullAndClose: a full queue leaves packets to pion; push
// waits for room; close ends next after the queued packets and releases
// a waiting push.
func TestFastTrackFullAndClose(t *testing.T) {
	ft, tx, _ := keyedTrack(t, srtp.ProtectionProfileAeadAes128Gcm, 3, 2)
	now := time.Now()
	ft.nextWarm = now.Add(time.Hour)
	if !ft.take(sealed(t, tx, 3, 1, []byte{1}), now, nil) || !ft.take(sealed(t, tx, 3, 2, []byte{2}), now, nil) {
		t.Fatal("the first two packets were not taken")
	}
	if ft.take(sealed(t, tx, 3, 3, []byte{3}), now, nil) {
		t.Fatal("a packet was taken into a full queue")
	}
	pushed := make(chan bool)
	go func() {
		plain := rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: 3, SSRC: 3}, Payload: []byte{3}}
		b, _ := plain.Marshal()
		pushed <- ft.push(b, now)
	}()
	select {
	case <-pushed:
		t.Fatal("push into a full queue did not wait")
	case <-time.After(50 * time.Millisecond):
	}
	p, _ := ft.next()
	ft.recycle(p.b)
	if ok := <-pushed; !ok {
		t.Fatal("push after room was made returned false")
	}
	ft.close()
	for i, want := range []uint16{2, 3} {
		p, ok := ft.next()
		var h rtp.Header
		if !ok || func() error { _, err := h.Unmarshal(p.b); return err }() != nil || h.SequenceNumber != want {
			t.Fatalf("after close, packet %d: %v seq %d", i, ok, h.SequenceNumber)
		}
	}
	if _, ok := ft.next(); ok {
		t.Error("next after close and drain returned a packet")
	}
	if ft.push([]byte{0x80, 0, 0, 9}, now) {
		t.Error("push after close returned true")
	}
}

// TestDivertConn: on the socket, the fast path's datagrams (known source
// and SSRC) are taken out; STUN, RTCP, other sources and other SSRCs
// reach pion's reader in order.
func TestDivertConn(t *testing.T) {
	_, probe := loopbackPair(t)
	for kind := range addrConnKinds(t, probe) {
		t.Run(kind, func(t *testing.T) {
			tx, rx := loopbackPair(t)
			testDivertConn(t, tx, newDivertConn(addrConnKinds(t, rx)[kind], nil, nil))
		})
	}
}

// testDivertConn runs TestDivertConn on c, its table to be filled here.
func testDivertConn(t *testing.T, tx *net.UDPConn, c divertConn) {
	sender, keyed := srtpPair(t, srtp.ProtectionProfileAeadAes128Gcm)
	var counters Counters
	ft := newFastTrack(77, 16, &counters)
	keyed(ft)
	ft.nextWarm = time.Now().Add(time.Hour)
	var table fastTable
	table.add(fastKey{unmapped(tx.LocalAddr().(*net.UDPAddr).AddrPort()), 77}, ft)
	c.fast = &table

	rtcpish := []byte{0x81, 200, 0, 6, 0, 0, 0, 77, 0, 0, 0, 0}
	for _, d := range [][]byte{sealed(t, sender, 77, 1, []byte{1}), stunish, sealed(t, sender, 77, 2, []byte{2}), rtcpish, sealed(t, sender, 78, 1, []byte{3})} {
		if _, err := tx.Write(d); err != nil {
			t.Fatal(err)
		}
	}
	buf := make([]byte, 1500)
	for i, want := range [][]byte{stunish, rtcpish} {
		n, _, err := c.ReadFrom(buf)
		if err != nil || !bytes.Equal(buf[:n], want) {
			t.Fatalf("datagram %d to pion: %x, %v", i, buf[:n], err)
		}
	}
	n, _, err := c.ReadFrom(buf)
	if err != nil || n < 12 || buf[11] != 78 {
		t.Fatalf("the other SSRC's packet: %x, %v", buf[:n], err)
	}
	if ft.n+len(ft.held) != 2 {
		t.Errorf("%d packets queued on the fast path, want 2", ft.n+len(ft.held))
	}
	table.remove(ft, nil)
	if table.len() != 0 {
		t.Error("the table still holds the track")
	}
}

// TestFastPathAllocs: a packet taken off the socket, read and recycled
// allocates nothing once the track has its buffers.
func TestFastPathAllocs(t *testing.T) {
	if raceEnabled() {
		t.Skip("allocation counts are meaningless with -race")
	}
	ft, tx, _ := keyedTrack(t, srtp.ProtectionProfileAeadAes128Gcm, 5, 16)
	var table fastTable
	from := &net.UDPAddr{IP: net.IPv4(10, 0, 0, 1), Port: 5000}
	table.add(fastKey{netip.MustParseAddrPort("10.0.0.1:5000"), 5}, ft)
	pkts := make([][]byte, 600)
	for i := range pkts {
		pkts[i] = sealed(t, tx, 5, uint16(i), make([]byte, 1100))
	}
	i := 0
	var wakes wakeList // the socket reader's way: woken at the batch's end
	ap := from.AddrPort()
	step := func() {
		table.takeFrom(pkts[i], ap, time.Now(), &wakes)
		wakes.flush()
		i++
		p, ok := ft.next()
		if !ok {
			t.Fatal("no packet")
		}
		ft.recycle(p.b)
	}
	step()
	if a := testing.AllocsPerRun(500, step); a != 0 {
		t.Errorf("%v allocations per packet, want 0", a)
	}

	// Handed over on the socket reader's goroutine.
	ft.setConsumer(&trackConsumer{consume: func(p fastPacket) { ft.recycle(p.b) }, inline: InlineAlways})
	inline := func() {
		table.takeFrom(pkts[i%len(pkts)], ap, time.Now(), &wakes)
		wakes.flush()
		i++
	}
	i = 0
	ft.replay = replayWindow{}
	inline()
	if a := testing.AllocsPerRun(500, inline); a != 0 {
		t.Errorf("inline: %v allocations per packet, want 0", a)
	}
	if n := ft.counters.FastInline.Load(); n < 500 {
		t.Errorf("%d packets handled inline, want every one", n)
	}
}

// BenchmarkFastPath: the fast path's work per packet: look-up, SRTP
// decrypt (1100-byte payload), queue, read, recycle.
func BenchmarkFastPath(b *testing.B) {
	for _, profile := range []srtp.ProtectionProfile{srtp.ProtectionProfileAeadAes128Gcm, srtp.ProtectionProfileAeadAes256Gcm, srtp.ProtectionProfileAes128CmHmacSha1_80} {
		b.Run(profile.String(), func(b *testing.B) {
			tx, keyed := srtpPair(b, profile)
			var counters Counters
			ft := newFastTrack(5, 16, &counters)
			keyed(ft)
			var table fastTable
			from := &net.UDPAddr{IP: net.IPv4(10, 0, 0, 1), Port: 5000}
			table.add(fastKey{netip.MustParseAddrPort("10.0.0.1:5000"), 5}, ft)
			// 512 packets sealed at a time, outside the timer: what the
			// socket reader just read is in the cache.
			pkts := make([][]byte, 512)
			payload := make([]byte, 1100)
			seal := func(from int) {
				for j := range pkts {
					pkts[j] = sealed(b, tx, 5, uint16(from+j), payload)
				}
			}
			seal(0)
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				if i > 0 && i%len(pkts) == 0 {
					b.StopTimer()
					seal(i)
					b.StartTimer()
				}
				table.take(pkts[i%len(pkts)], from)
				p, _ := ft.next()
				ft.recycle(p.b)
			}
		})
	}
}

// FuzzFastPathTake: any datagram from a bound source, with the bound SSRC
// or not, is taken or left to pion without a panic; what the fast path
// queues is a packet that authenticated: one of the seeds' own, never a
// forgery, and each at most once.
func FuzzFastPathTake(f *testing.F) {
	tx, keyed := srtpPair(f, srtp.ProtectionProfileAeadAes128Gcm)
	for seq := range uint16(4) {
		f.Add(sealed(f, tx, 8, 65534+seq, []byte{1, 2, 3, byte(seq)}))
	}
	// A header with CSRCs and an extension, cut short.
	f.Add([]byte{0x9f, 102, 0, 1, 0, 0, 0, 0, 0, 0, 0, 8, 0, 0})
	f.Fuzz(func(t *testing.T, datagram []byte) {
		var counters Counters
		ft := newFastTrack(8, 8, &counters)
		keyed(ft)
		ft.nextWarm = time.Now().Add(time.Hour)
		var table fastTable
		table.add(fastKey{netip.MustParseAddrPort("10.0.0.1:5000"), 8}, ft)
		from := &net.UDPAddr{IP: net.IPv4(10, 0, 0, 1), Port: 5000}
		for range 2 { // the second time a replay
			table.take(datagram, from)
		}
		ft.close()
		queued := 0
		for {
			p, ok := ft.next()
			if !ok {
				break
			}
			queued++
			var h rtp.Packet
			if err := h.Unmarshal(p.b); err != nil || h.SSRC != 8 || len(h.Payload) != 4 || h.Payload[0] != 1 {
				t.Fatalf("queued a packet that is no seed's: %x (%v)", p.b, err)
			}
		}
		if queued > 1 {
			t.Fatalf("one datagram queued %d times", queued)
		}
	})
}

// TestFastSessionBinds: a track is bound in the table at the address its
// RTP comes from on pion's path (once the keys are known), up to
// maxFastAddrs addresses, the oldest given up first; RTCP, other SSRCs and
// packets before the keys bind nothing; closing the track unbinds it.
func TestFastSessionBinds(t *testing.T) {
	var table fastTable
	var counters Counters
	f := newFastSession(&table, &counters)
	ft := f.openTrack(21, 16, true, nil)
	rtpFrom := func(ssrc uint32, port int) {
		p := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 102, SequenceNumber: 1, SSRC: ssrc}, Payload: []byte{1}}
		b, _ := p.Marshal()
		f.inbound(b, &net.UDPAddr{IP: net.IPv4(192, 0, 2, 1), Port: port})
	}
	rtpFrom(21, 1000)
	if table.len() != 0 {
		t.Fatal("bound before the keys were known")
	}
	kl, _ := srtp.ProtectionProfileAeadAes128Gcm.KeyLen()
	sl, _ := srtp.ProtectionProfileAeadAes128Gcm.SaltLen()
	f.keys = &dtlssrtp.Keys{Profile: srtp.ProtectionProfileAeadAes128Gcm, RemoteKey: make([]byte, kl), RemoteSalt: make([]byte, sl)}
	rtpFrom(99, 1000) // another SSRC
	f.inbound([]byte{0x81, 200, 0, 6, 0, 0, 0, 21, 0, 0, 0, 0}, &net.UDPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 1000})
	if table.len() != 0 {
		t.Fatal("an unknown SSRC or RTCP bound the track")
	}
	for port := 1000; port < 1000+maxFastAddrs+2; port++ {
		rtpFrom(21, port)
		rtpFrom(21, port) // again: bound once
	}
	if ft.gcm == nil || table.len() != maxFastAddrs || len(ft.addrs) != maxFastAddrs {
		t.Fatalf("gcm %v, %d keys in the table, %d addresses; want keyed, %d", ft.gcm != nil, table.len(), len(ft.addrs), maxFastAddrs)
	}
	m := *table.m.Load()
	if _, ok := m[fastKey{netip.MustParseAddrPort("192.0.2.1:1000"), 21}]; ok {
		t.Error("the oldest address is still bound")
	}
	if _, ok := m[fastKey{netip.MustParseAddrPort(fmt.Sprintf("192.0.2.1:%d", 1000+maxFastAddrs+1)), 21}]; !ok {
		t.Error("the newest address is not bound")
	}
	f.closeTrack(ft)
	if table.len() != 0 || f.open.Load() != 0 {
		t.Errorf("after close: %d keys, %d open", table.len(), f.open.Load())
	}
}

// TestBatchWakesReaders: a socket reader's batch wakes each track it fed
// once, when the batch is done (before the reader waits for the socket
// again), not at each frame it completes; a batch of nothing but
// fast-path packets still wakes them.
func TestBatchWakesReaders(t *testing.T) {
	tx, rx := loopbackPair(t)
	cc := newCachedAddrConn(rx, 0)
	if cc.batch == nil {
		t.Skip("no recvmmsg on this system")
	}
	sender, keyed := srtpPair(t, srtp.ProtectionProfileAeadAes128Gcm)
	frame := func(seq uint16) []byte {
		return sealPacket(t, sender, &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 102, SequenceNumber: seq, Timestamp: uint32(seq) * 3000, SSRC: 77, Marker: true}, Payload: []byte{byte(seq)}})
	}
	var counters Counters
	ft := newFastTrack(77, 64, &counters)
	ft.frameWake = true
	keyed(ft)
	ft.replay.fresh(0) // pion's path delivered 0: nothing is held
	ft.nextWarm = time.Now().Add(time.Hour)
	from := unmapped(tx.LocalAddr().(*net.UDPAddr).AddrPort())
	var table fastTable
	table.add(fastKey{from, 77}, ft)

	// Three frames in one batch: one wake, at the flush.
	var wakes wakeList
	for seq := uint16(1); seq <= 3; seq++ {
		if !table.takeFrom(frame(seq), from, time.Now(), &wakes) {
			t.Fatalf("frame %d not taken", seq)
		}
	}
	if w := woken(ft); w || len(wakes.tracks) != 1 {
		t.Fatalf("before the flush: woken %v, %d tracks to wake, want false and 1", w, len(wakes.tracks))
	}
	wakes.flush()
	if !woken(ft) || len(wakes.tracks) != 0 {
		t.Fatalf("after the flush: not woken, or %d tracks left", len(wakes.tracks))
	}

	// Through the socket: the batch reader flushes before it waits.
	c := newDivertConn(cc, &table, nil)
	for seq := uint16(4); seq <= 6; seq++ {
		if _, err := tx.Write(frame(seq)); err != nil {
			t.Fatal(err)
		}
	}
	read := make(chan error, 1)
	go func() {
		buf := make([]byte, 1500)
		_, _, err := c.ReadFrom(buf) // returns with the STUN-like datagram below
		read <- err
	}()
	select {
	case <-ft.wake:
	case <-time.After(5 * time.Second):
		t.Error("a batch of fast-path packets did not wake the track's reader")
	}
	ft.mu.Lock()
	queued := ft.n
	ft.mu.Unlock()
	if queued != 6 {
		t.Errorf("%d packets queued, want 6", queued)
	}
	if _, err := tx.Write(stunish); err != nil {
		t.Fatal(err)
	}
	if err := <-read; err != nil {
		t.Fatal(err)
	}
}

// TestFastTrackKick: at the end of a batch the socket reader hands what it
// queued to the track's consumer itself, in order, without waking the
// reader, while the consumer may run there; it wakes the reader instead
// when the consumer says no, while the reader drains, once the consumer is
// cleared, and while packets are held back (their release is the reader's
// timer).
func TestFastTrackKick(t *testing.T) {
	tx, keyed := srtpPair(t, srtp.ProtectionProfileAeadAes128Gcm)
	var counters Counters
	ft := newFastTrack(9, 64, &counters)
	keyed(ft)
	ft.replay.fresh(0) // pion's path delivered 0: nothing is held
	ft.nextWarm = time.Now().Add(time.Hour)
	var got []uint16
	inline := true
	ft.setConsumer(&trackConsumer{
		consume: func(p fastPacket) {
			got = append(got, binary.BigEndian.Uint16(p.b[2:4]))
			ft.recycle(p.b)
		},
		inline: func() bool { return inline },
	})
	var wakes wakeList
	batch := func(seqs ...uint16) {
		t.Helper()
		for _, seq := range seqs {
			if !ft.take(sealed(t, tx, 9, seq, []byte{byte(seq)}), time.Now(), &wakes) {
				t.Fatalf("packet %d not taken", seq)
			}
		}
		wakes.flush()
	}
	readerGets := func(seq uint16) {
		t.Helper()
		if !woken(ft) {
			t.Fatalf("packet %d: the reader was not woken", seq)
		}
		p, ok := ft.next()
		if !ok || binary.BigEndian.Uint16(p.b[2:4]) != seq {
			t.Fatalf("the reader got %v (ok %v), want packet %d", p.b, ok, seq)
		}
		ft.recycle(p.b)
	}

	batch(1, 2, 3)
	if fmt.Sprint(got) != "[1 2 3]" || woken(ft) || counters.FastInline.Load() != 3 {
		t.Fatalf("inline: consumed %v, woken %v, %d counted; want [1 2 3], false, 3", got, woken(ft), counters.FastInline.Load())
	}

	inline = false // an AAC output decodes the audio now
	batch(4)
	readerGets(4)

	inline = true
	ft.drainMu.Lock() // the reader is draining
	batch(5)
	ft.drainMu.Unlock()
	readerGets(5)

	ft.owed = true // packets were left to pion: 7 waits for 6
	batch(7)
	if !woken(ft) {
		t.Fatal("a held packet did not wake the reader, whose timer releases it")
	}
	ft.mu.Lock()
	ft.release()
	ft.mu.Unlock()
	readerGets(7)

	ft.clearConsumer()
	batch(8)
	readerGets(8)
	if fmt.Sprint(got) != "[1 2 3]" || counters.FastInline.Load() != 3 {
		t.Errorf("consumed inline %v, %d counted; want [1 2 3], 3", got, counters.FastInline.Load())
	}
}

// TestFastTrackKickConcurrent: the socket reader's inline hand-offs and
// the track's reader (woken as pion's path would wake it) run at once:
// every packet is consumed once, in order, never by two goroutines at a
// time (-race), and after clearConsumer the socket reader consumes nothing.
func TestFastTrackKickConcurrent(t *testing.T) {
	tx, keyed := srtpPair(t, srtp.ProtectionProfileAeadAes128Gcm)
	var counters Counters
	ft := newFastTrack(9, 64, &counters)
	keyed(ft)
	ft.replay.fresh(0)
	ft.nextWarm = time.Now().Add(time.Hour)
	const packets = 3000
	var got []uint16
	var busy atomic.Bool
	consume := func(p fastPacket) {
		if !busy.CompareAndSwap(false, true) {
			t.Error("two goroutines consume at once")
		}
		got = append(got, binary.BigEndian.Uint16(p.b[2:4]))
		busy.Store(false)
		ft.recycle(p.b)
	}
	ft.setConsumer(&trackConsumer{consume: consume, inline: func() bool { return true }})
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		ft.serve(consume)
	}()
	stop := make(chan struct{})
	wakerDone := make(chan struct{})
	go func() { // pion's path, waking the reader now and then
		defer close(wakerDone)
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Microsecond):
				ft.signal()
			}
		}
	}()
	sealedPkts := make([][]byte, packets)
	for i := range sealedPkts {
		sealedPkts[i] = sealed(t, tx, 9, uint16(1+i), []byte{1})
	}
	var wakes wakeList
	taken := 0
	for i, b := range sealedPkts {
		for !ft.take(b, time.Now(), &wakes) {
			wakes.flush() // full: let it drain, then take the packet again
			time.Sleep(100 * time.Microsecond)
		}
		taken++
		if i%7 == 6 {
			wakes.flush()
		}
	}
	wakes.flush()
	close(stop)
	<-wakerDone
	ft.clearConsumer()
	inline := counters.FastInline.Load()
	ft.close()
	<-readerDone
	if counters.FastInline.Load() != inline {
		t.Error("the socket reader consumed after clearConsumer")
	}
	if len(got) != packets {
		t.Fatalf("%d packets consumed, %d taken", len(got), taken)
	}
	for i, seq := range got {
		if seq != uint16(1+i) {
			t.Fatalf("packet %d consumed %dth", seq, i)
		}
	}
	t.Logf("%d of %d consumed on the socket reader", inline, packets)
	if inline == 0 {
		t.Error("nothing consumed on the socket reader")
	}
}

// TestWarmInterval: a track's packet goes pion's way once a second, and
// four times within a shorter ICE disconnected timeout (so a publisher
// whose media flows never looks disconnected to pion's ICE).
func TestWarmInterval(t *testing.T) {
	for _, c := range []struct{ disconnected, want time.Duration }{
		{0, time.Second},
		{5 * time.Second, time.Second},
		{4 * time.Second, time.Second},
		{2 * time.Second, 500 * time.Millisecond},
		{500 * time.Millisecond, 125 * time.Millisecond},
		{time.Millisecond, 10 * time.Millisecond},
	} {
		if got := warmInterval(c.disconnected); got != c.want {
			t.Errorf("warmInterval(%v) = %v, want %v", c.disconnected, got, c.want)
		}
	}
	var counters Counters
	f := newFastSession(&fastTable{warmEvery: 125 * time.Millisecond}, &counters)
	if ft := f.openTrack(3, 16, true, nil); ft.warmEvery != 125*time.Millisecond {
		t.Errorf("a track of the session warms every %v, want the table's 125ms", ft.warmEvery)
	}
}
