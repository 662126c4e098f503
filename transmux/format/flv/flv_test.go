package flv

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/yutopp/go-amf0"
	goflv "github.com/yutopp/go-flv"
	"github.com/yutopp/go-flv/tag"

	"github.com/castbridge/castbridge/transmux/format/flv/flvtest"
)

// Baseline 320x240 SPS and a PPS as produced by libx264.
var (
	testSPS = []byte{0x67, 0x42, 0xc0, 0x0d, 0xd9, 0x01, 0x41, 0xfb, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00, 0x10, 0x00, 0x00, 0x03, 0x03, 0xc0, 0xf1, 0x42, 0xa4, 0x80}
	testPPS = []byte{0x68, 0xcb, 0x83, 0xcb, 0x20}
)

func TestAVCSequenceHeader(t *testing.T) {
	prefix := []byte{0xaa}
	b, err := AppendAVCSequenceHeader(prefix, testSPS, testPPS)
	if err != nil {
		t.Fatal(err)
	}
	if b[0] != 0xaa {
		t.Fatal("prefix overwritten")
	}
	var vd tag.VideoData
	if err := tag.DecodeVideoData(bytes.NewReader(b[1:]), &vd); err != nil {
		t.Fatal(err)
	}
	if vd.FrameType != tag.FrameTypeKeyFrame || vd.CodecID != tag.CodecIDAVC ||
		vd.AVCPacketType != tag.AVCPacketTypeSequenceHeader || vd.CompositionTime != 0 {
		t.Fatalf("video header = %+v", vd)
	}
	rec, _ := io.ReadAll(vd.Data)
	want := []byte{1, 0x42, 0xc0, 0x0d, 0xff, 0xe1, 0, byte(len(testSPS))}
	want = append(want, testSPS...)
	want = append(want, 1, 0, byte(len(testPPS)))
	want = append(want, testPPS...)
	if !bytes.Equal(rec, want) {
		t.Fatalf("record\n got %x\nwant %x", rec, want)
	}
}

func TestAVCSequenceHeaderHighProfile(t *testing.T) {
	// High profile SPS (profile_idc 100, 4:2:0, 8 bit) from libx264.
	sps := []byte{0x67, 0x64, 0x00, 0x0d, 0xac, 0xd9, 0x41, 0x41, 0xfb, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00, 0x10, 0x00, 0x00, 0x03, 0x03, 0xc0, 0xf1, 0x42, 0x99, 0x60}
	var s h264.SPS
	if err := s.Unmarshal(sps); err != nil {
		t.Skipf("test SPS does not parse: %v", err)
	}
	b, err := AppendAVCSequenceHeader(nil, sps, testPPS)
	if err != nil {
		t.Fatal(err)
	}
	ext := b[len(b)-4:]
	if !bytes.Equal(ext, []byte{0xfc | 1, 0xf8, 0xf8, 0}) {
		t.Fatalf("high profile extension = %x", ext)
	}
}

func TestAVCSequenceHeaderInvalid(t *testing.T) {
	for name, c := range map[string][2][]byte{
		"empty sps":    {nil, testPPS},
		"short sps":    {{0x67, 0x42}, testPPS},
		"pps as sps":   {testPPS, testPPS},
		"empty pps":    {testSPS, nil},
		"sps as pps":   {testSPS, testSPS},
		"huge pps":     {testSPS, append([]byte{0x68}, make([]byte, 70000)...)},
		"bad high sps": {{0x67, 0x64, 0, 0x0d}, testPPS},
	} {
		dst := []byte{1, 2}
		out, err := AppendAVCSequenceHeader(dst, c[0], c[1])
		if !errors.Is(err, ErrInvalidParameterSet) {
			t.Errorf("%s: err = %v", name, err)
		}
		if !bytes.Equal(out, dst) {
			t.Errorf("%s: dst modified on error", name)
		}
	}
}

func TestAVCNALUs(t *testing.T) {
	aud := []byte{0x09, 0xf0}
	sei := []byte{0x06, 0x05, 0x01, 0x02}
	idr := []byte{0x65, 0x88, 0x84, 0x00, 0x33}
	for _, c := range []struct {
		key bool
		cts int32
	}{{true, 0}, {false, 66}, {false, -33}, {true, 1<<23 - 1}} {
		b := AppendAVCNALUs(nil, [][]byte{aud, testSPS, testPPS, sei, idr, {}}, c.key, c.cts)
		var vd tag.VideoData
		if err := tag.DecodeVideoData(bytes.NewReader(b), &vd); err != nil {
			t.Fatal(err)
		}
		wantFT := tag.FrameTypeInterFrame
		if c.key {
			wantFT = tag.FrameTypeKeyFrame
		}
		if vd.FrameType != wantFT || vd.CodecID != tag.CodecIDAVC ||
			vd.AVCPacketType != tag.AVCPacketTypeNALU || vd.CompositionTime != c.cts {
			t.Fatalf("header = %+v, want key=%v cts=%d", vd, c.key, c.cts)
		}
		payload, _ := io.ReadAll(vd.Data)
		var avcc h264.AVCC
		if err := avcc.Unmarshal(payload); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual([][]byte(avcc), [][]byte{sei, idr}) {
			t.Fatalf("NALUs = %x", avcc)
		}
	}
}

func TestSetDataFrame(t *testing.T) {
	b, err := AppendSetDataFrame(nil, Metadata{
		Width: 1280, Height: 720, FrameRate: 30, VideoCodecID: VideoCodecAVC,
		VideoDataRate: 2500, AudioCodecID: AudioCodecAAC, AudioSampleRate: 48000,
		AudioChannels: 2, Encoder: "castbridge",
	})
	if err != nil {
		t.Fatal(err)
	}
	dec := amf0.NewDecoder(bytes.NewReader(b))
	var s1, s2 string
	var arr amf0.ECMAArray
	if err := dec.Decode(&s1); err != nil {
		t.Fatal(err)
	}
	if err := dec.Decode(&s2); err != nil {
		t.Fatal(err)
	}
	if err := dec.Decode(&arr); err != nil {
		t.Fatal(err)
	}
	if s1 != "@setDataFrame" || s2 != "onMetaData" {
		t.Fatalf("handlers %q %q", s1, s2)
	}
	want := amf0.ECMAArray{
		"width": 1280.0, "height": 720.0, "framerate": 30.0, "videocodecid": 7.0,
		"videodatarate": 2500.0, "audiocodecid": 10.0, "audiosamplerate": 48000.0,
		"audiochannels": 2.0, "stereo": true, "encoder": "castbridge",
	}
	if !reflect.DeepEqual(arr, want) {
		t.Fatalf("metadata\n got %v\nwant %v", arr, want)
	}
	// The ECMA array count must match the properties written.
	if n := binary.BigEndian.Uint32(b[3+len("@setDataFrame")+3+len("onMetaData")+1:]); n != uint32(len(want)) {
		t.Fatalf("ECMA count = %d", n)
	}

	// Video only: the audio keys are left out.
	b, _ = AppendSetDataFrame(nil, Metadata{Width: 320, Height: 240, FrameRate: 30, VideoCodecID: 7})
	_, vals := decodeData(t, b)
	if _, ok := vals[1].(amf0.ECMAArray)["audiocodecid"]; ok || len(vals[1].(amf0.ECMAArray)) != 4 {
		t.Fatalf("video-only metadata = %v", vals[1])
	}
}

func decodeData(t *testing.T, b []byte) (string, []any) {
	t.Helper()
	dec := amf0.NewDecoder(bytes.NewReader(b))
	var name string
	if err := dec.Decode(&name); err != nil {
		t.Fatal(err)
	}
	var vals []any
	for {
		var v any
		if err := dec.Decode(&v); err != nil {
			if err == io.EOF {
				return name, vals
			}
			t.Fatal(err)
		}
		vals = append(vals, v)
	}
}

func TestAppendDataMessage(t *testing.T) {
	b, err := AppendDataMessage(nil, "onCuePoint", map[string]any{
		"name": "ad", "time": 12.5, "n": 3, "live": true, "none": nil,
		"list":   []any{"a", 1.0, false},
		"params": map[string]any{"k": "v"},
	})
	if err != nil {
		t.Fatal(err)
	}
	name, vals := decodeData(t, b)
	if name != "onCuePoint" || len(vals) != 1 {
		t.Fatalf("%q %v", name, vals)
	}
	want := amf0.ECMAArray{
		"name": "ad", "time": 12.5, "n": 3.0, "live": true, "none": nil,
		"list":   []any{"a", 1.0, false},
		"params": map[string]any{"k": "v"},
	}
	if !reflect.DeepEqual(vals[0], want) {
		t.Fatalf("got %#v\nwant %#v", vals[0], want)
	}

	// Deterministic output despite map iteration order.
	b2, _ := AppendDataMessage(nil, "onCuePoint", map[string]any{
		"name": "ad", "time": 12.5, "n": 3, "live": true, "none": nil,
		"list":   []any{"a", 1.0, false},
		"params": map[string]any{"k": "v"},
	})
	if !bytes.Equal(b, b2) {
		t.Fatal("output not deterministic")
	}

	b, err = AppendDataMessage(nil, "onTextData", "hello")
	if err != nil {
		t.Fatal(err)
	}
	if _, vals := decodeData(t, b); !reflect.DeepEqual(vals, []any{"hello"}) {
		t.Fatalf("scalar payload %v", vals)
	}
	b, _ = AppendDataMessage(nil, "onPing", nil)
	if _, vals := decodeData(t, b); len(vals) != 0 {
		t.Fatalf("nil payload %v", vals)
	}

	for _, bad := range []any{struct{}{}, map[string]any{"x": make(chan int)}, []any{1i}, map[string]any{"": 1}} {
		if _, err := AppendDataMessage(nil, "x", bad); !errors.Is(err, ErrUnsupportedValue) {
			t.Errorf("%T: err = %v", bad, err)
		}
	}
	deep := any(1.0)
	for range 100 {
		deep = []any{deep}
	}
	if _, err := AppendDataMessage(nil, "x", deep); !errors.Is(err, ErrUnsupportedValue) {
		t.Errorf("deep nesting: err = %v", err)
	}
}

func TestWriterRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	w, err := NewWriter(&buf, true, true)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := AppendAVCSequenceHeader(nil, testSPS, testPPS)
	tss := []uint32{0, 1000, 0xffffff, 0x01000005, 0xfffffffe}
	for _, ts := range tss {
		if err := w.WriteTag(TagVideo, ts, body); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.WriteTag(TagVideo, 0, make([]byte, 1<<24)); !errors.Is(err, ErrTagTooLarge) {
		t.Fatalf("oversized tag: %v", err)
	}

	dec, err := goflv.NewDecoder(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if h := dec.Header(); h.Flags != goflv.FlagsAudio|goflv.FlagsVideo || buf.Bytes()[4] != 0x05 {
		t.Fatalf("header flags %x", h.Flags)
	}
	for _, ts := range tss {
		var ft tag.FlvTag
		if err := dec.Decode(&ft); err != nil {
			t.Fatal(err)
		}
		if ft.TagType != tag.TagTypeVideo || ft.Timestamp != ts {
			t.Fatalf("tag %v ts %d, want %d", ft.TagType, ft.Timestamp, ts)
		}
		ft.Close()
	}
	// PreviousTagSize of the last tag.
	if n := binary.BigEndian.Uint32(buf.Bytes()[buf.Len()-4:]); n != uint32(11+len(body)) {
		t.Fatalf("PreviousTagSize %d", n)
	}
}

// TestWriterFFprobe writes a real H.264 stream and has ffprobe read it back.
func TestWriterFFprobe(t *testing.T) {
	s := flvtest.GenerateH264(t, 2)
	path := filepath.Join(t.TempDir(), "out.flv")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w, err := NewWriter(f, false, true)
	if err != nil {
		t.Fatal(err)
	}
	md, err := AppendDataMessage(nil, "onMetaData", map[string]any{
		"width": 320.0, "height": 240.0, "framerate": 30.0, "videocodecid": 7.0,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.WriteTag(TagScript, 0, md); err != nil {
		t.Fatal(err)
	}
	body, err := AppendAVCSequenceHeader(nil, s.SPS, s.PPS)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.WriteTag(TagVideo, 0, body); err != nil {
		t.Fatal(err)
	}
	for i, au := range s.Units {
		body = AppendAVCNALUs(body[:0], au.NALUs, au.Keyframe, 0)
		if err := w.WriteTag(TagVideo, uint32(i*1000/30), body); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	p := flvtest.ProbeVideo(t, path)
	if p.CodecName != "h264" || p.Width != 320 || p.Height != 240 || p.Frames != len(s.Units) || p.Frames != 60 {
		t.Fatalf("ffprobe: %+v, want h264 320x240 %d frames", p, len(s.Units))
	}
}

func BenchmarkAppendAVCNALUs(b *testing.B) {
	sei := make([]byte, 30)
	sei[0] = 0x06
	nalus := [][]byte{{0x09, 0xf0}, sei}
	for range 8 { // an IDR sliced like OBS does
		n := make([]byte, 4000)
		n[0] = 0x65
		nalus = append(nalus, n)
	}
	dst := make([]byte, 0, 64*1024)
	b.ReportAllocs()
	b.SetBytes(8 * 4000)
	for b.Loop() {
		dst = AppendAVCNALUs(dst[:0], nalus, true, 0)
	}
}

func BenchmarkWriteTag(b *testing.B) {
	w, _ := NewWriter(io.Discard, true, true)
	body := make([]byte, 8000)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		_ = w.WriteTag(TagVideo, uint32(i), body)
	}
}

func BenchmarkAppendSetDataFrame(b *testing.B) {
	md := Metadata{Width: 1280, Height: 720, FrameRate: 30, VideoCodecID: 7, AudioCodecID: 10, AudioSampleRate: 48000, AudioChannels: 2, Encoder: "castbridge"}
	dst := make([]byte, 0, 1024)
	b.ReportAllocs()
	for b.Loop() {
		dst, _ = AppendSetDataFrame(dst[:0], md)
	}
}
