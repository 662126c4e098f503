package webrtcin

import (
	"sync"
	"testing"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/interceptor/pkg/twcc"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
	"github.com/pion/srtp/v2"
)

// twccPacket is a marshalled RTP packet carrying transport-wide sequence
// number tseq in extension id 5.
func twccPacket(tb testing.TB, seq, tseq uint16) []byte {
	tb.Helper()
	ext, err := (&rtp.TransportCCExtension{TransportSequence: tseq}).Marshal()
	if err != nil {
		tb.Fatal(err)
	}
	p := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 102, SequenceNumber: seq, Timestamp: 90 * uint32(seq), SSRC: 0x1234}, Payload: make([]byte, 1100)}
	if err := p.SetExtension(5, ext); err != nil {
		tb.Fatal(err)
	}
	raw, err := p.Marshal()
	if err != nil {
		tb.Fatal(err)
	}
	return raw
}

var twccStreamInfo = &interceptor.StreamInfo{
	SSRC:                0x1234,
	RTPHeaderExtensions: []interceptor.RTPHeaderExtension{{URI: sdp.TransportCCURI, ID: 5}},
}

// rtcpSink collects the RTCP an interceptor writes, as a receiver parses
// it off the wire (the writer reuses its buffers once Write returns).
type rtcpSink struct {
	mu   sync.Mutex
	pkts []rtcp.Packet
	bad  error
}

func (s *rtcpSink) Write(pkts []rtcp.Packet, _ interceptor.Attributes) (int, error) {
	b, err := rtcp.Marshal(pkts)
	if err == nil {
		pkts, err = rtcp.Unmarshal(b)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.bad = err
		return 0, err
	}
	s.pkts = append(s.pkts, pkts...)
	return len(b), nil
}

func (s *rtcpSink) received() (n int, ssrc uint32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.bad != nil {
		return -1, 0
	}
	for _, p := range s.pkts {
		if cc, ok := p.(*rtcp.TransportLayerCC); ok {
			n += int(cc.PacketStatusCount)
			ssrc = cc.MediaSSRC
		}
	}
	return n, ssrc
}

// feeder returns an RTPReader handing out pkts in turn.
func feeder(pkts [][]byte) interceptor.RTPReader {
	i := 0
	return interceptor.RTPReaderFunc(func(b []byte, a interceptor.Attributes) (int, interceptor.Attributes, error) {
		n := copy(b, pkts[i%len(pkts)])
		i++
		return n, a, nil
	})
}

// TestTWCCFeedback: the first packet is reported at once, the next ones
// with the first packet to arrive at least twccInterval later.
func TestTWCCFeedback(t *testing.T) {
	it, err := twccFactory{}.NewInterceptor("")
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	sink := &rtcpSink{}
	it.BindRTCPWriter(sink)
	var pkts [][]byte
	for i := range 51 {
		pkts = append(pkts, twccPacket(t, uint16(1000+i), uint16(7+i)))
	}
	r := it.BindRemoteStream(twccStreamInfo, feeder(pkts))
	buf := make([]byte, 1500)
	read := func(k int) {
		for range k {
			if _, _, err := r.Read(buf, nil); err != nil {
				t.Fatal(err)
			}
		}
	}
	read(50)
	if n, ssrc := sink.received(); n != 1 || ssrc != 0x1234 {
		t.Fatalf("after 50 packets in a burst: feedback on %d packets of ssrc %x, want the first only", n, ssrc)
	}
	time.Sleep(twccInterval + 20*time.Millisecond)
	read(1)
	if n, _ := sink.received(); n != len(pkts) {
		t.Fatalf("feedback covers %d of %d packets", n, len(pkts))
	}
}

// BenchmarkTWCCRead is the per-packet cost of transport-wide CC feedback on
// the receive path: pion's SenderInterceptor (a channel send to its
// goroutine per packet) against the gateway's twccFeedback (a mutex).
func BenchmarkTWCCRead(b *testing.B) {
	pionFactory, err := twcc.NewSenderInterceptor()
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct {
		name string
		f    interceptor.Factory
	}{{"pion", pionFactory}, {"castbridge", twccFactory{}}} {
		b.Run(c.name, func(b *testing.B) {
			it, err := c.f.NewInterceptor("")
			if err != nil {
				b.Fatal(err)
			}
			defer it.Close()
			it.BindRTCPWriter(&rtcpSink{})
			var pkts [][]byte
			for i := range 1024 {
				pkts = append(pkts, twccPacket(b, uint16(i), uint16(i)))
			}
			r := it.BindRemoteStream(twccStreamInfo, feeder(pkts))
			buf := make([]byte, 1500)
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := r.Read(buf, nil); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestFastPathTWCCInSocketOrder: the fast path records each packet's
// arrival as the socket reader decrypts it, so the feedback reports every
// packet received even while one track's reader lags behind (here the
// audio's is never drained). Recorded by the track readers, the video's
// feedback reported the audio packets not yet read as lost, and libwebrtc
// held its estimate down on that loss.
func TestFastPathTWCCInSocketOrder(t *testing.T) {
	it, err := twccFactory{}.NewInterceptor("")
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	tw := it.(*twccFeedback)
	sink := &rtcpSink{}
	it.BindRTCPWriter(sink)
	const videoSSRC, audioSSRC = 0x1234, 0x5678
	for _, ssrc := range []uint32{videoSSRC, audioSSRC} {
		it.BindRemoteStream(&interceptor.StreamInfo{SSRC: ssrc, RTPHeaderExtensions: twccStreamInfo.RTPHeaderExtensions}, feeder([][]byte{nil}))
	}
	video, vtx, _ := keyedTrack(t, srtp.ProtectionProfileAeadAes128Gcm, videoSSRC, 256)
	audio, atx, _ := keyedTrack(t, srtp.ProtectionProfileAeadAes128Gcm, audioSSRC, 256)
	video.arrivals, audio.arrivals = tw, tw
	sent, dues := 0, 0
	drainVideo := func() {
		for video.n > 0 {
			p, _ := video.next()
			if p.feedbackDue {
				dues++
				tw.send()
			}
			video.recycle(p.b)
		}
	}
	tseq, vseq, aseq := uint16(100), uint16(1), uint16(1)
	round := func(k int) {
		for i := range k {
			// take's false for the packet that keeps pion's path warm
			// (it is queued too) does not matter here.
			if i%3 == 2 {
				audio.take(sealedTWCC(t, atx, audioSSRC, aseq, tseq), time.Now(), nil)
				aseq++
			} else {
				video.take(sealedTWCC(t, vtx, videoSSRC, vseq, tseq), time.Now(), nil)
				vseq++
			}
			tseq++
			sent++
		}
		drainVideo()
	}
	round(30)
	time.Sleep(twccInterval + 10*time.Millisecond)
	round(30)
	time.Sleep(twccInterval + 10*time.Millisecond)
	round(1)
	if dues < 2 {
		t.Fatalf("feedback was due %d times, want 3", dues)
	}
	sink.mu.Lock()
	defer sink.mu.Unlock()
	received, covered := 0, 0
	for _, p := range sink.pkts {
		if cc, ok := p.(*rtcp.TransportLayerCC); ok {
			received += len(cc.RecvDeltas)
			covered += int(cc.PacketStatusCount)
		}
	}
	if received != sent || covered != sent {
		t.Fatalf("feedback reports %d received of %d covered; %d were sent, every one received", received, covered, sent)
	}
}

// sealedTWCC is sealed with transport-wide sequence number tseq in
// extension id 5.
func sealedTWCC(t *testing.T, tx *srtp.Context, ssrc uint32, seq, tseq uint16) []byte {
	t.Helper()
	ext, err := (&rtp.TransportCCExtension{TransportSequence: tseq}).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	p := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 102, SequenceNumber: seq, Timestamp: uint32(seq) * 3000, SSRC: ssrc, Marker: true}, Payload: make([]byte, 200)}
	if err := p.SetExtension(5, ext); err != nil {
		t.Fatal(err)
	}
	return sealPacket(t, tx, &p)
}
