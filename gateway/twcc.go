package gateway

import (
	"encoding/binary"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/interceptor/pkg/twcc"
	"github.com/pion/sdp/v3"
)

// twccInterval is how often transport-wide feedback is sent (pion's default).
const twccInterval = 100 * time.Millisecond

// twccFactory builds twccFeedback, the gateway's transport-wide congestion
// control feedback (draft-holmer-rmcat-transport-wide-cc-extensions-01). It
// does what pion's twcc.SenderInterceptor does, with pion's own Recorder,
// but records each packet's arrival under a mutex on the receive goroutine:
// pion's interceptor hands every RTP packet to its feedback goroutine over
// an unbuffered channel, a goroutine wake-up per packet that the load
// profile showed among the gateway's top costs.
type twccFactory struct{}

func (twccFactory) NewInterceptor(string) (interceptor.Interceptor, error) {
	return &twccFeedback{start: time.Now(), done: make(chan struct{})}, nil
}

type twccFeedback struct {
	interceptor.NoOp
	start time.Time

	mu       sync.Mutex
	recorder *twcc.Recorder // nil until BindRTCPWriter
	closed   bool
	done     chan struct{}
	wg       sync.WaitGroup
}

// BindRTCPWriter starts the feedback loop on the connection's RTCP writer.
func (t *twccFeedback) BindRTCPWriter(w interceptor.RTCPWriter) interceptor.RTCPWriter {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed || t.recorder != nil {
		return w
	}
	t.recorder = twcc.NewRecorder(rand.Uint32())
	t.wg.Add(1)
	go t.loop(w)
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
		t.mu.Lock()
		if t.recorder != nil {
			t.recorder.Record(ssrc, tseq, arrival)
		}
		t.mu.Unlock()
		return n, attr, nil
	})
}

func (t *twccFeedback) loop(w interceptor.RTCPWriter) {
	defer t.wg.Done()
	tick := time.NewTicker(twccInterval)
	defer tick.Stop()
	for {
		select {
		case <-t.done:
			return
		case <-tick.C:
			t.mu.Lock()
			pkts := t.recorder.BuildFeedbackPacket()
			t.mu.Unlock()
			if len(pkts) > 0 {
				_, _ = w.Write(pkts, nil)
			}
		}
	}
}

// Close stops the feedback loop.
func (t *twccFeedback) Close() error {
	t.mu.Lock()
	if !t.closed {
		t.closed = true
		close(t.done)
	}
	t.mu.Unlock()
	t.wg.Wait()
	return nil
}
