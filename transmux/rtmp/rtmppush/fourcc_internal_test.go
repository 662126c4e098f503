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
}
