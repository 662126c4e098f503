package dtlssrtp

import "testing"

var rtpDatagram = func() []byte {
	b := make([]byte, 1200)
	b[0], b[1] = 0x80, 96
	return b
}()

// dtlsAppData looks like an encrypted epoch-1 DTLS record: the datagrams
// that keep coming (SCTP over DTLS) after the keys are known.
var dtlsAppData = func() []byte {
	b := make([]byte, 200)
	b[0], b[1], b[2], b[4] = 23, 0xfe, 0xfd, 1
	b[12] = 200 - recordHeaderLen
	return b
}()

func finishedSniffer(tb testing.TB) *Sniffer {
	events, keyLog, _ := recordHandshake(tb, defaultOpts(true))
	s := replay(events, keyLog)
	if _, ok := s.Keys(); !ok {
		tb.Fatal("no keys")
	}
	return s
}

func TestHotPathAllocatesNothing(t *testing.T) {
	fresh := &Sniffer{}
	done := finishedSniffer(t)
	for name, f := range map[string]func(){
		"rtp before keys":  func() { fresh.Inbound(rtpDatagram) },
		"rtp after keys":   func() { done.Inbound(rtpDatagram) },
		"dtls after keys":  func() { done.Inbound(dtlsAppData); done.Outbound(dtlsAppData) },
		"write after keys": func() { _, _ = done.Write([]byte("CLIENT_RANDOM 00 00\n")) },
	} {
		if n := testing.AllocsPerRun(1000, f); n != 0 {
			t.Errorf("%s: %.1f allocations per call", name, n)
		}
	}
}

func BenchmarkInboundRTP(b *testing.B) {
	s := &Sniffer{}
	b.ReportAllocs()
	for b.Loop() {
		s.Inbound(rtpDatagram)
	}
}

func BenchmarkInboundDTLSAfterKeys(b *testing.B) {
	s := finishedSniffer(b)
	b.ReportAllocs()
	for b.Loop() {
		s.Inbound(dtlsAppData)
	}
}

// BenchmarkHandshakeReplay is the whole cost of watching one handshake.
func BenchmarkHandshakeReplay(b *testing.B) {
	events, keyLog, _ := recordHandshake(b, defaultOpts(true))
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := replay(events, keyLog).Keys(); !ok {
			b.Fatal("no keys")
		}
	}
}
