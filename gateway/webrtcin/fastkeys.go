package webrtcin

import (
	"encoding/binary"
	"net"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/pion/srtp/v2"

	"github.com/castbridge/castbridge/gateway/webrtcin/dtlssrtp"
)

// fastSession is one session's part in the fast path: the DTLS sniffer
// that learns its SRTP keys, and its tracks, which it binds in the
// transport's table to the address their packets come from on pion's path.
type fastSession struct {
	table    *fastTable
	counters *Counters
	// sniff reads the session's DTLS handshake and pion's key log (the
	// master secret: it stays in memory, never logged).
	sniff dtlssrtp.Sniffer

	open   atomic.Int32 // tracks open: without any, inbound only sniffs
	mu     sync.Mutex
	keys   *dtlssrtp.Keys        // nil until the handshake gave them
	tracks map[uint32]*fastTrack // by SSRC
}

func newFastSession(table *fastTable, counters *Counters) *fastSession {
	return &fastSession{table: table, counters: counters, tracks: map[uint32]*fastTrack{}}
}

// openTrack puts a received stream on the fast path (from its next packet
// on pion's path); closeTrack takes it off. arrivals, if not nil, records
// each packet the fast path decrypts.
func (f *fastSession) openTrack(ssrc uint32, queue int, video bool, arrivals arrivalRecorder) *fastTrack {
	ft := newFastTrack(ssrc, queue, f.counters)
	ft.frameWake, ft.arrivals = video, arrivals
	if f.table.warmEvery > 0 {
		ft.warmEvery = f.table.warmEvery
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if old := f.tracks[ssrc]; old != nil {
		// pion rebound the SSRC to a new track: the old one's reader
		// is ending.
		f.table.remove(old, nil)
	}
	f.tracks[ssrc] = ft
	f.open.Add(1)
	return ft
}

func (f *fastSession) closeTrack(ft *fastTrack) {
	ft.close()
	f.table.remove(ft, nil)
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.tracks[ft.ssrc] == ft {
		delete(f.tracks, ft.ssrc)
	}
	f.open.Add(-1)
}

// inbound sees every datagram pion's path gives the session (sniffConn
// on the UDP mux): the DTLS handshake for the keys, and RTP of an open
// track from an address the fast path does not take it from yet, which
// it then does.
func (f *fastSession) inbound(b []byte, from net.Addr) {
	f.sniff.Inbound(b)
	if f.open.Load() == 0 || len(b) < 12 || b[0]&0xc0 != 0x80 || isRTCP(b) {
		return
	}
	ua, ok := from.(*net.UDPAddr)
	if !ok {
		return
	}
	ssrc := binary.BigEndian.Uint32(b[8:12])
	f.mu.Lock()
	defer f.mu.Unlock()
	ft := f.tracks[ssrc]
	if ft == nil {
		return
	}
	if f.keys == nil {
		k, ok := f.sniff.Keys()
		if !ok {
			return
		}
		f.keys = &k
	}
	key := fastKey{unmapped(ua.AddrPort()), ssrc}
	ft.mu.Lock()
	defer ft.mu.Unlock()
	if ft.off || slices.Contains(ft.addrs, key.from) {
		return
	}
	if ft.gcm == nil && ft.ctx == nil {
		var err error
		switch f.keys.Profile {
		case srtp.ProtectionProfileAeadAes128Gcm, srtp.ProtectionProfileAeadAes256Gcm:
			ft.gcm, err = newGCMOpener(f.keys.RemoteKey, f.keys.RemoteSalt)
		default:
			ft.ctx, err = srtp.CreateContext(f.keys.RemoteKey, f.keys.RemoteSalt, f.keys.Profile)
		}
		if err != nil {
			ft.off = true
			return
		}
	}
	if len(ft.addrs) == maxFastAddrs {
		f.table.remove(ft, &fastKey{ft.addrs[0], ssrc})
		ft.addrs = ft.addrs[1:]
	}
	ft.addrs = append(ft.addrs, key.from)
	f.table.add(key, ft)
}
