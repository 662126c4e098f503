package webrtcin

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pion/sdp/v3"
)

// sectionCodecsNested is the former sectionCodecs, which scanned every
// attribute for every format: the reference the indexed one must agree with.
func sectionCodecsNested(md *sdp.MediaDescription) []offeredCodec {
	var out []offeredCodec
	for _, f := range md.MediaName.Formats {
		pt, err := strconv.ParseUint(f, 10, 8)
		if err != nil {
			continue
		}
		c := offeredCodec{pt: uint8(pt), name: staticNames[uint8(pt)], fmtpAttr: -1}
		prefix := f + " "
		for i, a := range md.Attributes {
			switch {
			case a.Key == "rtpmap" && strings.HasPrefix(a.Value, prefix):
				c.rtpmap = strings.TrimPrefix(a.Value, prefix)
				c.name, _, _ = strings.Cut(c.rtpmap, "/")
			case a.Key == "fmtp" && strings.HasPrefix(a.Value, prefix):
				c.fmtp, c.fmtpAttr = strings.TrimPrefix(a.Value, prefix), i
			}
		}
		if c.name == "" {
			c.name = "PT " + f
		}
		out = append(out, c)
	}
	return out
}

// TestSectionCodecsAgreesWithNested: the indexed lookup gives what the
// nested scan gave, on the awkward cases too (a repeated rtpmap or fmtp:
// the last counts; static types without rtpmap; an rtpmap for a type the
// m= line does not list; a value with no space; a "96x" prefix that must
// not match 96; non-numeric formats).
func TestSectionCodecsAgreesWithNested(t *testing.T) {
	attr := func(k, v string) sdp.Attribute { return sdp.Attribute{Key: k, Value: v} }
	md := &sdp.MediaDescription{
		MediaName: sdp.MediaName{Media: "video", Formats: []string{"96", "97", "0", "8", "13", "100", "abc", "300", "98"}},
		Attributes: []sdp.Attribute{
			attr("mid", "0"),
			attr("rtpmap", "96 H264/90000"),
			attr("fmtp", "96 packetization-mode=1;profile-level-id=42e01f"),
			attr("rtpmap", "97 rtx/90000"),
			attr("fmtp", "97 apt=96"),
			attr("rtpmap", "96 VP8/90000"), // a second rtpmap for 96: the last counts
			attr("fmtp", "96 packetization-mode=1;profile-level-id=640c1f"),
			attr("rtpmap", "8"),                // no space: not an rtpmap of 8
			attr("rtpmap", "96x H265/90000"),   // not 96's
			attr("rtpmap", "111 opus/48000/2"), // not on the m= line
			attr("fmtp", "98 "),
			attr("rtpmap", "100 "),
		},
	}
	got, want := sectionCodecs(md), sectionCodecsNested(md)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("indexed:\n%+v\nnested:\n%+v", got, want)
	}
	if got[0].name != "VP8" || got[0].fmtp != "packetization-mode=1;profile-level-id=640c1f" || got[0].fmtpAttr != 6 {
		t.Errorf("96: %+v, want the last rtpmap and fmtp", got[0])
	}
	if got[3].name != "PCMA" {
		t.Errorf("8: %+v, want the static name", got[3])
	}

	// And on the offers the other tests use.
	for _, name := range []string{"aiortc.sdp", "chromium-simulcast.sdp", "chromium.sdp", "firefox.sdp", "gstreamer-balanced.sdp",
		"gstreamer-default-caps.sdp", "gstreamer-max-bundle.sdp", "obs-whip.sdp"} {
		offer := fixture(t, name)
		var sd sdp.SessionDescription
		if err := sd.Unmarshal([]byte(offer)); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for i, md := range sd.MediaDescriptions {
			if got, want := sectionCodecs(md), sectionCodecsNested(md); !reflect.DeepEqual(got, want) {
				t.Errorf("%s m-section %d: indexed %+v, nested %+v", name, i, got, want)
			}
		}
	}
}

// wideSection is an m-section with n formats, each with an rtpmap and an
// fmtp.
func wideSection(n int) *sdp.MediaDescription {
	md := &sdp.MediaDescription{MediaName: sdp.MediaName{Media: "video"}}
	for i := range n {
		pt := strconv.Itoa(i % 128)
		md.MediaName.Formats = append(md.MediaName.Formats, pt)
		md.Attributes = append(md.Attributes,
			sdp.Attribute{Key: "rtpmap", Value: pt + " H264/90000"},
			sdp.Attribute{Key: "fmtp", Value: pt + " packetization-mode=1"})
	}
	return md
}

// TestSectionCodecsLinear: eight times the formats and attributes cost
// about eight times as much, not 64 times as the nested scan did. The
// sizes are past the offer limits on purpose: sectionCodecs must not rely
// on them. Each cost is the fastest of a few timed runs, so a busy machine
// does not make it fail; the nested reference is measured the same way and
// must show its quadratic growth, else the machine is too noisy to tell.
func TestSectionCodecsLinear(t *testing.T) {
	if testing.Short() {
		t.Skip("timing test")
	}
	cost := func(fn func(*sdp.MediaDescription) []offeredCodec, n, reps int) time.Duration {
		md := wideSection(n)
		var best time.Duration
		for range 5 {
			start := time.Now()
			for range reps {
				fn(md)
			}
			if d := time.Since(start); best == 0 || d < best {
				best = d
			}
		}
		return best / time.Duration(reps)
	}
	const small, large = 200, 1600
	nested := float64(cost(sectionCodecsNested, large, 2)) / float64(cost(sectionCodecsNested, small, 64))
	ratio := float64(cost(sectionCodecs, large, 20)) / float64(cost(sectionCodecs, small, 160))
	t.Logf("8× the section: sectionCodecs %.1f× the cost, the nested scan %.1f×", ratio, nested)
	if nested < 24 {
		t.Skipf("the nested reference grew only %.1f×: too noisy to compare", nested)
	}
	if ratio > 20 {
		t.Errorf("sectionCodecs grows %.1f× for 8× the section: not linear", ratio)
	}
}

func BenchmarkSectionCodecs(b *testing.B) {
	for _, n := range []int{16, 64, 256, 1024} {
		md := wideSection(n)
		b.Run(fmt.Sprintf("formats=%d", n), func(b *testing.B) {
			for range b.N {
				sectionCodecs(md)
			}
		})
	}
}

// FuzzSectionCodecs: on any section pion parses, the indexed lookup and
// the nested reference agree.
func FuzzSectionCodecs(f *testing.F) {
	f.Add("v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96 97 0\r\na=rtpmap:96 H264/90000\r\na=fmtp:96 packetization-mode=1\r\na=rtpmap:97 rtx/90000\r\na=fmtp:97 apt=96\r\na=rtpmap:96 VP8/90000\r\n")
	f.Add("v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 RTP/AVP 8 96x 111\r\na=rtpmap:111 opus/48000/2\r\na=fmtp:111\r\na=rtpmap:96x x\r\n")
	f.Fuzz(func(t *testing.T, offer string) {
		if len(offer) > MaxOfferBytes {
			return
		}
		var sd sdp.SessionDescription
		if err := sd.Unmarshal([]byte(offer)); err != nil {
			return
		}
		for i, md := range sd.MediaDescriptions {
			if got, want := sectionCodecs(md), sectionCodecsNested(md); !reflect.DeepEqual(got, want) {
				t.Fatalf("m-section %d: indexed %+v, nested %+v", i, got, want)
			}
		}
	})
}
