package gateway

import (
	"context"

	"github.com/castbridge/castbridge/gateway/apierr"
	"github.com/castbridge/castbridge/gateway/webrtcin"
)

// MaxICEFragmentBytes is the largest trickle-ice-sdpfrag PatchICE reads.
const MaxICEFragmentBytes = webrtcin.MaxFragmentBytes

// ETag is the stream's current ICE session id (RFC 9725 §4.3): it comes
// with the answer and changes with every ICE restart.
// An RTMP stream has none ("").
func (s *Stream) ETag() string {
	if s.session == nil {
		return ""
	}
	return s.session.ETag()
}

// PatchICE applies a publisher's trickle-ice-sdpfrag (RFC 8840): new
// candidates are handed to ICE, and new credentials restart it. match,
// when not nil, is the request's If-Match precondition on the current
// ETag. For a restart it returns the gateway's own fragment (restarted is
// true; the ETag has changed); for trickled candidates, "".
func (s *Stream) PatchICE(ctx context.Context, match func(etag string) bool, body []byte) (frag string, restarted bool, err error) {
	select {
	case <-s.ctx.Done():
		return "", false, apierr.Errorf(apierr.CodeNotFound, "stream %s has closed", s.id)
	default:
	}
	if s.session == nil {
		return "", false, apierr.Errorf(apierr.CodeInvalidRequest, "stream %s is an RTMP publish: it has no ICE session", s.id)
	}
	f, err := webrtcin.ParseFragment(body)
	if err != nil {
		return "", false, err
	}
	if s.session.IsRestart(f) {
		frag, err := s.session.Restart(ctx, match, f)
		if err != nil {
			return "", false, err
		}
		s.log.Info("ice restart answered", "candidates", len(f.Candidates))
		return frag, true, nil
	}
	if err := s.session.AddCandidates(match, f); err != nil {
		return "", false, err
	}
	s.log.Debug("trickled candidates", "candidates", len(f.Candidates), "end", f.EndOfCandidates)
	return "", false, nil
}
