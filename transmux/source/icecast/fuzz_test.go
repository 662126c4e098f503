package icecast

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

// adtsFrame is an ADTS frame (no CRC) of AAC-LC at rate index sri with
// channel configuration cc and payload bytes of data.
func adtsFrame(sri, cc byte, payload int) []byte {
	n := 7 + payload
	h := []byte{0xff, 0xf1, 1<<6 | sri<<2 | cc>>2, (cc&3)<<6 | byte(n>>11), byte(n >> 3), byte(n&7)<<5 | 0x1f, 0xfc}
	return append(h, make([]byte, payload)...)
}

// mp3Frame is an MPEG-1 Layer III frame, 128 kbit/s at 44.1 kHz, stereo
// (417 bytes; 418 padded).
func mp3Frame(padded bool) []byte {
	h := []byte{0xff, 0xfb, 0x90, 0x64}
	n := 417
	if padded {
		h[2] |= 0x02
		n++
	}
	return append(h, make([]byte, n-4)...)
}

func concat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

// FuzzParser feeds the MP3/ADTS framer arbitrary streams: it never panics,
// every frame it returns is inside what it was given, with a codec, a
// sample rate, 1..8 channels and samples, and AAC frames carry a two-byte
// AudioSpecificConfig; it ends with the stream's end, ErrNotAudio or an
// ID3 tag cut short, never looping.
func FuzzParser(f *testing.F) {
	id3 := append([]byte("ID3\x04\x00\x00\x00\x00\x00\x05"), 1, 2, 3, 4, 5)
	f.Add(concat(adtsFrame(4, 2, 100), adtsFrame(4, 2, 90), adtsFrame(4, 2, 110)))
	f.Add(concat(adtsFrame(3, 1, 50), adtsFrame(3, 1, 60), adtsFrame(11, 7, 20)))
	f.Add(concat(mp3Frame(false), mp3Frame(true), mp3Frame(false)))
	f.Add(concat(id3, mp3Frame(false), mp3Frame(false)))
	f.Add(concat([]byte("junk\xff\xf1 before"), adtsFrame(4, 2, 10), adtsFrame(4, 2, 10)))
	f.Add(concat(mp3Frame(false)[:200], adtsFrame(4, 2, 10)))
	f.Add([]byte("ID3\x04\x00\x10\x7f\x7f\x7f\x7f"))
	p := &parser{} // reused, as Run reuses it across connections: its 32 KiB buffer too
	f.Fuzz(func(t *testing.T, data []byte) {
		p.reset(bytes.NewReader(data))
		total := 0
		for frames := 0; ; frames++ {
			fr, err := p.next()
			if err != nil {
				if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, ErrNotAudio) {
					t.Fatalf("after %d frames: %v", frames, err)
				}
				return
			}
			if frames > len(data) {
				t.Fatalf("%d frames out of %d bytes", frames, len(data))
			}
			total += len(fr.Data)
			if len(fr.Data) == 0 || total > len(data) {
				t.Fatalf("frame %d: %d bytes, %d in all of %d", frames, len(fr.Data), total, len(data))
			}
			if fr.Codec != MP3 && fr.Codec != AAC || fr.SampleRate <= 0 || fr.Samples <= 0 || fr.Channels < 1 || fr.Channels > 8 {
				t.Fatalf("frame %d: %+v", frames, fr)
			}
			if fr.Codec == AAC && len(fr.ASC) != 2 {
				t.Fatalf("AAC frame %d with ASC %x", frames, fr.ASC)
			}
			if fr.Codec == MP3 && (fr.Data[0] != 0xff || fr.Data[1]&0xe0 != 0xe0) {
				t.Fatalf("MP3 frame %d does not start with a sync word: %x", frames, fr.Data[:2])
			}
		}
	})
}

// TestParserSeeds: the seeds are what they say, so the fuzz target starts
// from real framing.
func TestParserSeeds(t *testing.T) {
	p := &parser{}
	p.reset(bytes.NewReader(concat(adtsFrame(4, 2, 100), adtsFrame(4, 2, 90), mp3Frame(false), mp3Frame(true))))
	var got []string
	for {
		fr, err := p.next()
		if err != nil {
			break
		}
		got = append(got, fr.Codec.String())
		if fr.Codec == AAC && (fr.SampleRate != 44100 || fr.Channels != 2 || len(fr.Data) != 100 && len(fr.Data) != 90) {
			t.Errorf("ADTS frame %+v", fr)
		}
		if fr.Codec == MP3 && (fr.SampleRate != 44100 || fr.Channels != 2 || fr.Samples != 1152) {
			t.Errorf("MP3 frame %+v", fr)
		}
	}
	// The second ADTS frame is not followed by an ADTS header: it is not
	// confirmed, and the MP3 frames are found after it.
	if len(got) != 3 || got[0] != "AAC" || got[1] != "MP3" || got[2] != "MP3" {
		t.Errorf("frames %v, want AAC MP3 MP3", got)
	}
}
