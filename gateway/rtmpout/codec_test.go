package rtmpout

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/castbridge/castbridge/gateway/apierr"
	"github.com/castbridge/castbridge/transmux/rtmp/rtmppush"
)

func TestFourCCList(t *testing.T) {
	for codec, want := range map[string][]string{"vp9": {"vp09"}, "av1": {"av01"}, "hevc": {"hvc1"}, "h264": nil, "": nil} {
		if got := fourCCList(codec); !slices.Equal(got, want) {
			t.Errorf("%q: %v, want %v", codec, got, want)
		}
	}
}

// TestCodecRefusedIsRejected: an ingest whose fourCcList lacks the codec is
// INGEST_REJECTED with a message that says what to do, not "unreachable".
func TestCodecRefusedIsRejected(t *testing.T) {
	ep, err := rtmppush.ParseEndpoint("rtmp://ingest.example/live/secretkey", "")
	if err != nil {
		t.Fatal(err)
	}
	e := ingestError(ep, fmt.Errorf("connect: %w", rtmppush.ErrCodecRefused))
	if e.Code != apierr.CodeIngestRejected || !strings.Contains(e.Message, "videocodec") || strings.Contains(e.Message, "secretkey") {
		t.Fatalf("%v", e)
	}
	// With what the ingest listed, the message names the codec refused.
	e = ingestError(ep, fmt.Errorf("connect: %w", &rtmppush.CodecRefusedError{FourCC: "vp09", Have: []string{"hvc1", "av01"}}))
	for _, want := range []string{"VP9", `"vp09"`, `["hvc1" "av01"]`, `videocodec "h264"`, "rtmp://ingest.example/live/****"} {
		if !strings.Contains(e.Message, want) {
			t.Errorf("message %q lacks %q", e.Message, want)
		}
	}
	if e.Code != apierr.CodeIngestRejected || strings.Contains(e.Message, "secretkey") || !errors.Is(e, rtmppush.ErrCodecRefused) {
		t.Errorf("%v", e)
	}
}
