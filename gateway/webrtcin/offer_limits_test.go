package webrtcin

import (
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/castbridge/castbridge/gateway/apierr"
)

func cpuTime(t *testing.T) time.Duration {
	t.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

const offerHead = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\n"

func mline(i int) string {
	return fmt.Sprintf("m=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=mid:%d\r\na=sendonly\r\na=rtpmap:96 H264/90000\r\n", i)
}

// TestOfferLimits: hostile offers are refused with INVALID_SDP naming the
// limit, in far less than 100 ms of CPU each.
func TestOfferLimits(t *testing.T) {
	var many strings.Builder
	many.WriteString(offerHead)
	for i := range 10_000 {
		many.WriteString(mline(i))
	}
	var formats strings.Builder
	formats.WriteString(offerHead + "m=video 9 UDP/TLS/RTP/SAVPF")
	for pt := range 100 {
		fmt.Fprintf(&formats, " %d", pt)
	}
	formats.WriteString("\r\na=mid:0\r\n")
	cands := offerHead + mline(0)
	for i := range 65 {
		cands += fmt.Sprintf("a=candidate:%d 1 udp 1 127.0.0.1 %d typ host\r\n", i, 1000+i)
	}
	for _, tc := range []struct {
		name, offer, want string
	}{
		{"10000 m-lines", many.String(), "bytes; at most 65536"},
		{"1 MiB", offerHead + mline(0) + "a=x:" + strings.Repeat("a", 1<<20) + "\r\n", "bytes; at most 65536"},
		{"long line", offerHead + mline(0) + "a=x:" + strings.Repeat("a", 5000) + "\r\n", "line of 5004 characters; at most 4096"},
		{"17 m-sections", offerHead + strings.Repeat(mline(0), 17), "more than 16 media sections"},
		{"formats", formats.String(), "lists 100 formats; at most 64"},
		{"candidates", cands, "more than 64 candidates"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := cpuTime(t)
			_, err := InspectOffer(tc.offer)
			used := cpuTime(t) - start
			e := apierr.As(err)
			if e.Code != apierr.CodeInvalidSDP || !strings.Contains(e.Message, tc.want) {
				t.Fatalf("%d-byte offer: %v, want INVALID_SDP with %q", len(tc.offer), err, tc.want)
			}
			if used > 20*time.Millisecond {
				t.Errorf("%d-byte offer took %v of CPU", len(tc.offer), used)
			}
			t.Logf("%d bytes: refused in %v of CPU: %s", len(tc.offer), used, e.Message)
		})
	}
}
