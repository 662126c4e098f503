package flv

import (
	"reflect"
	"testing"
)

func TestDecodeDataRoundTrip(t *testing.T) {
	values := map[string]any{
		"a":    "z",
		"b":    map[string]any{"x": "y", "list": []any{1.0, "two", nil, true}},
		"time": 1.5,
		"last": map[string]any{"deep": map[string]any{"n": 2.0}},
	}
	body, err := AppendDataMessage(nil, "onCuePoint", values)
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeData(body)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0] != "onCuePoint" || !reflect.DeepEqual(got[1], values) {
		t.Fatalf("decoded %#v", got)
	}
}

func TestDecodeDataMalformed(t *testing.T) {
	for _, b := range [][]byte{
		{0x02, 0x00, 0x05, 'a'},                   // truncated string
		{0x0a, 0xff, 0xff, 0xff, 0xff},            // strict array claiming 4G items
		{0x03, 0x00, 0x01, 'k'},                   // object without a value or end
		{0x11},                                    // AMF3 switch: unsupported
		{0x00, 1, 2, 3},                           // truncated number
		{0x08, 0, 0, 0, 1, 0, 1, 'k', 0x02, 0, 9}, // ECMA value truncated
	} {
		if _, err := DecodeData(b); err == nil {
			t.Errorf("%x decoded without error", b)
		}
	}
}

func FuzzDecodeData(f *testing.F) {
	body, _ := AppendDataMessage(nil, "onMetaData", map[string]any{"w": 1.0, "o": map[string]any{"x": []any{"y"}}})
	f.Add(body)
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = DecodeData(b)
	})
}
