package webrtcin

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/pion/sdp/v3"

	"github.com/castbridge/castbridge/gateway/apierr"
)

// FuzzInspectOffer: any offer body is refused with INVALID_SDP or
// UNSUPPORTED_CODEC (or UNSUPPORTED_OFFER) and a message, or taken: then it takes a kind, its
// normalised SDP parses again with the same sections, and every rejection
// names one of them. Seeds are the real publishers' offers in testdata.
func FuzzInspectOffer(f *testing.F) {
	files, err := filepath.Glob("testdata/*.sdp")
	if err != nil || len(files) == 0 {
		f.Fatalf("no offers in testdata: %v", err)
	}
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(string(b))
	}
	f.Add("")
	f.Add("v=0\r\no=- 0 0 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n")
	f.Fuzz(func(t *testing.T, offer string) {
		om, err := InspectOffer(offer)
		if err != nil {
			var e *apierr.Error
			if !errors.As(err, &e) || (e.Code != apierr.CodeInvalidSDP && e.Code != apierr.CodeUnsupportedCodec && e.Code != apierr.CodeUnsupportedOffer) || e.Message == "" {
				t.Fatalf("refused with %#v", err)
			}
			return
		}
		if !om.Video && !om.Audio {
			t.Fatal("taken with neither video nor audio")
		}
		var sd sdp.SessionDescription
		if err := sd.Unmarshal([]byte(om.sdp)); err != nil {
			t.Fatalf("the normalised offer does not parse: %v\n%s", err, om.sdp)
		}
		if len(om.Rejected) != len(om.rejected) {
			t.Fatalf("%d rejections, %d rejected sections", len(om.Rejected), len(om.rejected))
		}
		for _, i := range om.rejected {
			if i < 0 || i >= len(sd.MediaDescriptions) {
				t.Fatalf("rejected section %d of %d", i, len(sd.MediaDescriptions))
			}
		}
		for _, r := range om.Rejected {
			if r.Reason == "" || !slices.Contains(om.mids, r.MID) {
				t.Fatalf("rejection %+v: no reason, or a mid the offer does not have (%v)", r, om.mids)
			}
		}
	})
}

// FuzzParseFragment: any trickle-ice-sdpfrag is refused with INVALID_SDP,
// or parsed into credentials given in pairs and candidates under named
// mids; a parsed fragment with one section per mid marshals to one that
// parses back the same.
func FuzzParseFragment(f *testing.F) {
	f.Add([]byte(chromeTrickle))
	f.Add([]byte("a=ice-ufrag:abcd\r\na=ice-pwd:0123456789abcdef01234567\r\na=ice-options:trickle\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:0\r\na=candidate:1 1 udp 1 192.0.2.9 5000 typ host\r\n"))
	f.Add([]byte("a=candidate:2 1 UDP 2122252543 [2001:db8::1] 50000 typ host\na=end-of-candidates\n"))
	f.Add([]byte("m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=candidate:3 1 tcp 1 198.51.100.7 9 typ host tcptype passive\r\n"))
	f.Fuzz(func(t *testing.T, body []byte) {
		fr, err := ParseFragment(body)
		if err != nil {
			var e *apierr.Error
			if !errors.As(err, &e) || e.Code != apierr.CodeInvalidSDP || e.Message == "" {
				t.Fatalf("refused with %#v", err)
			}
			return
		}
		if (fr.Ufrag == "") != (fr.Pwd == "") {
			t.Fatalf("credentials %q %q", fr.Ufrag, fr.Pwd)
		}
		roundTrip := len(fr.Mids) > 0
		for _, c := range fr.Candidates {
			if c.Mid != "" && !slices.Contains(fr.Mids, c.Mid) {
				t.Fatalf("candidate under mid %q, mids %v", c.Mid, fr.Mids)
			}
			if c.Value == "" || strings.ContainsRune(c.Value, '\n') {
				t.Fatalf("candidate value %q", c.Value)
			}
			roundTrip = roundTrip && c.Mid != ""
		}
		sorted := slices.Clone(fr.Mids)
		slices.Sort(sorted)
		if !roundTrip || len(slices.Compact(sorted)) != len(fr.Mids) || 2+3*len(fr.Mids)+len(fr.Candidates) > maxFragmentLines {
			return // Marshal writes one section per mid, with its candidates under it
		}
		out := fr.Marshal("audio 9 UDP/TLS/RTP/SAVPF 111")
		if len(out) > MaxFragmentBytes {
			return
		}
		back, err := ParseFragment([]byte(out))
		if err != nil {
			t.Fatalf("marshalled fragment refused: %v\n%s", err, out)
		}
		key := func(c FragmentCandidate) string { return c.Mid + "\x00" + c.Value }
		a, b := make([]string, 0, len(fr.Candidates)), make([]string, 0, len(back.Candidates))
		for _, c := range fr.Candidates {
			a = append(a, key(c))
		}
		for _, c := range back.Candidates {
			b = append(b, key(c))
		}
		slices.Sort(a)
		slices.Sort(b)
		if back.Ufrag != fr.Ufrag || back.Pwd != fr.Pwd || back.EndOfCandidates != fr.EndOfCandidates ||
			!slices.Equal(back.Mids, fr.Mids) || !slices.Equal(a, b) {
			t.Fatalf("round trip: %+v, became %+v", fr, back)
		}
	})
}
