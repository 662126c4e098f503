package gateway

import (
	"sync/atomic"

	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
)

// rtcpCounters counts the feedback a stream sends its publisher. They are
// read by stats and by tests that prove loss recovery really happened.
type rtcpCounters struct {
	nacks atomic.Uint64 // NACK packets
	plis  atomic.Uint64
	firs  atomic.Uint64
	rembs atomic.Uint64
}

// rtcpCounterFactory builds the interceptor for one PeerConnection. It must be
// registered before the NACK generator so the generator writes through it.
type rtcpCounterFactory struct{ c *rtcpCounters }

func (f rtcpCounterFactory) NewInterceptor(string) (interceptor.Interceptor, error) {
	return &rtcpCounter{c: f.c}, nil
}

type rtcpCounter struct {
	interceptor.NoOp
	c *rtcpCounters
}

func (r *rtcpCounter) BindRTCPWriter(w interceptor.RTCPWriter) interceptor.RTCPWriter {
	return interceptor.RTCPWriterFunc(func(pkts []rtcp.Packet, attrs interceptor.Attributes) (int, error) {
		for _, p := range pkts {
			switch p.(type) {
			case *rtcp.TransportLayerNack:
				r.c.nacks.Add(1)
			case *rtcp.PictureLossIndication:
				r.c.plis.Add(1)
			case *rtcp.FullIntraRequest:
				r.c.firs.Add(1)
			case *rtcp.ReceiverEstimatedMaximumBitrate:
				r.c.rembs.Add(1)
			}
		}
		return w.Write(pkts, attrs)
	})
}
