package httpapi

import (
	"context"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"

	"github.com/castbridge/castbridge/gateway/apierr"
	"github.com/go-chi/chi/v5"
)

// rejectedHeader carries, in a WHIP answer, one offered track the answer
// rejected: mid="1"; kind=video; reason="...".
const rejectedHeader = "X-Castbridge-Rejected-Track"

// whipOptions answers WHIP clients' pre-flight (RFC 9725 §4.2).
func whipOptions(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Accept-Post", "application/sdp")
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

// whipPatch: the gateway answers with all its candidates and does not take
// trickled ones, which RFC 9725 allows with 405.
func (a *API) whipPatch(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Allow", "POST, DELETE, OPTIONS")
	writeJSON(w, http.StatusMethodNotAllowed, errorBody{Error: apierr.Info{
		Code: apierr.CodeInvalidRequest, Message: "trickle ICE and ICE restarts are not supported: the offer must carry its candidates"}})
}
