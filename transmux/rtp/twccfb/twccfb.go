// Package twccfb records the arrivals of a connection's RTP packets by their
// transport-wide sequence number and writes transport-wide congestion
// control feedback (draft-holmer-rmcat-transport-wide-cc-extensions-01 §3.1,
// RTPFB FMT 15) for them.
//
// It does what pion's twcc.Recorder does, for the same reports, without its
// per-packet work: an arrival is one slot of a fixed ring, and the feedback
// is marshalled straight into the caller's buffer (pion builds a
// rtcp.TransportLayerCC with a heap object per packet and chunk, then
// marshals it). In the gateway's 50-stream load profile TWCC was ~11% of
// the CPU.
package twccfb

import (
	"encoding/binary"
	"math"
)

const (
	// window is how many sequence numbers the ring remembers: ~12 s of
	// 2.5 Mbit/s video with Opus. Arrivals older than that are not
	// reported again.
	window = 1 << 12
	// maxEntries bounds the packets one feedback message covers (its
	// scratch arrays).
	maxEntries = 1024
	// MaxFeedbackBytes bounds what one AppendFeedback call appends, so
	// that the compound packet, once SRTCP's trailer is added, fits an
	// MTU; what does not fit waits for the next call.
	MaxFeedbackBytes = 1200
	// headerBytes is a message's fixed part; minMessageBytes what a
	// message of one arrival needs at most (a large delta, one chunk,
	// padding).
	headerBytes     = 20
	minMessageBytes = headerBytes + 2 + 2 + 3
	// deltaUnit is a receive delta's unit in µs; refUnit the reference
	// time's.
	deltaUnit = 250
	refUnit   = 64_000
	// Symbols of the packet status chunks.
	symNotReceived = 0
	symSmallDelta  = 1
	symLargeDelta  = 2
)

// notReceived marks a ring slot with no arrival.
const notReceived = math.MinInt64

// Recorder holds one connection's arrivals. Use it from one goroutine at a
// time.
type Recorder struct {
	senderSSRC, mediaSSRC uint32
	fbCount               uint8

	started bool
	last    uint16 // the last sequence number recorded, for unwrapping
	lastExt int64
	// [begin, end) is what the ring covers; next is the first sequence
	// number the next feedback reports (a late packet moves it back).
	begin, end, next int64
	times            [window]int64 // arrival in µs, by extended seq % window

	symbols [maxEntries]uint8 // AppendFeedback's scratch
}

// New returns a recorder whose feedback names senderSSRC as its sender.
func New(senderSSRC uint32) *Recorder {
	r := &Recorder{senderSSRC: senderSSRC}
	for i := range r.times {
		r.times[i] = notReceived
	}
	return r
}

// Record notes that the packet with transport-wide sequence number seq,
// of mediaSSRC, arrived at arrivalUS (µs ≥ 0 on a clock that only moves
// on). A duplicate keeps the first arrival.
func (r *Recorder) Record(mediaSSRC uint32, seq uint16, arrivalUS int64) {
	r.mediaSSRC = mediaSSRC
	arrivalUS = max(arrivalUS, 0)
	ext := int64(seq)
	if r.started {
		ext = r.lastExt + int64(int16(seq-r.last))
	}
	if !r.started || ext > r.lastExt {
		r.last, r.lastExt = seq, ext
	}
	if !r.started {
		r.started = true
		r.begin, r.end, r.next = ext, ext+1, ext
		r.times[ext&(window-1)] = arrivalUS
		return
	}
	switch {
	case ext >= r.end:
		if ext-r.begin >= window {
			// Make room: forget what falls out of the window.
			newBegin := ext - window + 1
			if newBegin >= r.end {
				r.clear(r.begin, r.end)
			} else {
				r.clear(r.begin, newBegin)
			}
			r.begin = newBegin
			r.next = max(r.next, r.begin)
		}
		r.end = ext + 1
	case ext < r.begin:
		if r.end-ext > window {
			return // older than the window
		}
		r.begin = ext // a packet sent before the first one seen
	}
	i := ext & (window - 1)
	if r.times[i] != notReceived {
		return
	}
	r.times[i] = arrivalUS
	if ext < r.next {
		r.next = ext // report it, and what follows it, again
	}
}

// clear forgets the arrivals of [from, to), which the window covers.
func (r *Recorder) clear(from, to int64) {
	for s := from; s < to; s++ {
		r.times[s&(window-1)] = notReceived
	}
}

// AppendFeedback appends feedback on the arrivals not reported yet to b,
// as one or more RTCP packets (a compound packet) of at most
// MaxFeedbackBytes in all, and returns it; b is returned unchanged when
// there is nothing to report. What does not fit is reported by the next
// call.
func (r *Recorder) AppendFeedback(b []byte) []byte {
	start := len(b)
	for r.next < r.end && MaxFeedbackBytes-(len(b)-start) >= minMessageBytes {
		first := r.next
		for first < r.end && r.times[first&(window-1)] == notReceived {
			first++
		}
		if first == r.end {
			r.next = r.end
			break
		}
		b = r.appendOne(b, first, MaxFeedbackBytes-(len(b)-start))
	}
	return b
}

// appendOne appends one feedback message of at most budget bytes
// (≥ minMessageBytes) starting at base, whose packet arrived, and moves
// next past what it covers.
func (r *Recorder) appendOne(b []byte, base int64, budget int) []byte {
	refTime := r.times[base&(window-1)] / refUnit // arrivals are ≥ 0
	start := len(b)
	b = append(b,
		0x80|15, 205, 0, 0, // V=2, FMT=15, PT=205 (RTPFB), length later
	)
	b = binary.BigEndian.AppendUint32(b, r.senderSSRC)
	b = binary.BigEndian.AppendUint32(b, r.mediaSSRC)
	b = binary.BigEndian.AppendUint16(b, uint16(base))
	countAt := len(b)
	b = append(b, 0, 0)
	b = binary.BigEndian.AppendUint32(b, uint32(refTime&0xffffff)<<8|uint32(r.fbCount))
	r.fbCount++

	// The statuses first, to know the chunks; the deltas go after them.
	prev := refTime * refUnit // the reconstructed time of the last arrival
	n, lastReceived, deltaBytes := 0, 0, 0
	var deltas [maxEntries]int16
	// fits: n entries with these delta bytes stay within budget (every
	// chunk but the last covers at least 7 entries; padding ≤ 3).
	fits := func(n, deltaBytes int) bool { return headerBytes+2*(n/7+1)+deltaBytes+3 <= budget }
	for s := base; s < r.end && n < maxEntries; s++ {
		at := r.times[s&(window-1)]
		if at == notReceived {
			if !fits(n+1, deltaBytes) {
				break
			}
			r.symbols[n] = symNotReceived
			n++
			continue
		}
		d := at - prev
		var units int64
		if d >= 0 {
			units = (d + deltaUnit/2) / deltaUnit
		} else {
			units = (d - deltaUnit/2) / deltaUnit
		}
		if units < math.MinInt16 || units > math.MaxInt16 {
			break // the next message starts here, with its own reference
		}
		sym, size := uint8(symSmallDelta), 1
		if units < 0 || units > 0xff {
			sym, size = symLargeDelta, 2
		}
		if !fits(n+1, deltaBytes+size) {
			break
		}
		deltas[n], r.symbols[n] = int16(units), sym
		deltaBytes += size
		prev += units * deltaUnit
		n++
		lastReceived = n
	}
	// A message ends at its last arrival: trailing losses are reported
	// by the next one, once a packet after them arrives.
	n = lastReceived
	r.next = base + int64(n)
	binary.BigEndian.PutUint16(b[countAt:], uint16(n))
	b = appendChunks(b, r.symbols[:n])
	for i := range n {
		switch r.symbols[i] {
		case symSmallDelta:
			b = append(b, byte(deltas[i]))
		case symLargeDelta:
			b = binary.BigEndian.AppendUint16(b, uint16(deltas[i]))
		}
	}
	if pad := (4 - (len(b)-start)%4) % 4; pad > 0 {
		for range pad - 1 {
			b = append(b, 0)
		}
		b = append(b, byte(pad))
		b[start] |= 0x20 // P: the last octet counts the padding
	}
	binary.BigEndian.PutUint16(b[start+2:], uint16((len(b)-start)/4-1))
	return b
}

// appendChunks appends the packet status chunks of syms: run-length chunks
// for runs, else status vectors (14 one-bit symbols when none is a large
// delta, else 7 two-bit ones). A last vector's unused symbols are zero.
func appendChunks(b []byte, syms []uint8) []byte {
	for i := 0; i < len(syms); {
		run := 1
		for i+run < len(syms) && syms[i+run] == syms[i] && run < 0x1fff {
			run++
		}
		oneBit := min(14, len(syms)-i)
		for k := i; k < i+oneBit; k++ {
			if syms[k] == symLargeDelta {
				oneBit = 0
				break
			}
		}
		switch {
		case run >= 14 || (run >= 7 && oneBit == 0) || i+run == len(syms) && run > 1:
			// T=0, the symbol, 13 bits of run length.
			b = binary.BigEndian.AppendUint16(b, uint16(syms[i])<<13|uint16(run))
			i += run
		case oneBit > 0:
			v := uint16(0x8000) // T=1, S=0
			for k := range oneBit {
				v |= uint16(syms[i+k]) << (13 - k)
			}
			b = binary.BigEndian.AppendUint16(b, v)
			i += oneBit
		default:
			v := uint16(0xc000) // T=1, S=1
			k := 0
			for ; k < 7 && i+k < len(syms); k++ {
				v |= uint16(syms[i+k]) << (12 - 2*k)
			}
			b = binary.BigEndian.AppendUint16(b, v)
			i += k
		}
	}
	return b
}
