package media

import (
	"bytes"
	"encoding/hex"
	"testing"

	"github.com/castbridge/castbridge/transmux/format/flv"
)

// FuzzParamSetFromSequenceHeader feeds an RTMP publisher's video sequence
// headers (network input) to the parser: it never panics, never reads past
// the body, and what it accepts keeps the body byte for byte.
func FuzzParamSetFromSequenceHeader(f *testing.F) {
	sps, _ := hex.DecodeString("6742c01fd9005005bb0110000003001000000303c0f1832480")
	pps, _ := hex.DecodeString("68cb8cb2")
	seq, err := flv.AppendAVCSequenceHeader(nil, sps, pps)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seq)
	f.Add(seq[:len(seq)-3])
	f.Add(flv.AppendExVideoSequenceStart(nil, flv.FourCCHEVC, []byte{1, 2, 3}))
	f.Add(flv.AppendExVideoSequenceStart(nil, [4]byte{'x', 'x', 'x', 'x'}, nil))
	f.Add([]byte{0x17, 0, 0, 0, 0, 1, 0x42, 0, 0x1f, 0xff, 0xe1, 0, 0})
	f.Fuzz(func(t *testing.T, body []byte) {
		tag, err := flv.ParseVideoTag(body)
		if err != nil || !tag.SequenceStart() {
			return
		}
		ps, err := ParamSetFromSequenceHeader(body, tag)
		if err != nil {
			return
		}
		if !bytes.Equal(ps.SeqHeader, body) {
			t.Fatal("the sequence header was not kept as it came")
		}
		if !tag.Enhanced && (ps.Width <= 0 || ps.Height <= 0 || len(ps.SPS) < 4) {
			t.Fatalf("an AVC record accepted without a picture size: %+v", ps)
		}
	})
}
