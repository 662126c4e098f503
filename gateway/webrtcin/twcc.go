package webrtcin

import (
	"encoding/binary"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/sdp/v3"

	"github.com/castbridge/castbridge/transmux/rtp/twccfb"
)

// twccInterval is how often transport-wide feedback is sent (pion's default).
const twccInterval = 100 * time.Millisecond

// twccFactory builds twccFeedback, the gateway's transport-wide congestion
// control feedback (draft-holmer-rmcat-transport-wide-cc-extensions-01). It
// does what pion's twcc.SenderInterceptor does, but on the receive
// goroutines and with a recorder of ours (twccfb: a ring slot a packet,
// the feedback marshalled into a reused buffer; pion's Recorder and its
// rtcp.TransportLayerCC were ~8 times the cost a packet, with two heap
// objects): each packet's arrival is recorded under a mutex, and the
// packet that finds feedback due (every twccInterval) builds and sends
// it. pion's interceptor handed every RTP packet to its feedback
// goroutine over an unbuffered channel and woke on a ticker, two wake-ups
// the load profile showed among the gateway's top costs; and a stream
// that receives nothing has nothing to report.
//
// Packets the SRTP fast path decrypted never pass pion's interceptors:
// the socket reader records them as it decrypts them (arrived), in the
// order they came off the socket, and the track's reader sends the
// feedback the packet found due. Recorded by each track's reader instead,
// audio and video came in two orders: under load the audio's reader fell
// behind the video's, whose feedback then reported the audio packets not
// yet recorded as lost (102 in 12 s of a Chromium publish beside three
// busy loops, ~5% loss to libwebrtc's estimator, which held its estimate
// under 1 Mbit/s; in one CI run it never left its 300 kbit/s start).
type twccFactory struct {
	made func(*twccFeedback) // told of the interceptor built, if not nil
}

func (f twccFactory) NewInterceptor(string) (interceptor.Interceptor, error) {
	t := &twccFeedback{start: time.Now(), extIDs: map[uint32]uint8{}}
	if f.made != nil {
		f.made(t)
	}
	return t, nil
}

type twccFeedback struct {
	interceptor.NoOp
	start time.Time

	mu       sync.Mutex
	recorder *twccfb.Recorder // nil until BindRTCPWriter
	writer   interceptor.RTCPWriter
	next     int64            // when feedback is next due, µs after start
	extIDs   map[uint32]uint8 // the extension's id by SSRC, of streams that negotiated it

	// sendMu is held while one packet builds and writes the feedback
	// into buf: pion's writer has encrypted a copy when Write returns.
	sendMu sync.Mutex
	buf    rtcp.RawPacket
	pkts   [1]rtcp.Packet
}

// BindRTCPWriter keeps the connection's RTCP writer for the feedback.
func (t *twccFeedback) BindRTCPWriter(w interceptor.RTCPWriter) interceptor.RTCPWriter {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.recorder == nil {
		t.recorder, t.writer = twccfb.New(rand.Uint32()), w
	}
	return w
}

// BindRemoteStream records the transport-wide sequence number and arrival
// time of every packet of a stream that negotiated the extension.
func (t *twccFeedback) BindRemoteStream(info *interceptor.StreamInfo, reader interceptor.RTPReader) interceptor.RTPReader {
	var extID uint8
	for _, e := range info.RTPHeaderExtensions {
		if e.URI == sdp.TransportCCURI {
			extID = uint8(e.ID)
			break
		}
	}
	if extID == 0 {
		return reader
	}
	ssrc := info.SSRC
	t.mu.Lock()
	t.extIDs[ssrc] = extID
	t.mu.Unlock()
	return interceptor.RTPReaderFunc(func(b []byte, a interceptor.Attributes) (int, interceptor.Attributes, error) {
		n, attr, err := reader.Read(b, a)
		if err != nil {
			return 0, nil, err
		}
		if t.note(ssrc, extID, b[:n], time.Now()) {
			t.send()
		}
		return n, attr, nil
	})
}

// UnbindRemoteStream forgets the stream's extension id.
func (t *twccFeedback) UnbindRemoteStream(info *interceptor.StreamInfo) {
	t.mu.Lock()
	delete(t.extIDs, info.SSRC)
	t.mu.Unlock()
}

// arrived records a packet of ssrc that arrived at at, if its stream
// negotiated the extension, and says whether feedback is due: the caller
// then calls send, off the socket reader.
func (t *twccFeedback) arrived(ssrc uint32, pkt []byte, at time.Time) bool {
	return t.note(ssrc, 0, pkt, at)
}

// note records pkt of ssrc, whose extension id is extID (0: the one
// BindRemoteStream noted), and says whether the feedback is due.
func (t *twccFeedback) note(ssrc uint32, extID uint8, pkt []byte, at time.Time) bool {
	arrival := at.Sub(t.start).Microseconds()
	due := false
	t.mu.Lock()
	if extID == 0 {
		extID = t.extIDs[ssrc]
	}
	if ext := rtpExtension(pkt, extID); extID != 0 && len(ext) >= 2 && t.recorder != nil {
		t.recorder.Record(ssrc, binary.BigEndian.Uint16(ext), arrival)
		if arrival >= t.next {
			t.next = arrival + twccInterval.Microseconds()
			due = true
		}
	}
	t.mu.Unlock()
	return due
}

// send writes the feedback on what arrived since the last.
func (t *twccFeedback) send() {
	t.sendMu.Lock()
	defer t.sendMu.Unlock()
	t.mu.Lock()
	t.buf = t.recorder.AppendFeedback(t.buf[:0])
	w := t.writer
	t.mu.Unlock()
	if len(t.buf) == 0 {
		return
	}
	// One RawPacket: the recorder's messages as one compound packet,
	// which pion's writer passes on as they are.
	t.pkts[0] = &t.buf
	_, _ = w.Write(t.pkts[:], nil) // a closing connection; the next packet tries again
}
