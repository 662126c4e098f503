package chunk

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"testing"
)

type msg struct {
	csid, msid, ts uint32
	typ            uint8
	payload        []byte
}

func collect(t *testing.T, r *Reader, data []byte, step int) []msg {
	t.Helper()
	var got []msg
	for len(data) > 0 {
		n := min(step, len(data))
		err := r.Feed(data[:n], func(m *Message) error {
			got = append(got, msg{m.ChunkStreamID, m.StreamID, m.Timestamp, m.TypeID, bytes.Clone(m.Payload)})
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		data = data[n:]
	}
	return got
}

func TestRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var in []msg
	for i := range 200 {
		p := make([]byte, rng.IntN(9000))
		for j := range p {
			p[j] = byte(rng.Uint32())
		}
		ts := uint32(i * 33)
		if i > 100 {
			ts = 0xffffff - 50 + uint32(i) // crosses into extended timestamps
		}
		in = append(in, msg{csid: []uint32{3, 4, 6, 70, 400}[i%5], msid: 1, ts: ts, typ: []uint8{8, 9, 18}[i%3], payload: p})
	}
	for _, chunkSize := range []uint32{128, 4096, 60000} {
		for _, step := range []int{1, 7, 1000, 1 << 20} {
			var buf bytes.Buffer
			bw := bufio.NewWriter(&buf)
			w := NewWriter(bw)
			r := NewReader()
			if chunkSize != DefaultChunkSize {
				// Announce the chunk size in-band, as a peer would.
				if err := w.WriteMessage(2, TypeSetChunkSize, 0, 0, []byte{0, byte(chunkSize >> 16), byte(chunkSize >> 8), byte(chunkSize)}); err != nil {
					t.Fatal(err)
				}
				w.SetChunkSize(chunkSize)
			}
			for _, m := range in {
				if err := w.WriteMessage(m.csid, m.typ, m.msid, m.ts, m.payload); err != nil {
					t.Fatal(err)
				}
			}
			if err := w.Flush(); err != nil {
				t.Fatal(err)
			}
			got := collect(t, r, buf.Bytes(), step)
			if chunkSize != DefaultChunkSize {
				got = got[1:]
			}
			if len(got) != len(in) {
				t.Fatalf("chunk %d step %d: %d messages, want %d", chunkSize, step, len(got), len(in))
			}
			for i := range in {
				g, w := got[i], in[i]
				if g.csid != w.csid || g.msid != w.msid || g.ts != w.ts || g.typ != w.typ || !bytes.Equal(g.payload, w.payload) {
					t.Fatalf("chunk %d step %d msg %d: got cs=%d ms=%d ts=%d type=%d len=%d, want cs=%d ms=%d ts=%d type=%d len=%d",
						chunkSize, step, i, g.csid, g.msid, g.ts, g.typ, len(g.payload), w.csid, w.msid, w.ts, w.typ, len(w.payload))
				}
			}
			if r.ChunkSize() != chunkSize {
				t.Fatalf("reader chunk size %d", r.ChunkSize())
			}
		}
	}
}

// TestCompressedHeaders feeds the header types the Writer never produces
// (types 1, 2 and 3 starting new messages), following the spec's examples
// and ffmpeg's reading of a type 3 header after a type 0 one.
func TestCompressedHeaders(t *testing.T) {
	var b []byte
	// fmt 0: csid 3, ts 1000, len 2, type 8, msid 1
	b = append(b, 0x03, 0, 0x03, 0xe8, 0, 0, 2, 8, 1, 0, 0, 0, 'a', 'b')
	// fmt 2: delta 20 -> 1020
	b = append(b, 0x83, 0, 0, 20, 'c', 'd')
	// fmt 3: new message, same delta -> 1040
	b = append(b, 0xc3, 'e', 'f')
	// fmt 1: delta 10, len 1, type 9 -> 1050
	b = append(b, 0x43, 0, 0, 10, 0, 0, 1, 9, 'g')
	// fmt 1 with extended delta
	b = append(b, 0x43, 0xff, 0xff, 0xff, 0, 0, 1, 9, 0, 0, 0, 5, 'h')
	got := collect(t, NewReader(), b, 3)
	want := []msg{
		{3, 1, 1000, 8, []byte("ab")},
		{3, 1, 1020, 8, []byte("cd")},
		{3, 1, 1040, 8, []byte("ef")},
		{3, 1, 1050, 9, []byte("g")},
		{3, 1, 1055, 9, []byte("h")},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d messages: %+v", len(got), got)
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.csid != w.csid || g.msid != w.msid || g.ts != w.ts || g.typ != w.typ || !bytes.Equal(g.payload, w.payload) {
			t.Fatalf("msg %d: got %+v want %+v", i, g, w)
		}
	}
}

func TestProtocolErrors(t *testing.T) {
	for name, b := range map[string][]byte{
		"type 3 on new stream": {0xc5, 1},
		"zero chunk size":      {0x02, 0, 0, 0, 0, 0, 4, 1, 0, 0, 0, 0, 0, 0, 0, 0},
	} {
		err := NewReader().Feed(b, func(*Message) error { return nil })
		if !errors.Is(err, ErrProtocol) {
			t.Errorf("%s: err = %v", name, err)
		}
	}
	stop := errors.New("stop")
	err := NewReader().Feed([]byte{0x03, 0, 0, 0, 0, 0, 0, 8, 1, 0, 0, 0}, func(*Message) error { return stop })
	if !errors.Is(err, stop) {
		t.Fatalf("callback error: %v", err)
	}
}

func FuzzReader(f *testing.F) {
	f.Add([]byte{0x03, 0, 0x03, 0xe8, 0, 0, 2, 8, 1, 0, 0, 0, 'a', 'b', 0xc3, 'x'})
	f.Fuzz(func(t *testing.T, b []byte) {
		r := NewReader()
		_ = r.Feed(b, func(*Message) error { return nil })
	})
}

func BenchmarkWriteMessage(b *testing.B) {
	w := NewWriter(bufio.NewWriterSize(io.Discard, 64*1024))
	w.SetChunkSize(4096)
	payload := make([]byte, 20000)
	b.ReportAllocs()
	b.SetBytes(int64(len(payload)))
	for i := 0; b.Loop(); i++ {
		_ = w.WriteMessage(6, 9, 1, uint32(i), payload)
		_ = w.Flush()
	}
}

func BenchmarkReader(b *testing.B) {
	var buf bytes.Buffer
	w := NewWriter(bufio.NewWriter(&buf))
	for i := range 100 {
		_ = w.WriteMessage(6, 9, 1, uint32(i), make([]byte, 5000))
	}
	_ = w.Flush()
	data := buf.Bytes()
	r := NewReader()
	b.ReportAllocs()
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		for p := data; len(p) > 0; p = p[min(4096, len(p)):] {
			_ = r.Feed(p[:min(4096, len(p))], func(*Message) error { return nil })
		}
	}
}

// TestMaxMessage: a message longer than its type's limit is refused from
// its header, before its payload arrives; other types keep the general
// limit.
func TestMaxMessage(t *testing.T) {
	var buf bytes.Buffer
	bw := bufio.NewWriter(&buf)
	w := NewWriter(bw)
	if err := w.WriteMessage(3, 20, 0, 0, make([]byte, 300)); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	header := buf.Bytes()[:12] // the first chunk's header only
	r := NewReader()
	r.SetMaxMessage(20, 200)
	err := r.Feed(header, func(*Message) error { t.Fatal("a message was delivered"); return nil })
	if !errors.Is(err, ErrProtocol) {
		t.Fatalf("a 300-byte command under a 200-byte limit: %v", err)
	}
	r = NewReader()
	r.SetMaxMessage(18, 200) // another type's limit does not apply
	got := 0
	if err := r.Feed(buf.Bytes(), func(m *Message) error { got = len(m.Payload); return nil }); err != nil || got != 300 {
		t.Fatalf("feed: %d bytes, %v", got, err)
	}
}
