package webrtcin

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/pion/rtp"
)

// extPacket marshals a packet with the given extensions in the given form.
func extPacket(tb testing.TB, profile uint16, csrc int, exts map[uint8][]byte) []byte {
	tb.Helper()
	h := rtp.Header{Version: 2, PayloadType: 111, SequenceNumber: 7, Timestamp: 9, SSRC: 0xabcd}
	for i := range csrc {
		h.CSRC = append(h.CSRC, uint32(i+1))
	}
	if len(exts) > 0 {
		h.Extension, h.ExtensionProfile = true, profile
		for id := uint8(1); id < 20; id++ {
			if p, ok := exts[id]; ok {
				if err := h.SetExtension(id, p); err != nil {
					tb.Fatal(err)
				}
			}
		}
	}
	raw, err := (&rtp.Packet{Header: h, Payload: []byte{1, 2, 3}}).Marshal()
	if err != nil {
		tb.Fatal(err)
	}
	return raw
}

func TestRTPExtension(t *testing.T) {
	exts := map[uint8][]byte{1: {0xaa}, 3: {0x12, 0x34}, 5: {1, 2, 3, 4, 5, 6, 7}}
	for _, tc := range []struct {
		name    string
		profile uint16
		csrc    int
	}{
		{"one-byte", 0xBEDE, 0},
		{"one-byte with CSRCs", 0xBEDE, 3},
		{"two-byte", 0x1000, 0},
		{"two-byte with CSRCs", 0x1000, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw := extPacket(t, tc.profile, tc.csrc, exts)
			for id := uint8(0); id < 16; id++ {
				got := rtpExtension(raw, id)
				want := exts[id]
				if id == 0 {
					want = nil
				}
				if !bytes.Equal(got, want) {
					t.Errorf("id %d: got %x, want %x", id, got, want)
				}
			}
		})
	}
	if got := rtpExtension(extPacket(t, 0xBEDE, 0, nil), 3); got != nil {
		t.Errorf("no extension: got %x", got)
	}
	// truncated: the extension length points past the packet
	raw := extPacket(t, 0xBEDE, 0, exts)
	if got := rtpExtension(raw[:16], 5); got != nil {
		t.Errorf("truncated: got %x", got)
	}
}

// FuzzRTPExtension checks the in-place parser on arbitrary bytes: what it
// finds lies inside the packet's extension block, and where pion's header
// parser reads the block alone, both find the same extension payloads.
// pion (rtp v1.8.7) bounds an element by the packet, not by the block: an
// element whose length runs past the block's end is read on into the
// payload there, where rtpExtension (RFC 8285 §4.2) finds nothing; those
// packets are not compared.
func FuzzRTPExtension(f *testing.F) {
	f.Add(extPacket(f, 0xBEDE, 1, map[uint8][]byte{3: {0x12, 0x34}}), uint8(3))
	f.Add(extPacket(f, 0x1000, 0, map[uint8][]byte{5: {1, 2, 3}}), uint8(5))
	f.Add(extPacket(f, 0xBEDE, 0, map[uint8][]byte{1: {0xaa}, 3: {0x12, 0x34}, 5: {1, 2, 3, 4, 5, 6, 7}}), uint8(5))
	f.Add(extPacket(f, 0x1000, 2, map[uint8][]byte{1: {}, 7: {9, 9, 9, 9, 9}}), uint8(7))
	f.Fuzz(func(t *testing.T, raw []byte, id uint8) {
		raw = raw[:len(raw):len(raw)]
		got := rtpExtension(raw, id)
		blockStart, blockEnd := 0, 0
		if len(raw) >= 12 && raw[0]&0x10 != 0 {
			off := 12 + 4*int(raw[0]&0x0f)
			if len(raw) >= off+4 {
				blockStart, blockEnd = off+4, off+4+4*int(binary.BigEndian.Uint16(raw[off+2:]))
			}
		}
		if got != nil {
			// got aliases raw: where it starts follows from its capacity.
			if start := len(raw) - cap(got); start < blockStart || start+len(got) > blockEnd {
				t.Fatalf("id %d in %x: got %x at %d..%d, outside the extension block %d..%d",
					id, raw, got, start, start+len(got), blockStart, blockEnd)
			}
		}
		var h rtp.Header
		n, err := h.Unmarshal(raw)
		if err != nil || id == 0 || id > 14 && h.ExtensionProfile == 0xBEDE || n > blockEnd {
			return // n > blockEnd: pion read an element past the block
		}
		if h.ExtensionProfile&0xfff0 == 0x1000 && h.ExtensionProfile != 0x1000 {
			return // two-byte form with app bits (RFC 8285 4.3), which pion does not parse
		}
		if want := h.GetExtension(id); !bytes.Equal(got, want) {
			t.Fatalf("id %d in %x: got %x, pion %x", id, raw, got, want)
		}
	})
}
