package webrtcin

import (
	"context"
	"encoding/binary"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/ice/v2"
	"github.com/pion/logging"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v3"
)

// Demultiplexing by payload type (RFC 8843 §9.2).
//
// An offer whose m-sections share one transport (BUNDLE) tells the
// receiver which section a stream belongs to by a=ssrc lines or the
// sdes:mid header extension; without either, the payload type does when it
// is unique to one section. GStreamer 1.22's webrtcbin, making its offer
// before its encoders have caps (transceiver codec-preferences, the
// "default caps" case), offers neither: no a=ssrc (it knows no SSRC yet)
// and no a=extmap. pion v3 binds a stream it was not told of only when the
// offer has a single m-section, or by the mid and rid extensions
// (simulcast); otherwise it drops the stream ("Incoming unhandled RTP
// ssrc(…), OnTrack will not be fired. mid RTP Extensions required for
// Simulcast"). ICE and DTLS connect, and the stream never goes live.
//
// So the session watches the packets of its ICE connection (RTP headers
// are not encrypted) for the first SSRC of each such section's payload
// types, and binds it to the section's receiver itself.

// repairPayloads is the section's payload types that carry no media of
// their own: retransmissions (rtx), FEC (ulpfec, flexfec) and RED.
func repairPayloads(md *sdp.MediaDescription) map[uint8]bool {
	var out map[uint8]bool
	for _, a := range md.Attributes {
		if a.Key != "rtpmap" {
			continue
		}
		ptStr, enc, ok := strings.Cut(a.Value, " ")
		if !ok {
			continue
		}
		name, _, _ := strings.Cut(enc, "/")
		switch strings.ToLower(name) {
		case "rtx", "ulpfec", "flexfec", "flexfec-03", "red":
			if pt, err := strconv.ParseUint(ptStr, 10, 8); err == nil {
				if out == nil {
					out = map[uint8]bool{}
				}
				out[uint8(pt)] = true
			}
		}
	}
	return out
}

// payloadMIDs maps each payload type unique to one taken m-section that
// pion cannot bind a stream of (a bundled offer of more than one section;
// no a=ssrc, no a=rid, no rtp-stream-id extension in that section) to the
// section's mid. It is empty for offers pion demultiplexes itself.
func payloadMIDs(sd *sdp.SessionDescription, mids []string, rejected []int) map[uint8]string {
	if len(sd.MediaDescriptions) < 2 {
		return nil // pion binds the one section's stream itself
	}
	// Sections the answer rejects leave the BUNDLE group: their payload
	// types (for pion, a copy of the taken section's) do not count.
	count := map[uint8]int{}
	candidate := map[uint8]string{}
	for i, md := range sd.MediaDescriptions {
		if slices.Contains(rejected, i) {
			continue
		}
		repair := repairPayloads(md)
		for _, f := range md.MediaName.Formats {
			pt, err := strconv.ParseUint(f, 10, 8)
			if err != nil || pt > 127 {
				continue
			}
			count[uint8(pt)]++
			// A retransmission or FEC packet may come first; binding its
			// SSRC would give the track the wrong stream and codec.
			if needsPayloadDemux(md) && !repair[uint8(pt)] {
				candidate[uint8(pt)] = mids[i]
			}
		}
	}
	out := map[uint8]string{}
	for pt, mid := range candidate {
		if count[pt] == 1 {
			out[pt] = mid
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// needsPayloadDemux says whether pion has no way to bind the section's
// stream: it declares no SSRC, is no simulcast, and has no rid extension
// (with one, pion probes the stream's first packets itself).
func needsPayloadDemux(md *sdp.MediaDescription) bool {
	if md.MediaName.Media != "video" && md.MediaName.Media != "audio" {
		return false
	}
	for _, a := range md.Attributes {
		switch a.Key {
		case sdp.AttrKeySSRC, "rid", "simulcast":
			return false
		case sdp.AttrKeyExtMap:
			if f := strings.Fields(a.Value); len(f) > 1 && (f[1] == sdp.SDESRTPStreamIDURI || f[1] == repairedStreamIDURI) {
				return false
			}
		}
	}
	return true
}

// streamBinding is an SSRC first seen with a payload type of mid.
type streamBinding struct {
	mid  string
	ssrc uint32
	pt   uint8
}

// ptDemux watches a session's ICE packets for the first SSRC of each
// section in its table. A packet whose payload type is not (or no longer)
// wanted costs two atomic loads, not the lock: a section that never sends
// (a muted track) leaves it armed for the whole session.
type ptDemux struct {
	armed atomic.Bool
	want  [2]atomic.Uint64 // bit pt: payload type still unbound
	mu    sync.Mutex
	mids  map[uint8]string   // guarded by mu; payload type -> mid still unbound
	ssrcs []uint32           // guarded by mu; the SSRCs bound
	found chan streamBinding // one slot per section: never blocks
}

func (d *ptDemux) arm(mids map[uint8]string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.mids = mids
	sections := map[string]bool{}
	for pt, mid := range mids {
		sections[mid] = true
		d.want[pt>>6].Or(1 << (pt & 63))
	}
	d.found = make(chan streamBinding, len(sections))
	d.armed.Store(len(mids) > 0)
}

// observe looks at one packet the ICE connection received.
func (d *ptDemux) observe(b []byte) {
	if !d.armed.Load() {
		return
	}
	// RTP or RTCP by the first byte (RFC 7983), RTCP by its packet type
	// (RFC 5761 §4): payload types 64-95 with the marker bit set.
	if len(b) < 12 || b[0]&0xc0 != 0x80 || (b[1] >= 192 && b[1] <= 223) {
		return
	}
	pt := b[1] & 0x7f
	if d.want[pt>>6].Load()&(1<<(pt&63)) == 0 {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	mid, ok := d.mids[pt]
	if !ok {
		return
	}
	// The section's first stream is its stream: forget its payload types.
	maps := d.mids
	for p, m := range maps {
		if m == mid {
			delete(maps, p)
			d.want[p>>6].And(^(1 << (p & 63)))
		}
	}
	if len(maps) == 0 {
		d.armed.Store(false)
	}
	ssrc := binary.BigEndian.Uint32(b[8:12])
	d.ssrcs = append(d.ssrcs, ssrc)
	d.found <- streamBinding{mid: mid, ssrc: ssrc, pt: pt}
}

// bound says whether ssrc is a stream the demultiplexer found.
func (d *ptDemux) bound(ssrc uint32) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Contains(d.ssrcs, ssrc)
}

// unhandledSSRCFormat is the error pion's PeerConnection logs for a stream
// it drops (pion/webrtc v3 constants.go).
const unhandledSSRCFormat = "Incoming unhandled RTP ssrc(%d), OnTrack will not be fired. %v"

// demuxLoggerFactory gives a session's PeerConnection a logger that leaves
// out pion's error for the streams the session binds itself (the packet
// passed the demultiplexer before pion read it): operators would read
// that a track is lost while the stream is live.
type demuxLoggerFactory struct {
	logging.LoggerFactory
	d *ptDemux
}

func (f demuxLoggerFactory) NewLogger(scope string) logging.LeveledLogger {
	l := f.LoggerFactory.NewLogger(scope)
	if scope != "pc" {
		return l
	}
	return demuxLogger{l, f.d}
}

type demuxLogger struct {
	logging.LeveledLogger
	d *ptDemux
}

func (l demuxLogger) Errorf(format string, args ...any) {
	if format == unhandledSSRCFormat && len(args) > 0 {
		if ssrc, ok := args[0].(webrtc.SSRC); ok && l.d.bound(uint32(ssrc)) {
			return
		}
	}
	l.LeveledLogger.Errorf(format, args...)
}

// sniffUDPMux and sniffTCPMux hand the session's ICE connections to its
// demultiplexer and, on UDP, to its part in the SRTP fast path; every
// other call goes to the transport's shared mux.
type sniffUDPMux struct {
	ice.UDPMux
	d    *ptDemux
	fast *fastSession // nil without the fast path
}

func (m sniffUDPMux) GetConn(ufrag string, addr net.Addr) (net.PacketConn, error) {
	c, err := m.UDPMux.GetConn(ufrag, addr)
	if err != nil {
		return nil, err
	}
	return sniffConn{c, m.d, m.fast}, nil
}

type sniffTCPMux struct {
	ice.TCPMux
	d *ptDemux
}

func (m sniffTCPMux) GetConnByUfrag(ufrag string, isIPv6 bool, local net.IP) (net.PacketConn, error) {
	c, err := m.TCPMux.GetConnByUfrag(ufrag, isIPv6, local)
	if err != nil {
		return nil, err
	}
	return sniffConn{c, m.d, nil}, nil
}

type sniffConn struct {
	net.PacketConn
	d    *ptDemux
	fast *fastSession // nil on TCP, or without the fast path
}

func (c sniffConn) ReadFrom(b []byte) (int, net.Addr, error) {
	n, addr, err := c.PacketConn.ReadFrom(b)
	if n > 0 {
		c.d.observe(b[:n])
		if c.fast != nil {
			c.fast.inbound(b[:n], addr)
		}
	}
	return n, addr, err
}

func (c sniffConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	if c.fast != nil {
		c.fast.sniff.Outbound(b)
	}
	return c.PacketConn.WriteTo(b, addr)
}

// peekedPacket is a track's first packet, read to learn its codec before
// the track's handler runs; the track's read loop starts with it.
type peekedPacket struct {
	b  []byte
	at time.Time
}

// bindByPayloadType gives each stream the demultiplexer finds to its
// section's receiver and the session's track handler, as pion's OnTrack
// would. It runs from Answer until the session closes.
func (s *Session) bindByPayloadType(ctx context.Context) {
	for bound := 0; bound < cap(s.demux.found); bound++ {
		var b streamBinding
		select {
		case b = <-s.demux.found:
		case <-ctx.Done():
			return
		}
		// pion starts SRTP before it reports the connection connected; a
		// receiver started before SRTP fails for good.
		select {
		case <-s.srtpUp:
		case <-ctx.Done():
			return
		}
		if !s.bindStream(b) {
			return
		}
	}
}

// bindStream starts the receiver of b's section on b's SSRC, reads the
// first packet (pion learns the track's codec from it) and calls the track
// handler. It returns false when the session has closed.
func (s *Session) bindStream(b streamBinding) bool {
	var recv *webrtc.RTPReceiver
	for _, tr := range s.pc.GetTransceivers() {
		if tr.Mid() == b.mid {
			recv = tr.Receiver()
		}
	}
	if recv == nil {
		s.log.Warn("stream of an unknown section", "mid", b.mid, "ssrc", b.ssrc)
		return true
	}
	err := recv.Receive(webrtc.RTPReceiveParameters{Encodings: []webrtc.RTPDecodingParameters{
		{RTPCodingParameters: webrtc.RTPCodingParameters{SSRC: webrtc.SSRC(b.ssrc), PayloadType: webrtc.PayloadType(b.pt)}},
	}})
	if err != nil {
		s.log.Warn("cannot receive the stream found by payload type", "mid", b.mid, "ssrc", b.ssrc, "err", err)
		return true
	}
	track := recv.Track()
	if track == nil {
		return true
	}
	buf := make([]byte, maxPacket)
	n, _, err := track.Read(buf)
	if err != nil {
		return false // the session closed
	}
	s.peekMu.Lock()
	if s.peeked == nil {
		s.peeked = map[*webrtc.TrackRemote]peekedPacket{}
	}
	s.peeked[track] = peekedPacket{b: buf[:n], at: time.Now()}
	s.peekMu.Unlock()
	s.log.Info("stream bound by payload type (the offer declares no SSRC and no mid extension)", "mid", b.mid, "ssrc", b.ssrc, "pt", b.pt)
	if f := s.onTrack; f != nil {
		f(track, recv)
	}
	return true
}

// takePeeked returns the packet bindStream read from track, once.
func (s *Session) takePeeked(track *webrtc.TrackRemote) (peekedPacket, bool) {
	s.peekMu.Lock()
	defer s.peekMu.Unlock()
	p, ok := s.peeked[track]
	delete(s.peeked, track)
	return p, ok
}
