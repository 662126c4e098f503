package webrtcin

import (
	"sync/atomic"

	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
)

// Counters counts the feedback a stream sends its publisher. They are
// read by stats and by tests that prove loss recovery really happened.
type Counters struct {
	nacks atomic.Uint64 // NACK packets
	plis  atomic.Uint64

	// FastRTP counts the RTP packets the SRTP fast path decrypted
	// (fastpath.go); FastAuthFailures the ones it could not authenticate
	// and left to pion; FastInline the ones the socket reader handed to
	// the track's handler itself (fastTrack.kick).
	FastRTP, FastAuthFailures, FastInline atomic.Uint64
}

// NACKs is the number of NACK packets sent.
func (c *Counters) NACKs() uint64 { return c.nacks.Load() }

// PLIs is the number of picture loss indications sent.
func (c *Counters) PLIs() uint64 { return c.plis.Load() }

// rtcpCounterFactory builds the interceptor for one PeerConnection: every
// RTCP packet the connection writes goes through it.
type rtcpCounterFactory struct{ c *Counters }

func (f rtcpCounterFactory) NewInterceptor(string) (interceptor.Interceptor, error) {
	return &rtcpCounter{c: f.c}, nil
}

type rtcpCounter struct {
	interceptor.NoOp
	c *Counters
}

func (r *rtcpCounter) BindRTCPWriter(w interceptor.RTCPWriter) interceptor.RTCPWriter {
	return interceptor.RTCPWriterFunc(func(pkts []rtcp.Packet, attrs interceptor.Attributes) (int, error) {
		for _, p := range pkts {
			switch p.(type) {
			case *rtcp.TransportLayerNack:
				r.c.nacks.Add(1)
			case *rtcp.PictureLossIndication:
				r.c.plis.Add(1)
			}
		}
		return w.Write(pkts, attrs)
	})
}
