package gateway

import (
	"encoding/json"
	"testing"

	"github.com/castbridge/castbridge/transmux/format/flv"
)

// FuzzMetadata: a sendMetaData body from the API, as JSON, is either
// refused by validateMetadata or written as an AMF0 data message that the
// gateway's own bounded decoder (what ingests are tested with) reads back
// with the same handler name and values.
func FuzzMetadata(f *testing.F) {
	for _, s := range []string{
		`{"handlerName":"onCuePoint","values":{"name":"ad","time":12.5,"parameters":{"k":"v"}}}`,
		`{"handlerName":"onMetaData","values":{"title":"live","tags":["a","b"],"n":1e308}}`,
		`{"handlerName":"onCuePoint","values":{"a":{"b":{"c":{"d":{"e":{"f":1}}}}}}}`,
		`{"handlerName":"onCuePoint","values":{"":null,"u":"\u0000\ud83d\ude00"}}`,
		`{"handlerName":"onFoo","values":{}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		var body struct {
			HandlerName string `json:"handlerName"`
			Values      any    `json:"values"`
		}
		if json.Unmarshal(raw, &body) != nil {
			return
		}
		if err := validateMetadata(body.HandlerName, body.Values); err != nil {
			return
		}
		msg, err := flv.AppendDataMessage(nil, body.HandlerName, body.Values)
		if err != nil {
			t.Fatalf("validated but not written: %v", err)
		}
		vals, err := flv.DecodeData(msg)
		if err != nil {
			t.Fatalf("written but not readable: %v", err)
		}
		if len(vals) != 2 || vals[0] != body.HandlerName {
			t.Fatalf("read back %d values, handler %v; want 2, %q", len(vals), vals[0], body.HandlerName)
		}
		if depth(vals[1]) != depth(body.Values) {
			t.Fatalf("values nest %d deep read back, %d sent", depth(vals[1]), depth(body.Values))
		}
	})
}
