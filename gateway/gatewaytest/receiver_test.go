package gatewaytest

import (
	"errors"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v3"

	"github.com/castbridge/castbridge/transmux/format/mediafile"
)

// depacketizeH264 reassembles the NAL units of RTP payloads in sequence
// order (single NAL unit, STAP-A, FU-A).
func depacketizeH264(payloads [][]byte) ([][]byte, error) {
	var out [][]byte
	var fu []byte
	for _, p := range payloads {
		if len(p) == 0 {
			return nil, errors.New("empty payload")
		}
		switch typ := p[0] & 0x1f; typ {
		case 24:
			b := p[1:]
			for len(b) > 0 {
				if len(b) < 2 {
					return nil, errors.New("bad STAP-A")
				}
				l := int(b[0])<<8 | int(b[1])
				if len(b) < 2+l {
					return nil, errors.New("bad STAP-A length")
				}
				out = append(out, append([]byte(nil), b[2:2+l]...))
				b = b[2+l:]
			}
		case 28:
			if len(p) < 2 {
				return nil, errors.New("bad FU-A")
			}
			if p[1]&0x80 != 0 {
				fu = []byte{p[0]&0xe0 | p[1]&0x1f}
			} else if fu == nil {
				return nil, errors.New("FU-A without start")
			}
			fu = append(fu, p[2:]...)
			if p[1]&0x40 != 0 {
				out = append(out, fu)
				fu = nil
			}
		default:
			if typ == 0 || typ > 23 {
				return nil, fmt.Errorf("unsupported packet type %d", typ)
			}
			out = append(out, append([]byte(nil), p...))
		}
	}
	if fu != nil {
		return nil, errors.New("unterminated FU-A")
	}
	return out, nil
}

// testReceiver is a plain pion answerer standing in for the gateway.
type testReceiver struct {
	pc *webrtc.PeerConnection

	mu         sync.Mutex
	video      map[uint32][]*rtp.Packet // by RTP timestamp
	videoSpan  map[uint32][2]time.Time  // first and last arrival, by RTP timestamp
	videoSSRC  webrtc.SSRC
	audio      int
	srs        int
	gotVideo   chan struct{}
	onceVideo  sync.Once
	readersWG  sync.WaitGroup
	firstVideo time.Time
}

func newTestReceiver(t *testing.T) *testReceiver {
	t.Helper()
	me := &webrtc.MediaEngine{}
	fb := []webrtc.RTCPFeedback{{Type: "goog-remb"}, {Type: "ccm", Parameter: "fir"}}
	if err := me.RegisterCodec(webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{
		MimeType: webrtc.MimeTypeH264, ClockRate: 90000,
		SDPFmtpLine:  "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f",
		RTCPFeedback: fb,
	}, PayloadType: 102}, webrtc.RTPCodecTypeVideo); err != nil {
		t.Fatal(err)
	}
	if err := me.RegisterCodec(webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{
		MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2,
	}, PayloadType: 111}, webrtc.RTPCodecTypeAudio); err != nil {
		t.Fatal(err)
	}
	ir := &interceptor.Registry{}
	if err := webrtc.RegisterDefaultInterceptors(me, ir); err != nil {
		t.Fatal(err)
	}
	pc, err := webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithInterceptorRegistry(ir),
		webrtc.WithSettingEngine(LoopbackSettingEngine())).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	r := &testReceiver{pc: pc, video: map[uint32][]*rtp.Packet{}, videoSpan: map[uint32][2]time.Time{}, gotVideo: make(chan struct{})}
	pc.OnTrack(func(track *webrtc.TrackRemote, recv *webrtc.RTPReceiver) {
		r.readersWG.Add(2)
		go func() {
			defer r.readersWG.Done()
			for {
				pkts, _, err := recv.ReadRTCP()
				if err != nil {
					return
				}
				for _, p := range pkts {
					if _, ok := p.(*rtcp.SenderReport); ok {
						r.mu.Lock()
						r.srs++
						r.mu.Unlock()
					}
				}
			}
		}()
		go func() {
			defer r.readersWG.Done()
			for {
				pkt, _, err := track.ReadRTP()
				if err != nil {
					return
				}
				r.mu.Lock()
				if track.Kind() == webrtc.RTPCodecTypeVideo {
					r.videoSSRC = track.SSRC()
					if len(r.video) == 0 {
						r.firstVideo = time.Now()
					}
					r.video[pkt.Timestamp] = append(r.video[pkt.Timestamp], pkt)
					now := time.Now()
					span, ok := r.videoSpan[pkt.Timestamp]
					if !ok {
						span[0] = now
					}
					span[1] = now
					r.videoSpan[pkt.Timestamp] = span
					r.onceVideo.Do(func() { close(r.gotVideo) })
				} else {
					r.audio++
				}
				r.mu.Unlock()
			}
		}()
	})
	t.Cleanup(func() {
		_ = pc.Close()
		r.readersWG.Wait()
	})
	return r
}

func (r *testReceiver) answer(t *testing.T, offer string) string {
	t.Helper()
	if err := r.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
		t.Fatal(err)
	}
	ans, err := r.pc.CreateAnswer(nil)
	if err != nil {
		t.Fatal(err)
	}
	gathered := webrtc.GatheringCompletePromise(r.pc)
	if err := r.pc.SetLocalDescription(ans); err != nil {
		t.Fatal(err)
	}
	<-gathered
	return r.pc.LocalDescription().SDP
}

func (r *testReceiver) sendRTCP(t *testing.T, pkts ...rtcp.Packet) {
	t.Helper()
	if err := r.pc.WriteRTCP(pkts); err != nil {
		t.Fatal(err)
	}
}

func (r *testReceiver) senderReports() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.srs
}

func (r *testReceiver) ssrc() uint32 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return uint32(r.videoSSRC)
}

// frames returns the digest of every complete video frame received, by
// RTP timestamp, and how many timestamps were seen at all.
func (r *testReceiver) frames() (complete map[uint32]uint64, seen int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	complete = map[uint32]uint64{}
	for ts, pkts := range r.video {
		pkts = append([]*rtp.Packet(nil), pkts...)
		first := pkts[0].SequenceNumber
		sort.Slice(pkts, func(i, j int) bool {
			return int16(pkts[i].SequenceNumber-first) < int16(pkts[j].SequenceNumber-first)
		})
		// drop duplicates (retransmissions of packets already received)
		uniq := pkts[:1]
		for _, p := range pkts[1:] {
			if p.SequenceNumber != uniq[len(uniq)-1].SequenceNumber {
				uniq = append(uniq, p)
			}
		}
		ok := uniq[len(uniq)-1].Marker
		var payloads [][]byte
		for i, p := range uniq {
			if i > 0 && p.SequenceNumber != uniq[i-1].SequenceNumber+1 {
				ok = false
			}
			payloads = append(payloads, p.Payload)
		}
		if ok {
			if fu := payloads[0]; fu[0]&0x1f == 28 && fu[1]&0x80 == 0 {
				ok = false // first fragment missing
			}
		}
		if ok {
			if nalus, err := depacketizeH264(payloads); err == nil {
				complete[ts] = mediafile.SliceDigest(nalus)
			}
		}
	}
	return complete, len(r.video)
}
