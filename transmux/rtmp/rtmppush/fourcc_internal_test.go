package rtmppush

import (
	"errors"
	"testing"
)

func TestCheckFourCCs(t *testing.T) {
	props := map[string]any{"fmsVer": "FMS/3,0,1,123"}
	for _, c := range []struct {
		args    []any
		want    []string
		refused bool
	}{
		{[]any{props, map[string]any{"code": "NetConnection.Connect.Success"}}, []string{"av01"}, false}, // no list: not refused
		{[]any{props, map[string]any{"fourCcList": []any{"av01", "hvc1"}}}, []string{"av01"}, false},
		{[]any{map[string]any{"fourCcList": []any{"*"}}}, []string{"vp09"}, false},
		{[]any{props, map[string]any{"fourCcList": []any{"hvc1", "avc1"}}}, []string{"vp09"}, true},
		{[]any{map[string]any{"fourCcList": "vp09"}}, []string{"vp09"}, true}, // not an array: takes nothing
		{[]any{map[string]any{"fourCcList": []any{"hvc1"}}}, nil, false},
	} {
		err := checkFourCCs(c.args, c.want)
		if refused := errors.Is(err, ErrCodecRefused); refused != c.refused || (err != nil && !refused) {
			t.Errorf("%v want %v: %v", c.args, c.want, err)
		}
	}
	// What the error keeps of the ingest's list is bounded and printable.
	long := []any{"hvc1\x00\n", "a very long codec name"}
	for range 20 {
		long = append(long, "avc1")
	}
	err := checkFourCCs([]any{map[string]any{"fourCcList": long}}, []string{"vp09"})
	var cr *CodecRefusedError
	if !errors.As(err, &cr) || cr.FourCC != "vp09" || len(cr.Have) != maxFourCCsShown || cr.Have[0] != "hvc1" || cr.Have[1] != "a ve" {
		t.Fatalf("%v: %+v", err, cr)
	}
	if want := `connect: the ingest's fourCcList ["hvc1" "a ve" "avc1" "avc1" "avc1" "avc1" "avc1" "avc1"] lacks "vp09"`; err.Error() != want {
		t.Errorf("%q, want %q", err, want)
	}
	if err := checkFourCCs([]any{map[string]any{"fourCcList": []any{"hv\x01"}}}, []string{"av01"}); !errors.As(err, &cr) || cr.Have[0] != "hv?" {
		t.Errorf("an unprintable FourCC is kept as %q", cr.Have)
	}
}
