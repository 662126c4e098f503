package dtlssrtp

import (
	"encoding/binary"
	"testing"
)

// FuzzSniffer drives Inbound, Outbound and Write with arbitrary input. The
// input is a sequence of operations: one byte selecting the call, two bytes
// of length, then that many bytes of argument.
func FuzzSniffer(f *testing.F) {
	events, keyLog, _ := recordHandshake(f, defaultOpts(true))
	f.Add(encodeOps(events, keyLog))
	o := defaultOpts(false)
	o.peerMTU = 60
	events2, keyLog2, _ := recordHandshake(f, o)
	f.Add(encodeOps(events2, keyLog2))
	f.Add(encodeOps(nil, keyLogFor(0xaa)))
	f.Fuzz(func(t *testing.T, in []byte) {
		s := &Sniffer{}
		for len(in) >= 3 {
			op := in[0] % 3
			n := int(binary.BigEndian.Uint16(in[1:3]))
			in = in[3:]
			n = min(n, len(in))
			arg := in[:n]
			in = in[n:]
			switch op {
			case 0:
				s.Inbound(arg)
			case 1:
				s.Outbound(arg)
			case 2:
				if w, err := s.Write(arg); w != len(arg) || err != nil {
					t.Fatalf("Write = %d, %v for %d bytes", w, err, len(arg))
				}
			}
		}
		k, ok := s.Keys()
		if !ok {
			return
		}
		keyLen, err := k.Profile.KeyLen()
		if err != nil {
			t.Fatalf("keys with unusable profile %v", k.Profile)
		}
		saltLen, _ := k.Profile.SaltLen()
		if len(k.RemoteKey) != keyLen || len(k.LocalKey) != keyLen || len(k.RemoteSalt) != saltLen || len(k.LocalSalt) != saltLen {
			t.Fatalf("key lengths %d/%d/%d/%d for %v", len(k.RemoteKey), len(k.LocalKey), len(k.RemoteSalt), len(k.LocalSalt), k.Profile)
		}
	})
}

func encodeOps(events []event, keyLog []byte) []byte {
	var out []byte
	add := func(op byte, b []byte) {
		out = append(out, op)
		out = binary.BigEndian.AppendUint16(out, uint16(len(b)))
		out = append(out, b...)
	}
	for _, e := range events {
		if e.inbound {
			add(0, e.data)
		} else {
			add(1, e.data)
		}
	}
	add(2, keyLog)
	return out
}
