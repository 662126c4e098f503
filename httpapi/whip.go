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

	"github.com/castbridge/castbridge/gateway"
	"github.com/castbridge/castbridge/gateway/apierr"
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
// the broadcast to its targets then starts by itself once media flows. When
// relays are configured, a publisher must present one of their keys (or the
// API key).
func (a *API) whipPublish(w http.ResponseWriter, r *http.Request) {
	key := chi.URLParam(r, "key")
	if key == "" {
		key = bearer(r)
	}
	targets, isRelay := a.m.RelayTargets(key)
	switch {
	case isRelay:
	case a.m.HasRelays() && (a.apiKey == "" || !a.keyOK(r)):
		w.Header().Set("WWW-Authenticate", `Bearer realm="castbridge"`)
		a.writeErrorCode(w, r, apierr.CodeUnauthorized, "unknown stream key: set the WHIP client's bearer token to a stream key configured on the server")
		return
	case !a.keyOK(r):
		w.Header().Set("WWW-Authenticate", `Bearer realm="castbridge"`)
		a.writeErrorCode(w, r, apierr.CodeUnauthorized, "this server needs a bearer token: set it as the WHIP client's token")
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
	if isRelay {
		name = "whip relay"
	}
	s, err := a.m.CreateStream(ctx, string(offer), name, targets)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
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
	if !a.keyOK(r) {
		a.writeErrorCode(w, r, apierr.CodeUnauthorized, "this server needs a bearer token")
		return
	}
	s, err := a.m.Stream(chi.URLParam(r, "key"))
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	s.Close()
	w.WriteHeader(http.StatusOK)
}

// whipPatch takes a trickle-ice-sdpfrag (RFC 9725 §4.3): trickled
// candidates are 204; new ICE credentials restart ICE and answer 200 with
// the gateway's fragment and the new ETag.
func (a *API) whipPatch(w http.ResponseWriter, r *http.Request) {
	if !a.keyOK(r) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="castbridge"`)
		a.writeErrorCode(w, r, apierr.CodeUnauthorized, "this server needs a bearer token")
		return
	}
	a.patchICE(w, r, chi.URLParam(r, "key"))
}

// streamICE is PATCH /v1/streams/{id}/ice: the same as a WHIP PATCH for a
// stream made with POST /v1/streams.
func (a *API) streamICE(w http.ResponseWriter, r *http.Request) {
	a.patchICE(w, r, chi.URLParam(r, "id"))
}

func (a *API) patchICE(w http.ResponseWriter, r *http.Request, id string) {
	s, err := a.m.Stream(id)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
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
