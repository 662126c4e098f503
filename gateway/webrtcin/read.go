package webrtcin

import (
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v3"
)

// maxPacket is the largest RTP or RTCP packet read: above any MTU.
const maxPacket = 1500

// Arrivals is told of every RTP packet a track receives, with its size:
// the stream's media clock and byte counters.
type Arrivals func(now time.Time, size int)

// ReadRTP is the one read loop of a track: it reads until the track ends,
// and for every packet notes its arrival, updates the track's reception
// statistics, sends the publisher a receiver report when one is due (so
// reports need no timer, and a track that stopped has nothing to report),
// then hands the packet to handle. The packet is valid until handle
// returns; handle may be nil for a track the gateway does not forward.
func (s *Session) ReadRTP(track *webrtc.TrackRemote, stats *RTPStats, arrived Arrivals, handle func(pkt []byte, now time.Time)) {
	buf := make([]byte, maxPacket)
	ssrc := uint32(track.SSRC())
	first, peeked := s.takePeeked(track)
	for {
		var n int
		var now time.Time
		if peeked {
			n, now, peeked = copy(buf, first.b), first.at, false
		} else {
			var err error
			if n, _, err = track.Read(buf); err != nil {
				return
			}
			now = time.Now()
		}
		arrived(now, n)
		stats.Observe(buf[:n], now)
		if rep, ok := stats.Report(ssrc, now); ok {
			s.SendReport(rep)
		}
		if handle != nil {
			handle(buf[:n], now)
		}
	}
}

// ReadRTCP reads a receiver's RTCP until it ends, so pion's interceptors
// run and its buffers never fill, and hands the track's Sender Reports to
// its reception statistics (for the reports' LSR/DLSR) and to onSR. rid
// names the simulcast layer whose RTCP is read ("" without simulcast: a
// simulcast receiver's RTCP is read per layer).
func ReadRTCP(recv *webrtc.RTPReceiver, rid string, ssrc uint32, stats *RTPStats, onSR func(*rtcp.SenderReport)) {
	buf := make([]byte, maxPacket)
	for {
		var n int
		var err error
		if rid != "" {
			n, _, err = recv.ReadSimulcast(buf, rid)
		} else {
			n, _, err = recv.Read(buf)
		}
		if err != nil {
			return
		}
		pkts, err := rtcp.Unmarshal(buf[:n])
		if err != nil {
			continue
		}
		for _, p := range pkts {
			if sr, ok := p.(*rtcp.SenderReport); ok && (sr.SSRC == ssrc || ssrc == 0) {
				stats.OnSenderReport(sr.NTPTime, time.Now())
				if onSR != nil {
					onSR(sr)
				}
			}
		}
	}
}

// LayerRTCPReady takes the RTCP reader of simulcast layer rid of recv and
// returns the readers to start now: none until every layer the receiver
// was offered has its track, then all of them. pion's
// RTPReceiver.ReadSimulcast reads the receiver's layer list without its
// lock while a later layer's arrival writes it, so no layer's RTCP is read
// before the last layer arrived. A layer the publisher never sends leaves
// the others' RTCP unread (pion drops it once its buffer is full): the
// video then goes without Sender Reports, on arrival times.
func (s *Session) LayerRTCPReady(recv *webrtc.RTPReceiver, reader func()) []func() {
	s.layerMu.Lock()
	defer s.layerMu.Unlock()
	if s.layerRTCP == nil {
		s.layerRTCP = map[*webrtc.RTPReceiver][]func(){}
	}
	waiting := append(s.layerRTCP[recv], reader)
	if len(waiting) < len(recv.Tracks()) {
		s.layerRTCP[recv] = waiting
		return nil
	}
	delete(s.layerRTCP, recv)
	return waiting
}
