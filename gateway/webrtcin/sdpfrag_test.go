package webrtcin

import (
	"errors"
	"strings"
	"testing"

	"github.com/castbridge/castbridge/gateway/apierr"
)

// chromeTrickle is a fragment as Chromium's WHIP clients PATCH it.
const chromeTrickle = "a=ice-ufrag:EsAw\r\n" +
	"a=ice-pwd:P2uYro0UCOQ4zxjKXaWCBui1\r\n" +
	"a=group:BUNDLE 0 1\r\n" +
	"m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n" +
	"a=mid:0\r\n" +
	"a=candidate:1387637174 1 udp 2122260223 192.0.2.1 61764 typ host generation 0 ufrag EsAw network-id 1\r\n" +
	"a=candidate:3471623853 1 udp 2122194687 198.51.100.2 61765 typ host generation 0 ufrag EsAw network-id 2\r\n" +
	"a=candidate:473322822 1 tcp 1518280447 192.0.2.1 9 typ host tcptype active generation 0 ufrag EsAw network-id 1\r\n" +
	"a=end-of-candidates\r\n"

func TestParseFragment(t *testing.T) {
	f, err := ParseFragment([]byte(chromeTrickle))
	if err != nil {
		t.Fatal(err)
	}
	if f.Ufrag != "EsAw" || f.Pwd != "P2uYro0UCOQ4zxjKXaWCBui1" {
		t.Errorf("credentials %q %q", f.Ufrag, f.Pwd)
	}
	if len(f.Mids) != 1 || f.Mids[0] != "0" || !f.EndOfCandidates {
		t.Errorf("mids %v end %v", f.Mids, f.EndOfCandidates)
	}
	if len(f.Candidates) != 3 {
		t.Fatalf("%d candidates, want 3", len(f.Candidates))
	}
	for _, c := range f.Candidates {
		if c.Mid != "0" {
			t.Errorf("candidate %+v", c)
		}
	}
	if f.Candidates[2].Value != "473322822 1 tcp 1518280447 192.0.2.1 9 typ host tcptype active generation 0 ufrag EsAw network-id 1" {
		t.Errorf("third candidate %q", f.Candidates[2].Value)
	}

	// LF line ends, no credentials, a session-level candidate (no m=).
	f, err = ParseFragment([]byte("a=candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host\n"))
	if err != nil {
		t.Fatal(err)
	}
	if f.Ufrag != "" || len(f.Candidates) != 1 || f.Candidates[0].Mid != "" || f.Candidates[0].Value != "1 1 udp 2130706431 127.0.0.1 5000 typ host" {
		t.Errorf("bare candidate: %+v", f)
	}
}

func TestParseFragmentRefuses(t *testing.T) {
	cases := map[string]string{
		"not sdp":           "hello\r\n",
		"bad candidate":     "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na=candidate:1 1 udp\r\n",
		"ufrag without pwd": "a=ice-ufrag:abcd\r\na=candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host\r\n",
		"two ufrags":        "a=ice-ufrag:abcd\r\na=ice-pwd:p\r\nm=audio 9 RTP/AVP 0\r\na=mid:0\r\na=ice-ufrag:efgh\r\n",
		"mid outside m=":    "a=mid:0\r\n",
		"candidate no mid":  "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host\r\n",
		"long line":         "a=candidate:" + strings.Repeat("x", maxFragmentLine) + "\r\n",
		"many lines":        strings.Repeat("a=ice-options:trickle\r\n", maxFragmentLines+1),
		"too big":           strings.Repeat("\r\n", MaxFragmentBytes+1),
	}
	for name, body := range cases {
		_, err := ParseFragment([]byte(body))
		var ae *apierr.Error
		if !errors.As(err, &ae) || ae.Code != apierr.CodeInvalidSDP || !strings.Contains(ae.Message, "trickle-ice-sdpfrag") {
			t.Errorf("%s: got %v, want INVALID_SDP naming the fragment", name, err)
		}
	}
}

func TestFragmentMarshalRoundTrip(t *testing.T) {
	in, err := ParseFragment([]byte(chromeTrickle))
	if err != nil {
		t.Fatal(err)
	}
	out := in.Marshal("audio 9 UDP/TLS/RTP/SAVPF 111")
	want := "a=ice-ufrag:EsAw\r\na=ice-pwd:P2uYro0UCOQ4zxjKXaWCBui1\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\n" +
		"a=candidate:" + in.Candidates[0].Value + "\r\na=candidate:" + in.Candidates[1].Value + "\r\na=candidate:" + in.Candidates[2].Value + "\r\n" +
		"a=end-of-candidates\r\n"
	if out != want {
		t.Errorf("marshal:\n%s\nwant:\n%s", out, want)
	}
}
