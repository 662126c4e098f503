package webrtcin

import (
	"time"

	"github.com/pion/rtcp"
)

const (
	// nackRetry is how long a NACKed packet is waited for before it is asked
	// for again: above a loopback or LAN round trip, and short enough for
	// three or four tries within the reorder buffer's wait (reorderDelay).
	nackRetry = 40 * time.Millisecond
	// nackMaxMissing bounds the packets tracked at once; past it the oldest
	// are given up (their frames are dropped and a keyframe asked for).
	nackMaxMissing = 256
	// nackMaxGap is the largest forward jump taken for loss; a larger one is
	// a publisher restarting its sequence, which is not asked for.
	nackMaxGap = 512
)

// NACKTracker decides which video packets to ask the publisher for again
// (RFC 4585 generic NACK). It runs on the video goroutine and is driven by
// arrivals: a gap can only be seen when a later packet arrives, so the first
// request goes out at once, and retries are checked on later arrivals. A
// stream with nothing missing costs a comparison per packet and no timer
// (pion's generator woke every stream every 20 ms and walked its receive
// log whether or not anything was missing).
type NACKTracker struct {
	started bool
	highest uint16
	missing []nackEntry // in sequence order, oldest first
	seqs    []uint16    // reused by due
	pairs   []rtcp.NackPair
}

type nackEntry struct {
	seq   uint16
	since time.Time // when the gap was seen
	asked time.Time // the last request; zero before the first
}

// Reset forgets the sequence and what is missing: the packets that follow
// are of another stream (a simulcast layer switched to).
func (n *NACKTracker) Reset() {
	n.started = false
	n.missing = n.missing[:0]
}

// OnPacket records that packet seq arrived.
func (n *NACKTracker) OnPacket(seq uint16, now time.Time) {
	if !n.started {
		n.started, n.highest = true, seq
		return
	}
	switch d := seq - n.highest; {
	case d == 0:
	case d < 0x8000: // ahead
		if d > nackMaxGap {
			n.missing = n.missing[:0] // a restart: the old gaps are moot
		} else {
			for s := n.highest + 1; s != seq; s++ {
				if len(n.missing) == nackMaxMissing {
					n.missing = append(n.missing[:0], n.missing[1:]...)
				}
				n.missing = append(n.missing, nackEntry{seq: s, since: now})
			}
		}
		n.highest = seq
	default: // late: a reordered packet or a retransmission
		for i := range n.missing {
			if n.missing[i].seq == seq {
				n.missing = append(n.missing[:i], n.missing[i+1:]...)
				break
			}
		}
	}
}

// Due returns the packets to ask for now, and forgets those missing for
// longer than giveUp (the reorder buffer no longer waits for them). The
// result is valid until the next call.
func (n *NACKTracker) Due(now time.Time, giveUp time.Duration) []uint16 {
	if len(n.missing) == 0 {
		return nil
	}
	n.seqs = n.seqs[:0]
	kept := n.missing[:0]
	for _, e := range n.missing {
		if now.Sub(e.since) > giveUp {
			continue
		}
		if e.asked.IsZero() || now.Sub(e.asked) >= nackRetry {
			e.asked = now
			n.seqs = append(n.seqs, e.seq)
		}
		kept = append(kept, e)
	}
	n.missing = kept
	return n.seqs
}

// Pairs packs sequence numbers (ascending, modulo wrap) into NACK
// pairs: a packet id and a bitmask of the 16 that follow it.
func (n *NACKTracker) Pairs(seqs []uint16) []rtcp.NackPair {
	n.pairs = n.pairs[:0]
	for _, s := range seqs {
		if k := len(n.pairs) - 1; k >= 0 {
			if d := s - n.pairs[k].PacketID; d >= 1 && d <= 16 {
				n.pairs[k].LostPackets |= 1 << (d - 1)
				continue
			}
		}
		n.pairs = append(n.pairs, rtcp.NackPair{PacketID: s})
	}
	return n.pairs
}
