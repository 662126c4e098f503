package webrtcin

import (
	"bytes"
	"strings"

	"github.com/pion/ice/v2"

	"github.com/castbridge/castbridge/gateway/apierr"
)

// Limits of a trickle-ice-sdpfrag (RFC 8840) the gateway reads: a WHIP
// client trickles a handful of candidates per request; an ICE restart
// carries one bundle section's worth.
const (
	MaxFragmentBytes = 16 << 10
	maxFragmentLines = 256
	maxFragmentLine  = 1024
)

// FragmentCandidate is one a=candidate line of a fragment and the mid of the
// m-section it came under ("" when the fragment names none).
type FragmentCandidate struct {
	Mid   string
	Value string // the attribute value, without "candidate:"
}

// Fragment is a parsed application/trickle-ice-sdpfrag body: the ICE
// credentials it carries (a restart when they differ from the current
// ones), the candidates per mid, and whether it ends the candidates.
type Fragment struct {
	Ufrag, Pwd      string
	Mids            []string // every a=mid named, in order
	Candidates      []FragmentCandidate
	EndOfCandidates bool
}

func fragErr(format string, args ...any) error {
	return apierr.Errorf(apierr.CodeInvalidSDP, "the trickle-ice-sdpfrag "+format, args...)
}

// ParseFragment reads a trickle-ice-sdpfrag. It accepts session-level
// a=ice-ufrag/a=ice-pwd/a=ice-options, m= lines opening media sections
// with their a=mid, a=ice-ufrag/a=ice-pwd, a=candidate and
// a=end-of-candidates; other attributes are ignored as RFC 8840 allows. A
// body over MaxFragmentBytes or maxFragmentLines lines, a line over
// maxFragmentLine bytes, a line that is not "x=...", a candidate pion's ICE
// cannot parse, or an ufrag without a pwd (or the other way round) is
// INVALID_SDP.
func ParseFragment(body []byte) (Fragment, error) {
	var f Fragment
	if len(body) > MaxFragmentBytes {
		return f, fragErr("is larger than %d bytes", MaxFragmentBytes)
	}
	mid := ""
	inMedia := false
	lines := 0
	for len(body) > 0 {
		var line []byte
		line, body, _ = bytes.Cut(body, []byte{'\n'})
		line = bytes.TrimSuffix(line, []byte{'\r'})
		if len(line) == 0 {
			continue
		}
		if lines++; lines > maxFragmentLines {
			return f, fragErr("has more than %d lines", maxFragmentLines)
		}
		if len(line) > maxFragmentLine {
			return f, fragErr("has a line longer than %d bytes", maxFragmentLine)
		}
		if len(line) < 2 || line[1] != '=' {
			return f, fragErr("has a line that is not an SDP line (x=...): %q", truncateLine(line))
		}
		switch line[0] {
		case 'm':
			inMedia, mid = true, ""
			continue
		case 'a':
		default:
			continue // c=, b= and the like carry nothing for ICE
		}
		name, value, _ := strings.Cut(string(line[2:]), ":")
		switch name {
		case "ice-ufrag":
			if value == "" || (f.Ufrag != "" && f.Ufrag != value) {
				return f, fragErr("has an empty ice-ufrag or two different ones")
			}
			f.Ufrag = value
		case "ice-pwd":
			if value == "" || (f.Pwd != "" && f.Pwd != value) {
				return f, fragErr("has an empty ice-pwd or two different ones")
			}
			f.Pwd = value
		case "mid":
			if !inMedia || value == "" {
				return f, fragErr("has an a=mid outside an m= section or an empty one")
			}
			mid = value
			f.Mids = append(f.Mids, mid)
		case "candidate":
			if _, err := ice.UnmarshalCandidate(value); err != nil {
				return f, fragErr("has a candidate that cannot be parsed (%v): %q", err, truncateLine(line))
			}
			if inMedia && mid == "" {
				return f, fragErr("has a candidate in an m= section without a=mid")
			}
			f.Candidates = append(f.Candidates, FragmentCandidate{Mid: mid, Value: value})
		case "end-of-candidates":
			f.EndOfCandidates = true
		}
	}
	if (f.Ufrag == "") != (f.Pwd == "") {
		return f, fragErr("must carry both a=ice-ufrag and a=ice-pwd, or neither")
	}
	return f, nil
}

func truncateLine(b []byte) string {
	if len(b) > 80 {
		return string(b[:80]) + "..."
	}
	return string(b)
}

// Marshal writes the fragment as RFC 8840 does: the credentials at session
// level, then one m-section per mid with its candidates. mline is the
// m= line (without "m=") to open each section with.
func (f Fragment) Marshal(mline string) string {
	var b strings.Builder
	if f.Ufrag != "" {
		b.WriteString("a=ice-ufrag:" + f.Ufrag + "\r\n")
		b.WriteString("a=ice-pwd:" + f.Pwd + "\r\n")
	}
	for _, mid := range f.Mids {
		b.WriteString("m=" + mline + "\r\n")
		b.WriteString("a=mid:" + mid + "\r\n")
		for _, c := range f.Candidates {
			if c.Mid == mid {
				b.WriteString("a=candidate:" + c.Value + "\r\n")
			}
		}
		if f.EndOfCandidates {
			b.WriteString("a=end-of-candidates\r\n")
		}
	}
	return b.String()
}
