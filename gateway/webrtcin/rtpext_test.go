package webrtcin

import (
	"bytes"
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

// FuzzRTPExtension checks the in-place parser against pion's header parser
// on arbitrary bytes: where pion parses a header, both find the same
// extension payloads; nothing panics.
func FuzzRTPExtension(f *testing.F) {
	f.Add(extPacket(f, 0xBEDE, 1, map[uint8][]byte{3: {0x12, 0x34}}), uint8(3))
	f.Add(extPacket(f, 0x1000, 0, map[uint8][]byte{5: {1, 2, 3}}), uint8(5))
	f.Fuzz(func(t *testing.T, raw []byte, id uint8) {
		got := rtpExtension(raw, id)
		var h rtp.Header
		if _, err := h.Unmarshal(raw); err != nil || id == 0 || id > 14 && h.ExtensionProfile == 0xBEDE {
			return
		}
		if h.ExtensionProfile&0xfff0 == 0x1000 && h.ExtensionProfile != 0x1000 {
			return // two-byte form with app bits (RFC 8285 4.3), which pion does not parse
		}
		if want := h.GetExtension(id); !bytes.Equal(got, want) {
			t.Fatalf("id %d in %x: got %x, pion %x", id, raw, got, want)
		}
	})
}
