package webrtcin

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"slices"
	"strings"

	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v3"

	"github.com/castbridge/castbridge/gateway/apierr"
)

// iceState is what trickle and restarts need of the ICE session, kept by
// Answer and Restart under Session.iceMu.
type iceState struct {
	remoteUfrag string
	mids        []string // the offer's mids
}

func newETag() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// ETag identifies the session's current ICE session (RFC 9725 §4.3): it
// is made when the offer is answered and changes with every ICE restart.
// It is an opaque token, unquoted.
func (s *Session) ETag() string {
	if p := s.etag.Load(); p != nil {
		return *p
	}
	return ""
}

// IsRestart reports whether f carries ICE credentials other than the
// publisher's current ones: then it asks for an ICE restart.
func (s *Session) IsRestart(f Fragment) bool {
	s.iceMu.Lock()
	defer s.iceMu.Unlock()
	return f.Ufrag != "" && f.Ufrag != s.ice.remoteUfrag
}

func (s *Session) precondition(match func(etag string) bool) error {
	if match != nil && !match(s.ETag()) {
		return apierr.Errorf(apierr.CodeETagMismatch,
			"the If-Match ETag is not the current ICE session's: an ICE restart replaced it; use the ETag of the last restart's answer")
	}
	return nil
}

// rememberOffer keeps the remote ufrag and the mids of an offer the
// session answered. Called with iceMu held.
func (s *Session) rememberOffer(offer string) {
	var sd sdp.SessionDescription
	if err := sd.Unmarshal([]byte(offer)); err != nil {
		return // pion accepted it; a parse failure here leaves trickle refusing mids
	}
	s.ice = iceState{remoteUfrag: ufragOf(&sd)}
	for _, md := range sd.MediaDescriptions {
		if mid, ok := md.Attribute("mid"); ok {
			s.ice.mids = append(s.ice.mids, mid)
		}
	}
}

func ufragOf(sd *sdp.SessionDescription) string {
	if u, ok := sd.Attribute("ice-ufrag"); ok {
		return u
	}
	for _, md := range sd.MediaDescriptions {
		if u, ok := md.Attribute("ice-ufrag"); ok {
			return u
		}
	}
	return ""
}

// checkMids refuses candidates for an m-section the offer did not have.
func (s *Session) checkMids(f Fragment) error {
	for _, mid := range f.Mids {
		if !slices.Contains(s.ice.mids, mid) {
			return apierr.Errorf(apierr.CodeUnknownMid, "the trickle-ice-sdpfrag names mid %q, which the offer has no m-section for (its mids: %s)",
				mid, strings.Join(s.ice.mids, ", "))
		}
	}
	return nil
}

// AddCandidates gives pion the candidates a publisher trickled (RFC 8840).
// match, when not nil, is the request's If-Match: a mismatch is
// ETAG_MISMATCH. A fragment with other credentials than the current ones
// is an ICE restart (see Restart) and INVALID_SDP here; a mid the offer
// does not have is UNKNOWN_MID. Nothing is added unless all of it is valid.
func (s *Session) AddCandidates(match func(etag string) bool, f Fragment) error {
	s.iceMu.Lock()
	defer s.iceMu.Unlock()
	if err := s.precondition(match); err != nil {
		return err
	}
	if f.Ufrag != "" && f.Ufrag != s.ice.remoteUfrag {
		return apierr.Errorf(apierr.CodeInvalidSDP, "the trickle-ice-sdpfrag's ice-ufrag is not the current ICE session's")
	}
	if err := s.checkMids(f); err != nil {
		return err
	}
	return s.addCandidates(f)
}

func (s *Session) addCandidates(f Fragment) error {
	for _, c := range f.Candidates {
		mid := c.Mid
		if err := s.pc.AddICECandidate(webrtc.ICECandidateInit{Candidate: "candidate:" + c.Value, SDPMid: &mid}); err != nil {
			return apierr.Wrap(apierr.CodeInvalidSDP, err, "the candidate %q was refused: %v", c.Value, err)
		}
	}
	return nil
}

// Restart restarts ICE with the publisher's new credentials and candidates
// in f (RFC 9725 §4.4): the offer last answered is applied again with
// them, the gateway gathers anew under new credentials of its own, and the
// answer is the gateway's fragment (credentials, the first m-section's mid
// and its candidates). The ETag changes. DTLS and the tracks carry on
// over the new ICE session. match is the request's If-Match, as for
// AddCandidates.
func (s *Session) Restart(ctx context.Context, match func(etag string) bool, f Fragment) (string, error) {
	s.iceMu.Lock()
	defer s.iceMu.Unlock()
	if err := s.precondition(match); err != nil {
		return "", err
	}
	if f.Ufrag == "" {
		return "", apierr.Errorf(apierr.CodeInvalidSDP, "an ICE restart needs a=ice-ufrag and a=ice-pwd in the trickle-ice-sdpfrag")
	}
	if err := s.checkMids(f); err != nil {
		return "", err
	}
	rd := s.pc.RemoteDescription()
	if rd == nil {
		return "", apierr.Errorf(apierr.CodeNotConnected, "the session has no offer to restart ICE on")
	}
	offer, err := withCredentials(rd.SDP, f.Ufrag, f.Pwd)
	if err != nil {
		return "", apierr.Wrap(apierr.CodeInternal, err, "cannot restart ICE")
	}
	if err := s.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
		return "", apierr.Wrap(apierr.CodeInternal, err, "the ICE restart was refused: %v", err)
	}
	s.rememberOffer(offer)
	if err := s.addCandidates(f); err != nil {
		return "", err
	}
	answer, err := s.pc.CreateAnswer(nil)
	if err != nil {
		return "", apierr.Wrap(apierr.CodeInternal, err, "cannot answer the ICE restart")
	}
	gathered := webrtc.GatheringCompletePromise(s.pc)
	if err := s.pc.SetLocalDescription(answer); err != nil {
		return "", apierr.Wrap(apierr.CodeInternal, err, "cannot apply the ICE restart's answer")
	}
	select {
	case <-gathered:
	case <-ctx.Done():
		return "", apierr.Wrap(apierr.CodeInternal, ctx.Err(), "ICE gathering did not finish")
	}
	local, err := withCandidates(s.pc.LocalDescription().SDP, s.srflx())
	if err != nil {
		return "", apierr.Wrap(apierr.CodeInternal, err, "cannot add the public address to the ICE restart")
	}
	frag, err := localFragment(local)
	if err != nil {
		return "", apierr.Wrap(apierr.CodeInternal, err, "cannot read the restarted ICE session")
	}
	etag := newETag()
	s.etag.Store(&etag)
	s.log.Info("ice restarted")
	return frag, nil
}

// withCredentials rewrites an offer for an ICE restart: new ice-ufrag and
// ice-pwd wherever it had them, no candidates (the fragment brings the new
// ones), and the next session version.
func withCredentials(offer, ufrag, pwd string) (string, error) {
	var sd sdp.SessionDescription
	if err := sd.Unmarshal([]byte(offer)); err != nil {
		return "", err
	}
	sd.Origin.SessionVersion++
	rewrite := func(attrs []sdp.Attribute) []sdp.Attribute {
		out := attrs[:0]
		for _, a := range attrs {
			switch a.Key {
			case "ice-ufrag":
				a.Value = ufrag
			case "ice-pwd":
				a.Value = pwd
			case "candidate", "end-of-candidates":
				continue
			}
			out = append(out, a)
		}
		return out
	}
	sd.Attributes = rewrite(sd.Attributes)
	for _, md := range sd.MediaDescriptions {
		md.Attributes = rewrite(md.Attributes)
	}
	b, err := sd.Marshal()
	return string(b), err
}

// localFragment is the gateway's side of an ICE session as a
// trickle-ice-sdpfrag: its credentials and the RTP component's candidates
// of the first m-section (the BUNDLE-tagged one, which carries the
// transport).
func localFragment(local string) (string, error) {
	var sd sdp.SessionDescription
	if err := sd.Unmarshal([]byte(local)); err != nil {
		return "", err
	}
	var f Fragment
	f.Ufrag, _ = sd.Attribute("ice-ufrag")
	f.Pwd, _ = sd.Attribute("ice-pwd")
	if len(sd.MediaDescriptions) == 0 {
		return f.Marshal(""), nil
	}
	md := sd.MediaDescriptions[0]
	if f.Ufrag == "" {
		f.Ufrag, _ = md.Attribute("ice-ufrag")
		f.Pwd, _ = md.Attribute("ice-pwd")
	}
	mid, _ := md.Attribute("mid")
	f.Mids = []string{mid}
	for _, a := range md.Attributes {
		switch a.Key {
		case "candidate":
			// pion writes each candidate for components 1 and 2; with
			// rtcp-mux (mandatory with BUNDLE) only RTP's is of use.
			if fields := strings.Fields(a.Value); len(fields) > 1 && fields[1] == "1" {
				f.Candidates = append(f.Candidates, FragmentCandidate{Mid: mid, Value: a.Value})
			}
		case "end-of-candidates":
			f.EndOfCandidates = true
		}
	}
	mline := md.MediaName.Media + " 9 " + strings.Join(md.MediaName.Protos, "/") + " " + strings.Join(md.MediaName.Formats, " ")
	return f.Marshal(mline), nil
}
