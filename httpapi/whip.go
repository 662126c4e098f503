package httpapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"github.com/castbridge/castbridge/gateway"
	"github.com/castbridge/castbridge/gateway/apierr"
	"github.com/castbridge/castbridge/gateway/rtmpout"
	"github.com/castbridge/castbridge/httpapi/auth"
	"github.com/go-chi/chi/v5"
)

// sdpFragType is the media type of trickle ICE and ICE restart bodies
// (RFC 8840).
const sdpFragType = "application/trickle-ice-sdpfrag"

// rejectedHeader carries, in a WHIP answer, one offered track the answer
// rejected: mid="1"; kind=video; reason="...".
const rejectedHeader = "X-Castbridge-Rejected-Track"

// whipOptions answers WHIP clients' OPTIONS (RFC 9725 §4.2) on the
// endpoint and on a session's URL ({key} is either); the CORS pre-flight
// is cors's.
func whipOptions(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Allow", allowedMethods(r.URL.Path))
	w.Header().Set("Accept-Post", "application/sdp")
	if chi.URLParam(r, "key") != "" {
		w.Header().Set("Accept-Patch", sdpFragType)
	}
	w.WriteHeader(http.StatusNoContent)
}

// whipPublish takes an SDP offer and answers 201 with the SDP answer and the
// session's URL in Location.
//
// The bearer token or the {key} in the path may name a configured relay:
// the broadcast to its targets then starts by itself once media flows. A
// publish token's relay claim names a relay the same way. When relays are
// configured, a publisher must present one of their keys, a publish token
// or the API key.
func (a *API) whipPublish(w http.ResponseWriter, r *http.Request) {
	key := chi.URLParam(r, "key")
	if key == "" {
		key = bearer(r)
	}
	var (
		cred      credential
		targets   []rtmpout.Spec
		relayName string
	)
	if id := a.m.RelayID(key); id >= 0 {
		cred = credential{kind: credRelay, relay: id}
		targets, _ = a.m.RelayTargets(key)
		relayName = a.m.RelayName(id)
	} else {
		c, e := a.identify(r)
		switch {
		case e != nil:
			a.unauthorized(w, r, e)
			return
		case c.kind == credOpen && a.m.HasRelays():
			a.unauthorized(w, r, &apierr.Error{Code: apierr.CodeUnauthorized, Message: "unknown stream key: set the WHIP client's bearer token to a stream key configured on the server"})
			return
		case c.kind == credToken && c.claims.Relay != "":
			var ok bool
			if targets, ok = a.m.RelayNamed(c.claims.Relay); ok {
				relayName = c.claims.Relay
			} else if id := a.m.RelayID(c.claims.Relay); id >= 0 {
				targets, _ = a.m.RelayTargets(c.claims.Relay)
				relayName = a.m.RelayName(id) // never the key
			} else {
				a.writeErrorCode(w, r, apierr.CodeForbidden, "the token's relay claim names no relay configured on this server")
				return
			}
		case c.kind == credToken:
			// API.md: the outputs claim holds hosts and/or relay keys; the
			// first entry that is a relay's key (or name) publishes to it.
			for _, o := range c.claims.Outputs {
				if id := a.m.RelayID(o); id >= 0 {
					targets, _ = a.m.RelayTargets(o)
					relayName = a.m.RelayName(id)
					break
				}
				if t, ok := a.m.RelayNamed(o); ok {
					targets, relayName = t, o
					break
				}
			}
		}
		cred = c
	}
	if !a.m.HasRoom() && a.placeElsewhere(w, r) {
		return
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/sdp" {
		writeJSON(w, http.StatusUnsupportedMediaType, errorBody{Error: apierr.Info{
			Code: apierr.CodeInvalidRequest, Message: "WHIP offers must be sent as Content-Type: application/sdp"}})
		return
	}
	offer, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		a.writeErrorCode(w, r, apierr.CodeInvalidRequest, "the SDP offer is larger than 1 MiB or could not be read")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), answerTimeout)
	defer cancel()
	name := "whip"
	if targets != nil {
		name = "whip relay"
	}
	sc := cred.scope()
	if sc != nil {
		if sc.Stream != auth.AnyStream {
			name = sc.Stream
		}
		sc.OperatorTargets = targets != nil // the relay's, not the token's
	}
	if err := a.authorize(ctx, r, auth.Request{Action: auth.ActionPublish, Protocol: "whip", StreamName: name,
		Outputs: redactedOutputs(targets), Credential: cred.webhook(relayName)}); err != nil {
		a.writeError(w, r, err)
		return
	}
	s, err := a.m.CreateScopedStream(ctx, string(offer), name, targets, sc)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	a.claim(ctx, s.ID())
	owner := -1
	if cred.kind == credRelay {
		owner = cred.relay
	}
	a.sessions.add(a.m, s.ID(), sessionOwner{relay: owner})
	w.Header().Set("Content-Type", "application/sdp")
	w.Header().Set("Location", "/whip/"+s.ID())
	w.Header().Set("ETag", quoteETag(s.ETag()))
	w.Header().Set("Accept-Patch", sdpFragType)
	// The offered tracks the answer rejected: one header each, and the
	// stream's view (its "rejected" list) linked.
	for _, r := range s.Rejected() {
		w.Header().Add(rejectedHeader, fmt.Sprintf("mid=%s; kind=%s; reason=%s", strconv.QuoteToASCII(r.MID), r.Kind, strconv.QuoteToASCII(r.Reason)))
	}
	w.Header().Add("Link", fmt.Sprintf(`</v1/streams/%s>; rel="describedby"`, s.ID()))
	w.WriteHeader(http.StatusCreated)
	_, _ = io.WriteString(w, s.Answer())
}

func (a *API) whipDelete(w http.ResponseWriter, r *http.Request) {
	s, ok := a.whipSession(w, r)
	if !ok {
		return
	}
	a.sessions.remove(s.ID())
	s.Close()
	w.WriteHeader(http.StatusOK)
}

// whipPatch takes a trickle-ice-sdpfrag (RFC 9725 §4.3): trickled
// candidates are 204; new ICE credentials restart ICE and answer 200 with
// the gateway's fragment and the new ETag.
func (a *API) whipPatch(w http.ResponseWriter, r *http.Request) {
	if s, ok := a.whipSession(w, r); ok {
		a.patchICE(w, r, s)
	}
}

// whipSession resolves a WHIP session's URL for its publisher: the API key;
// the relay key it was published with (and no other relay's); a publish
// token of its scope; anyone on a gateway without auth. WHIP clients send
// the bearer token of their POST with their PATCH and DELETE.
func (a *API) whipSession(w http.ResponseWriter, r *http.Request) (*gateway.Stream, bool) {
	id := chi.URLParam(r, "key")
	var relay = -1
	var cred credential
	if !a.authConfigured() {
		cred = credential{kind: credOpen}
	} else if relay = a.m.RelayID(bearer(r)); relay >= 0 {
		cred = credential{kind: credRelay, relay: relay}
	} else {
		c, e := a.identify(r)
		if e != nil {
			a.unauthorized(w, r, e)
			return nil, false
		}
		cred = c
	}
	s, err := a.m.Stream(id)
	if err != nil {
		a.writeError(w, r, err)
		return nil, false
	}
	switch cred.kind {
	case credRelay:
		if o, ok := a.sessions.owner(id); !ok || o.relay != relay {
			a.writeErrorCode(w, r, apierr.CodeForbidden, "this stream key did not publish session "+id+": a relay key ends only its own sessions")
			return nil, false
		}
	case credToken:
		if !mayDrive(cred, s) {
			a.writeError(w, r, forbidden(s))
			return nil, false
		}
	}
	return s, true
}

// streamICE is PATCH /v1/streams/{id}/ice: the same as a WHIP PATCH for a
// stream made with POST /v1/streams.
func (a *API) streamICE(w http.ResponseWriter, r *http.Request) {
	if s, ok := a.stream(w, r); ok {
		a.patchICE(w, r, s)
	}
}

func (a *API) patchICE(w http.ResponseWriter, r *http.Request, s *gateway.Stream) {
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != sdpFragType {
		w.Header().Set("Accept-Patch", sdpFragType)
		writeJSON(w, http.StatusUnsupportedMediaType, errorBody{Error: apierr.Info{
			Code: apierr.CodeInvalidRequest, Message: "trickle ICE and ICE restarts must be sent as Content-Type: " + sdpFragType}})
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, gateway.MaxICEFragmentBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeJSON(w, http.StatusRequestEntityTooLarge, errorBody{Error: apierr.Info{
				Code: apierr.CodeInvalidSDP, Message: "the trickle-ice-sdpfrag is larger than 16 KiB"}})
			return
		}
		a.writeErrorCode(w, r, apierr.CodeInvalidRequest, "the trickle-ice-sdpfrag could not be read")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), answerTimeout)
	defer cancel()
	frag, restarted, err := s.PatchICE(ctx, ifMatch(r.Header.Values("If-Match")), body)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	if !restarted {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	w.Header().Set("Content-Type", sdpFragType)
	w.Header().Set("ETag", quoteETag(s.ETag()))
	w.WriteHeader(http.StatusOK)
	_, _ = io.WriteString(w, frag)
}

func quoteETag(tag string) string { return `"` + tag + `"` }

// ifMatch turns If-Match header values into a precondition on the current
// ETag (RFC 9110 §13.1.1): nil without the header, any ETag for "*",
// otherwise a strong comparison with each listed entity tag (weak ones
// never match).
func ifMatch(values []string) func(etag string) bool {
	if len(values) == 0 {
		return nil
	}
	var tags []string
	for _, v := range values {
		for t := range strings.SplitSeq(v, ",") {
			tags = append(tags, strings.TrimSpace(t))
		}
	}
	return func(etag string) bool {
		for _, t := range tags {
			if t == "*" || t == quoteETag(etag) {
				return true
			}
		}
		return false
	}
}

// sessionOwner is who published a WHIP session: the relay whose key it
// used (-1 for none). A token's session is its stream's scope
// (gateway.Stream.Scope).
type sessionOwner struct {
	relay int
}

// whipSessions remembers the owners of live WHIP sessions. Entries of
// closed streams are pruned on the next add, so it holds at most the live
// sessions and those closed since the last publish.
type whipSessions struct {
	mu     sync.Mutex
	owners map[string]sessionOwner
}

func (ws *whipSessions) add(m *gateway.Manager, id string, o sessionOwner) {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	for sid := range ws.owners {
		if _, err := m.Stream(sid); err != nil {
			delete(ws.owners, sid)
		}
	}
	ws.owners[id] = o
}

func (ws *whipSessions) owner(id string) (sessionOwner, bool) {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	o, ok := ws.owners[id]
	return o, ok
}

func (ws *whipSessions) remove(id string) {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	delete(ws.owners, id)
}
