package mediafile

// PayloadH265 splits an H.265 access unit into RTP payloads (RFC 7798):
// a NAL unit that fits mtu goes alone (single NAL unit packet), a larger one
// in fragmentation units. pion/rtp has no H.265 payloader; this is the
// publisher side of the tests.
func PayloadH265(mtu int, nalus [][]byte) [][]byte {
	var out [][]byte
	for _, n := range nalus {
		if len(n) < 3 {
			continue
		}
		if len(n) <= mtu {
			out = append(out, n)
			continue
		}
		typ := n[0] >> 1 & 0x3f
		hdr := [2]byte{n[0]&0x81 | 49<<1, n[1]}
		data := n[2:]
		max := mtu - 3
		for first := true; len(data) > 0; first = false {
			k := min(max, len(data))
			fu := typ
			if first {
				fu |= 0x80
			}
			if k == len(data) {
				fu |= 0x40
			}
			p := make([]byte, 0, 3+k)
			p = append(p, hdr[0], hdr[1], fu)
			out = append(out, append(p, data[:k]...))
			data = data[k:]
		}
	}
	return out
}
