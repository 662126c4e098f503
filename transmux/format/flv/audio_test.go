package flv

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg1audio"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"
	"github.com/yutopp/go-flv/tag"

	"github.com/castbridge/castbridge/transmux/format/flv/flvtest"
)

// AAC LC, 48 kHz, stereo.
var testASC = []byte{0x11, 0x90}

func decodeLegacyAudio(t *testing.T, b []byte) (tag.AudioData, []byte) {
	t.Helper()
	var ad tag.AudioData
	if err := tag.DecodeAudioData(bytes.NewReader(b), &ad); err != nil {
		t.Fatal(err)
	}
	data, _ := io.ReadAll(ad.Data)
	return ad, data
}

func TestAACTags(t *testing.T) {
	b := AppendAACSequenceHeader([]byte{0xaa}, testASC)
	if b[0] != 0xaa {
		t.Fatal("prefix overwritten")
	}
	ad, data := decodeLegacyAudio(t, b[1:])
	if ad.SoundFormat != tag.SoundFormatAAC || ad.SoundRate != tag.SoundRate44kHz ||
		ad.SoundSize != tag.SoundSize16Bit || ad.SoundType != tag.SoundTypeStereo ||
		ad.AACPacketType != tag.AACPacketTypeSequenceHeader || !bytes.Equal(data, testASC) {
		t.Fatalf("sequence header = %+v %x", ad, data)
	}
	frame := []byte{0x21, 0x10, 0x05}
	ad, data = decodeLegacyAudio(t, AppendAACRaw(nil, frame))
	if ad.SoundFormat != tag.SoundFormatAAC || ad.AACPacketType != tag.AACPacketTypeRaw || !bytes.Equal(data, frame) {
		t.Fatalf("raw = %+v %x", ad, data)
	}
	p, err := ParseAudioTag(AppendAACRaw(nil, frame))
	if err != nil || p.SoundFormat != 10 || p.PacketType != 1 || !bytes.Equal(p.Payload, frame) {
		t.Fatalf("ParseAudioTag = %+v, %v", p, err)
	}
}

func TestMP3Tag(t *testing.T) {
	frame := []byte{0xff, 0xfb, 0x90, 0x64}
	for _, c := range []struct {
		rate, ch int
		format   tag.SoundFormat
		srate    tag.SoundRate
		typ      tag.SoundType
	}{
		{44100, 2, tag.SoundFormatMP3, tag.SoundRate44kHz, tag.SoundTypeStereo},
		{48000, 1, tag.SoundFormatMP3, tag.SoundRate44kHz, tag.SoundTypeMono},
		{22050, 2, tag.SoundFormatMP3, tag.SoundRate22kHz, tag.SoundTypeStereo},
		{16000, 2, tag.SoundFormatMP3, tag.SoundRate11kHz, tag.SoundTypeStereo},
		{8000, 1, tag.SoundFormatMP3_8kHz, tag.SoundRate5_5kHz, tag.SoundTypeMono},
	} {
		ad, data := decodeLegacyAudio(t, AppendMP3(nil, frame, c.rate, c.ch))
		if ad.SoundFormat != c.format || ad.SoundRate != c.srate || ad.SoundType != c.typ || !bytes.Equal(data, frame) {
			t.Fatalf("%d Hz %d ch: %+v", c.rate, c.ch, ad)
		}
	}
}

func TestOpusTags(t *testing.T) {
	b := AppendOpusSequenceStart(nil, 2, 48000)
	// Byte by byte against the E-RTMP v2 ExAudioTagHeader and RFC 7845 5.1.
	want := []byte{0x90, 'O', 'p', 'u', 's', 'O', 'p', 'u', 's', 'H', 'e', 'a', 'd', 1, 2, 0, 0, 0x80, 0xbb, 0, 0, 0, 0, 0}
	if !bytes.Equal(b, want) {
		t.Fatalf("sequence start\n got %x\nwant %x", b, want)
	}
	p, err := ParseAudioTag(b)
	if err != nil || p.SoundFormat != 9 || p.PacketType != AudioPacketTypeSequenceStart || p.FourCC != FourCCOpus {
		t.Fatalf("parse sequence start: %+v, %v", p, err)
	}
	head := p.Payload
	if len(head) != 19 || string(head[:8]) != "OpusHead" || head[9] != 2 ||
		binary.LittleEndian.Uint32(head[12:]) != 48000 || head[18] != 0 {
		t.Fatalf("OpusHead %x", head)
	}
	if m := AppendOpusSequenceStart(nil, 1, 0); m[14] != 1 || binary.LittleEndian.Uint32(m[17:]) != 48000 {
		t.Fatalf("mono head %x", m)
	}
	pkt := []byte{0xfc, 0xff, 0xfe}
	f := AppendOpusFrame([]byte{0xaa}, pkt)
	p, err = ParseAudioTag(f[1:])
	if err != nil || f[1] != 0x91 || p.PacketType != AudioPacketTypeCodedFrames || p.FourCC != FourCCOpus || !bytes.Equal(p.Payload, pkt) {
		t.Fatalf("coded frames %x: %+v, %v", f, p, err)
	}
	for _, bad := range [][]byte{nil, {0x90, 'O'}, {0xa0}, {0x97, 'O', 'p', 'u', 's'}} {
		if _, err := ParseAudioTag(bad); err == nil {
			t.Fatalf("ParseAudioTag(%x) succeeded", bad)
		}
	}
}

func TestAudioBuildersNoAllocs(t *testing.T) {
	buf := make([]byte, 0, 4096)
	frame := make([]byte, 400)
	allocs := testing.AllocsPerRun(100, func() {
		buf = AppendAACRaw(buf[:0], frame)
		buf = AppendOpusFrame(buf[:0], frame)
		buf = AppendOpusSequenceStart(buf[:0], 2, 48000)
		buf = AppendMP3(buf[:0], frame, 44100, 2)
		buf = AppendAACSequenceHeader(buf[:0], testASC)
		_, _ = ParseAudioTag(buf)
	})
	if allocs != 0 {
		t.Fatalf("%.1f allocations", allocs)
	}
}

func ffmpegAudio(t *testing.T, format string, args ...string) []byte {
	t.Helper()
	flvtest.RequireFFmpeg(t)
	full := append([]string{"-hide_banner", "-loglevel", "error", "-f", "lavfi",
		"-i", "sine=frequency=1000:sample_rate=48000:duration=3"}, args...)
	full = append(full, "-f", format, "-")
	out, err := exec.Command("ffmpeg", full...).Output()
	if err != nil {
		t.Fatalf("ffmpeg %v: %v", args, err)
	}
	return out
}

type audioProbe struct {
	CodecName  string `json:"codec_name"`
	Profile    string `json:"profile"`
	SampleRate string `json:"sample_rate"`
	Channels   int    `json:"channels"`
	Frames     string `json:"nb_read_frames"`
	Duration   string `json:"duration"`
}

func probeAudio(t *testing.T, path string) audioProbe {
	t.Helper()
	out, err := exec.Command("ffprobe", "-v", "error", "-count_frames", "-select_streams", "a:0",
		"-show_streams", "-of", "json", path).Output()
	if err != nil {
		t.Fatalf("ffprobe: %v", err)
	}
	var res struct{ Streams []audioProbe }
	if err := json.Unmarshal(out, &res); err != nil || len(res.Streams) != 1 {
		t.Fatalf("ffprobe output %s: %v", out, err)
	}
	return res.Streams[0]
}

func writeAudioFLV(t *testing.T, name string, tags [][]byte, ts []uint32) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w, err := NewWriter(f, true, false)
	if err != nil {
		t.Fatal(err)
	}
	for i, b := range tags {
		if err := w.WriteTag(TagAudio, ts[i], b); err != nil {
			t.Fatal(err)
		}
	}
	return path
}

// An audio-only FLV of AAC built with these tags is read by ffprobe as AAC
// LC, 48 kHz stereo, every frame present.
func TestAACFileProbe(t *testing.T) {
	adts := ffmpegAudio(t, "adts", "-ac", "2", "-c:a", "aac", "-b:a", "128k")
	var pkts mpeg4audio.ADTSPackets
	if err := pkts.Unmarshal(adts); err != nil {
		t.Fatal(err)
	}
	asc, err := (&mpeg4audio.AudioSpecificConfig{Type: pkts[0].Type, SampleRate: pkts[0].SampleRate, ChannelConfig: pkts[0].ChannelConfig}).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	tags := [][]byte{AppendAACSequenceHeader(nil, asc)}
	ts := []uint32{0}
	for i, p := range pkts {
		tags = append(tags, AppendAACRaw(nil, p.AU))
		ts = append(ts, uint32(i*1024*1000/48000))
	}
	p := probeAudio(t, writeAudioFLV(t, "aac.flv", tags, ts))
	if p.CodecName != "aac" || p.Profile != "LC" || p.SampleRate != "48000" || p.Channels != 2 {
		t.Fatalf("probe %+v", p)
	}
	if n, _ := strconv.Atoi(p.Frames); n != len(pkts) {
		t.Fatalf("ffprobe read %s frames, wrote %d", p.Frames, len(pkts))
	}
}

func TestMP3FileProbe(t *testing.T) {
	mp3 := ffmpegAudio(t, "mp3", "-ac", "2", "-ar", "44100", "-c:a", "libmp3lame", "-b:a", "128k", "-write_xing", "0", "-id3v2_version", "0")
	var tags [][]byte
	var ts []uint32
	samples := 0
	for len(mp3) >= 4 {
		var h mpeg1audio.FrameHeader
		if err := h.Unmarshal(mp3); err != nil {
			t.Fatal(err)
		}
		n := h.FrameLen()
		ch := 2
		if h.ChannelMode == mpeg1audio.ChannelModeMono {
			ch = 1
		}
		tags = append(tags, AppendMP3(nil, mp3[:n], h.SampleRate, ch))
		ts = append(ts, uint32(samples*1000/h.SampleRate))
		samples += h.SampleCount()
		mp3 = mp3[n:]
	}
	p := probeAudio(t, writeAudioFLV(t, "mp3.flv", tags, ts))
	if p.CodecName != "mp3" || p.SampleRate != "44100" || p.Channels != 2 {
		t.Fatalf("probe %+v", p)
	}
	if n, _ := strconv.Atoi(p.Frames); n < len(tags)-1 {
		t.Fatalf("ffprobe read %s frames, wrote %d", p.Frames, len(tags))
	}
}
