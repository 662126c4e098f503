package flv

import (
	"errors"
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

// nested is an AMF0 command whose command object nests depth objects.
func nested(name string, depth int) []byte {
	b := []byte{0x02, 0, byte(len(name))}
	b = append(b, name...)
	b = append(b, 0x00, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0) // transaction id 1
	for range depth {
		b = append(b, 0x03, 0x00, 0x01, 'a')
	}
	b = append(b, 0x05)
	for range depth {
		b = append(b, 0x00, 0x00, 0x09)
	}
	return b
}

func TestDecodeCommand(t *testing.T) {
	c, err := DecodeCommand(nested("connect", 3))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"a": map[string]any{"a": map[string]any{"a": nil}}}
	if c.Name != "connect" || c.TxID != 1 || len(c.Args) != 1 || !reflect.DeepEqual(c.Args[0], want) {
		t.Fatalf("decoded %+v", c)
	}
	// What crashed the process through go-amf0: a million levels (over the
	// size limit) and a thousand (within it, over the depth limit).
	for _, depth := range []int{1_000_000, 1000} {
		if _, err := DecodeCommand(nested("connect", depth)); !errors.Is(err, ErrMalformedData) {
			t.Errorf("depth %d: err %v, want ErrMalformedData", depth, err)
		}
	}
	for _, b := range [][]byte{
		{},                             // nothing
		{0x00, 0, 0, 0, 0, 0, 0, 0, 0}, // a number for a name
		{0x02, 0, 1, 'x', 0x02, 0, 0},  // a string for a transaction id
	} {
		if _, err := DecodeCommand(b); err == nil {
			t.Errorf("%x decoded without error", b)
		}
	}
	// Without a transaction id (FFmpeg's onBWDone) it is 0.
	if c, err := DecodeCommand([]byte{0x02, 0, 8, 'o', 'n', 'B', 'W', 'D', 'o', 'n', 'e'}); err != nil || c.Name != "onBWDone" || c.TxID != 0 {
		t.Errorf("onBWDone: %+v %v", c, err)
	}
}

func FuzzDecodeCommand(f *testing.F) {
	f.Add(nested("connect", 2))
	f.Add(nested("_result", 40))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := DecodeCommand(b)
		if err == nil && len(b) > MaxCommandSize {
			t.Fatalf("a %d-byte command decoded", len(b))
		}
		_ = c
	})
}
