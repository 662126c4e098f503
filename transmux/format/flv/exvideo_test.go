package flv

import (
	"bytes"
	"encoding/binary"
	"os"
	"testing"

	"github.com/castbridge/castbridge/transmux/format/mediafile"
)

// The testdata bitstreams are three 64x48 frames of FFmpeg's testsrc2 at
// 10 fps (libvpx-vp9 realtime, libaom-av1 realtime, libx265 defaults); the
// ffmpeg-*.bin files are the configuration boxes' payloads FFmpeg 5.1's MP4
// muxer wrote for the same bitstreams (ffmpeg -i X -c copy X.mp4), the
// reference the records here are compared with.

func golden(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestVPCodecConfigurationRecordMatchesFFmpeg(t *testing.T) {
	frames, err := mediafile.ReadIVFFile("testdata/vp9.ivf")
	if err != nil {
		t.Fatal(err)
	}
	rec, info, err := AppendVPCodecConfigurationRecord(nil, frames[0])
	if err != nil {
		t.Fatal(err)
	}
	want := golden(t, "ffmpeg-vpcC.bin")
	if !bytes.Equal(rec, want) {
		t.Fatalf("vpcC = %x, FFmpeg wrote %x", rec, want)
	}
	if info.Width != 64 || info.Height != 48 || info.Profile != "profile 0 8-bit 4:2:0" {
		t.Fatalf("info = %+v", info)
	}
	if _, _, err := AppendVPCodecConfigurationRecord(nil, frames[1]); err == nil {
		t.Fatal("an inter frame made a record")
	}
}

func TestAV1CodecConfigurationRecordMatchesFFmpeg(t *testing.T) {
	frames, err := mediafile.ReadIVFFile("testdata/av1.ivf")
	if err != nil {
		t.Fatal(err)
	}
	obus, err := mediafile.SplitAV1OBUs(frames[0])
	if err != nil {
		t.Fatal(err)
	}
	var seq []byte
	for _, o := range obus {
		if AV1OBUType(o) == AV1OBUSequenceHeader {
			seq = o
		}
	}
	if seq == nil {
		t.Fatal("no sequence header in the first temporal unit")
	}
	rec, info, err := AppendAV1CodecConfigurationRecord(nil, seq)
	if err != nil {
		t.Fatal(err)
	}
	want := golden(t, "ffmpeg-av1C.bin")
	if !bytes.Equal(rec, want) {
		t.Fatalf("av1C = %x, FFmpeg wrote %x", rec, want)
	}
	if info.Width != 64 || info.Height != 48 {
		t.Fatalf("info = %+v", info)
	}
	// The OBU with its size field, as the IVF file stores it, gives the
	// same record.
	withSize, ok := AppendAV1OBU(nil, seq)
	if !ok {
		t.Fatal("AppendAV1OBU refused a sequence header")
	}
	if rec2, _, err := AppendAV1CodecConfigurationRecord(nil, withSize); err != nil || !bytes.Equal(rec2, rec) {
		t.Fatalf("record from sized OBU = %x, %v", rec2, err)
	}
}

func TestAV1FrameIsTheLowOverheadTemporalUnit(t *testing.T) {
	frames, err := mediafile.ReadIVFFile("testdata/av1.ivf")
	if err != nil {
		t.Fatal(err)
	}
	for i, tu := range frames {
		obus, err := mediafile.SplitAV1OBUs(tu)
		if err != nil {
			t.Fatal(err)
		}
		body := AppendAV1Frame(nil, obus, i == 0)
		vt, err := ParseVideoTag(body)
		if err != nil || !vt.Enhanced || vt.FourCC != FourCCAV1 || vt.PacketType != VideoPacketTypeCodedFramesX || vt.Keyframe() != (i == 0) {
			t.Fatalf("frame %d: %+v, %v", i, vt, err)
		}
		// IVF holds the temporal unit with its temporal delimiter; the
		// FLV sample is the same bytes without it.
		want := tu
		if AV1OBUType(want) == AV1OBUTemporalDelimiter {
			want = want[2:] // 0x12 0x00
		}
		if !bytes.Equal(vt.Payload, want) {
			t.Fatalf("frame %d: payload %x, want %x", i, vt.Payload, want)
		}
	}
}

func TestHEVCDecoderConfigurationRecordMatchesFFmpeg(t *testing.T) {
	frames, err := mediafile.ReadH265File("testdata/hevc.h265")
	if err != nil {
		t.Fatal(err)
	}
	if len(frames) != 3 || !frames[0].IRAP || frames[1].IRAP {
		t.Fatalf("%d access units, IRAP %v", len(frames), frames[0].IRAP)
	}
	var vps, sps, pps []byte
	for _, n := range frames[0].NALUs {
		switch HEVCNALUType(n) {
		case HEVCNALUVPS:
			vps = n
		case HEVCNALUSPS:
			sps = n
		case HEVCNALUPPS:
			pps = n
		}
	}
	rec, info, err := AppendHEVCDecoderConfigurationRecord(nil, vps, sps, pps)
	if err != nil {
		t.Fatal(err)
	}
	want := golden(t, "ffmpeg-hvcC.bin")
	// FFmpeg's record lists the SEI array too (a fourth array, prefix
	// SEI, x265's version string); castbridge's has VPS, SPS and PPS only,
	// so compare the first three arrays and the header with numOfArrays
	// masked.
	if len(rec) < 23 || len(want) < len(rec) {
		t.Fatalf("record %x, FFmpeg wrote %x", rec, want)
	}
	if !bytes.Equal(rec[:22], want[:22]) || !bytes.Equal(rec[23:], want[23:len(rec)]) {
		t.Fatalf("hvcC = %x\nFFmpeg wrote %x", rec, want)
	}
	if rec[22] != 3 {
		t.Fatalf("numOfArrays = %d", rec[22])
	}
	if info.Width != 64 || info.Height != 48 || info.Profile != "main level 1.0" {
		t.Fatalf("info = %+v", info)
	}
	if _, _, err := AppendHEVCDecoderConfigurationRecord(nil, sps, vps, pps); err == nil {
		t.Fatal("swapped parameter sets made a record")
	}
}

func TestHEVCFrames(t *testing.T) {
	frames, err := mediafile.ReadH265File("testdata/hevc.h265")
	if err != nil {
		t.Fatal(err)
	}
	var slices [][]byte
	for _, n := range frames[0].NALUs {
		if typ := HEVCNALUType(n); typ < HEVCNALUVPS || typ > HEVCNALUAUD {
			slices = append(slices, n) // slices and SEI
		}
	}
	for _, cts := range []int32{0, 40, -20} {
		body := AppendHEVCNALUs(nil, frames[0].NALUs, true, cts)
		vt, err := ParseVideoTag(body)
		if err != nil || vt.FourCC != FourCCHEVC || !vt.Keyframe() || vt.CTS != cts {
			t.Fatalf("cts %d: %+v, %v", cts, vt, err)
		}
		wantType := uint8(VideoPacketTypeCodedFrames)
		if cts == 0 {
			wantType = VideoPacketTypeCodedFramesX
		}
		if vt.PacketType != wantType {
			t.Fatalf("cts %d: packet type %d", cts, vt.PacketType)
		}
		p := vt.Payload
		for _, s := range slices {
			if len(p) < 4 || int(binary.BigEndian.Uint32(p)) != len(s) || !bytes.Equal(p[4:4+len(s)], s) {
				t.Fatalf("cts %d: payload does not hold the slices in order", cts)
			}
			p = p[4+len(s):]
		}
		if len(p) != 0 {
			t.Fatalf("cts %d: %d bytes beyond the slices (parameter sets kept?)", cts, len(p))
		}
	}
}

func TestExVideoHeaders(t *testing.T) {
	rec := []byte{1, 2, 3}
	b := AppendExVideoSequenceStart([]byte{0xee}, FourCCVP9, rec)
	// isExHeader 1, frame type 1 (key), packet type 0; FourCC; record.
	if want := []byte{0xee, 0x90, 'v', 'p', '0', '9', 1, 2, 3}; !bytes.Equal(b, want) {
		t.Fatalf("sequence start = %x, want %x", b, want)
	}
	vt, err := ParseVideoTag(b[1:])
	if err != nil || !vt.SequenceStart() || !bytes.Equal(vt.Payload, rec) {
		t.Fatalf("parsed = %+v, %v", vt, err)
	}
	if b := AppendExVideoSequenceEnd(nil, FourCCAV1); !bytes.Equal(b, []byte{0x92, 'a', 'v', '0', '1'}) {
		t.Fatalf("sequence end = %x", b)
	}
	if b := AppendVP9Frame(nil, []byte{9}, false); !bytes.Equal(b, []byte{0xa3, 'v', 'p', '0', '9', 9}) {
		t.Fatalf("vp9 inter frame = %x", b)
	}
	if got := FourCCNumber(FourCCHEVC); got != float64(0x68766331) {
		t.Fatalf("FourCCNumber(hvc1) = %v", got)
	}
	// Legacy AVC still parses.
	avc := AppendAVCNALUs(nil, [][]byte{{0x65, 1}}, true, 33)
	vt, err = ParseVideoTag(avc)
	if err != nil || vt.Enhanced || vt.CodecID != codecIDAVC || vt.PacketType != 1 || vt.CTS != 33 || !vt.Keyframe() {
		t.Fatalf("avc = %+v, %v", vt, err)
	}
	for _, bad := range [][]byte{nil, {0x17, 1}, {0x91, 'a'}, {0x95, 'a', 'v', '0', '1'}, {0x91, 'h', 'v', 'c', '1', 0}} {
		if _, err := ParseVideoTag(bad); err == nil {
			t.Fatalf("ParseVideoTag(%x) accepted it", bad)
		}
	}
}

func TestExVideoFramesDoNotAllocate(t *testing.T) {
	buf := make([]byte, 0, 4096)
	vp9 := make([]byte, 1000)
	obus := [][]byte{{0x32, 1, 2, 3}, make([]byte, 900)}
	obus[1][0] = 0x30 // OBU_FRAME without size
	nalus := [][]byte{{0x02, 0x01, 0xaa}, make([]byte, 900)}
	nalus[1][0] = 0x26
	n := testing.AllocsPerRun(100, func() {
		_ = AppendVP9Frame(buf, vp9, true)
		_ = AppendAV1Frame(buf, obus, false)
		_ = AppendHEVCNALUs(buf, nalus, true, 0)
		_, _ = ParseVideoTag(buf[:8])
	})
	if n != 0 {
		t.Fatalf("%v allocations per frame", n)
	}
}

func FuzzParseVideoTag(f *testing.F) {
	f.Add(AppendExVideoSequenceStart(nil, FourCCHEVC, []byte{1, 2}))
	f.Add(AppendHEVCNALUs(nil, [][]byte{{0x26, 1, 2}}, true, 5))
	f.Add(AppendAV1Frame(nil, [][]byte{{0x32, 1, 2}}, true))
	f.Add(AppendAVCNALUs(nil, [][]byte{{0x65, 1}}, true, 0))
	f.Add([]byte{0x91, 'h', 'v', 'c', '1', 0, 0})
	f.Fuzz(func(t *testing.T, body []byte) {
		vt, err := ParseVideoTag(body)
		if err != nil {
			return
		}
		if len(vt.Payload) > len(body) {
			t.Fatalf("payload %d bytes from a body of %d", len(vt.Payload), len(body))
		}
		if vt.Enhanced && vt.PacketType > VideoPacketTypeCodedFramesX {
			t.Fatalf("packet type %d accepted", vt.PacketType)
		}
	})
}

// FuzzConfigRecords feeds arbitrary bytes to the record builders, which
// parse what a publisher sends (a VP9 key frame, an AV1 sequence header,
// HEVC parameter sets): never a panic, and an accepted input makes a record
// of the codec's fixed layout.
func FuzzConfigRecords(f *testing.F) {
	if frames, err := mediafile.ReadIVFFile("testdata/vp9.ivf"); err == nil {
		f.Add(frames[0], []byte{}, []byte{})
	}
	if hevc, err := mediafile.ReadH265File("testdata/hevc.h265"); err == nil {
		n := hevc[0].NALUs
		if len(n) >= 3 {
			f.Add(n[0], n[1], n[2])
		}
	}
	f.Add([]byte{0x0a, 0x0a, 0, 0, 0, 2, 0xaf, 0xf7, 0x9b, 0x5f, 0x20, 0x08}, []byte{}, []byte{})
	f.Fuzz(func(t *testing.T, a, b, c []byte) {
		if rec, _, err := AppendVPCodecConfigurationRecord(nil, a); err == nil && len(rec) != 12 {
			t.Fatalf("vpcC of %d bytes", len(rec))
		}
		if rec, _, err := AppendAV1CodecConfigurationRecord(nil, a); err == nil && (len(rec) < 6 || rec[0] != 0x81) {
			t.Fatalf("av1C %x", rec)
		}
		if rec, _, err := AppendHEVCDecoderConfigurationRecord(nil, a, b, c); err == nil && (len(rec) < 23 || rec[0] != 1 || rec[22] != 3) {
			t.Fatalf("hvcC %x", rec)
		}
	})
}

// FuzzAV1Frame: OBUs from the network (split at the input's zero bytes)
// are written as an av01 CodedFramesX body that ParseVideoTag reads back,
// no larger than its size bound (5 bytes of header, each OBU plus 9 bytes
// of header and leb128 size), and never allocating past it.
func FuzzAV1Frame(f *testing.F) {
	f.Add([]byte{0x12, 0x00, 0x00, 0x0a, 0x0b, 1, 2, 3, 0x00, 0x32, 0x03, 7, 8, 9}, true)
	f.Add([]byte{0x36, 0x80, 0x80, 0x80, 0x80, 0x01}, false)
	f.Fuzz(func(t *testing.T, in []byte, key bool) {
		obus := bytes.Split(in, []byte{0})
		bound := 5
		for _, o := range obus {
			bound += len(o) + 9
		}
		body := AppendAV1Frame(nil, obus, key)
		if len(body) > bound {
			t.Fatalf("%d-byte body for OBUs bounded at %d", len(body), bound)
		}
		vt, err := ParseVideoTag(body)
		if err != nil {
			t.Fatalf("our own av01 body does not parse: %v", err)
		}
		if !vt.Enhanced || vt.FourCC != FourCCAV1 || (vt.FrameType == 1) != key {
			t.Fatalf("read back %+v", vt)
		}
	})
}
