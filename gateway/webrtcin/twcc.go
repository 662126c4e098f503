package webrtcin

import (
	"encoding/binary"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/interceptor/pkg/twcc"
	"github.com/pion/rtcp"
	"github.com/pion/sdp/v3"
)

// twccInterval is how often transport-wide feedback is sent (pion's default).
const twccInterval = 100 * time.Millisecond

// twccFactory builds twccFeedback, the gateway's transport-wide congestion
// control feedback (draft-holmer-rmcat-transport-wide-cc-extensions-01). It
// does what pion's twcc.SenderInterceptor does, with pion's own Recorder,
// but on the receive goroutines: each packet's arrival is recorded under a
// mutex, and the packet that finds feedback due (every twccInterval)
// builds and sends it. pion's interceptor handed every RTP packet to its
// feedback goroutine over an unbuffered channel and woke on a ticker, two
// wake-ups the load profile showed among the gateway's top costs; and a
// stream that receives nothing has nothing to report.
type twccFactory struct{}

func (twccFactory) NewInterceptor(string) (interceptor.Interceptor, error) {
	return &twccFeedback{start: time.Now()}, nil
}

type twccFeedback struct {
	interceptor.NoOp
	start time.Time

	mu       sync.Mutex
	recorder *twcc.Recorder // nil until BindRTCPWriter
	writer   interceptor.RTCPWriter
	next     int64 // when feedback is next due, µs after start
}

// BindRTCPWriter keeps the connection's RTCP writer for the feedback.
func (t *twccFeedback) BindRTCPWriter(w interceptor.RTCPWriter) interceptor.RTCPWriter {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.recorder == nil {
		t.recorder, t.writer = twcc.NewRecorder(rand.Uint32()), w
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
	return interceptor.RTPReaderFunc(func(b []byte, a interceptor.Attributes) (int, interceptor.Attributes, error) {
		n, attr, err := reader.Read(b, a)
		if err != nil {
			return 0, nil, err
		}
		ext := rtpExtension(b[:n], extID)
		if len(ext) < 2 {
			return n, attr, nil
		}
		tseq := binary.BigEndian.Uint16(ext)
		arrival := time.Since(t.start).Microseconds()
		var feedback []rtcp.Packet
		t.mu.Lock()
		if t.recorder != nil {
			t.recorder.Record(ssrc, tseq, arrival)
			if arrival >= t.next {
				t.next = arrival + twccInterval.Microseconds()
				feedback = t.recorder.BuildFeedbackPacket()
			}
		}
		w := t.writer
		t.mu.Unlock()
		if len(feedback) > 0 {
			_, _ = w.Write(feedback, nil) // a closing connection; the next packet tries again
		}
		return n, attr, nil
	})
}
