package httpapi

import (
	"context"
	"encoding/json"
	"net/http"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/castbridge/castbridge/gateway"
	"github.com/castbridge/castbridge/gateway/apierr"
	"github.com/castbridge/castbridge/gateway/rtmpout"
	"github.com/castbridge/castbridge/httpapi/auth"
)

// answerTimeout bounds ICE gathering for an answer.
const answerTimeout = 10 * time.Second

type createStreamBody struct {
	SDP       string          `json:"sdp"`
	Name      string          `json:"name"`
	Broadcast json.RawMessage `json:"broadcast"`
}

type createStreamResponse struct {
	ID       string                  `json:"id"`
	SDP      string                  `json:"sdp"`
	State    gateway.StreamState     `json:"state"`
	Rejected []gateway.RejectedTrack `json:"rejected"` // the offered tracks the answer rejected, as in the stream's view
	Warnings []string                `json:"warnings"`
}

func (a *API) createStream(w http.ResponseWriter, r *http.Request) {
	if !a.m.HasRoom() && a.placeElsewhere(w, r) {
		return
	}
	var body createStreamBody
	if !a.decode(w, r, &body) {
		return
	}
	var specs []rtmpout.Spec
	if len(body.Broadcast) > 0 && string(body.Broadcast) != "null" {
		var bb rtmpout.BroadcastBody
		if err := rtmpout.Unmarshal(body.Broadcast, &bb); err != nil {
			a.writeError(w, r, err)
			return
		}
		var err error
		if specs, err = bb.Specs(); err != nil {
			a.writeError(w, r, err)
			return
		}
	}
	cred := credOf(r)
	if cred.kind == credToken && cred.claims.Stream != auth.AnyStream {
		switch body.Name {
		case "":
			body.Name = cred.claims.Stream
		case cred.claims.Stream:
		default:
			a.writeErrorCode(w, r, apierr.CodeForbidden, "this publish token creates only the stream named in its stream claim: leave name out or use that name")
			return
		}
	}
	ctx, cancel := context.WithTimeout(r.Context(), answerTimeout)
	defer cancel()
	if err := a.authorize(ctx, r, auth.Request{Action: auth.ActionPublish, Protocol: "api", StreamName: body.Name,
		Outputs: redactedOutputs(specs), Credential: cred.webhook("")}); err != nil {
		a.writeError(w, r, err)
		return
	}
	s, err := a.m.CreateScopedStream(ctx, body.SDP, body.Name, specs, cred.scope())
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	a.claim(ctx, s.ID())
	w.Header().Set("Location", "/v1/streams/"+s.ID())
	w.Header().Set("ETag", quoteETag(s.ETag()))
	info := s.Info()
	writeJSON(w, http.StatusCreated, createStreamResponse{ID: s.ID(), SDP: s.Answer(), State: s.State(), Rejected: info.Rejected, Warnings: info.Warnings})
}

// listStreams lists every stream, or a publish token's own; in a cluster,
// every node's (clusterList).
func (a *API) listStreams(w http.ResponseWriter, r *http.Request) {
	cred := credOf(r)
	local := []gateway.StreamInfo{}
	for _, s := range a.m.Streams() {
		if mayDrive(cred, s) {
			local = append(local, s.Info())
		}
	}
	writeJSON(w, http.StatusOK, a.clusterList(r, local))
}

// stream resolves {id} or answers 404, and answers 403 when the
// request's credential may not drive it.
func (a *API) stream(w http.ResponseWriter, r *http.Request) (*gateway.Stream, bool) {
	s, err := a.m.Stream(chi.URLParam(r, "id"))
	if err != nil {
		a.writeError(w, r, err)
		return nil, false
	}
	if !mayDrive(credOf(r), s) {
		a.writeError(w, r, forbidden(s))
		return nil, false
	}
	return s, true
}

func (a *API) getStream(w http.ResponseWriter, r *http.Request) {
	if s, ok := a.stream(w, r); ok {
		writeJSON(w, http.StatusOK, s.Info())
	}
}

type patchStreamBody struct {
	AudioMuted *bool `json:"audioMuted"`
	VideoMuted *bool `json:"videoMuted"`
}

func (a *API) patchStream(w http.ResponseWriter, r *http.Request) {
	s, ok := a.stream(w, r)
	if !ok {
		return
	}
	var body patchStreamBody
	if !a.decode(w, r, &body) {
		return
	}
	s.SetMuted(body.AudioMuted, body.VideoMuted)
	writeJSON(w, http.StatusOK, s.Info())
}

func (a *API) deleteStream(w http.ResponseWriter, r *http.Request) {
	s, ok := a.stream(w, r)
	if !ok {
		return
	}
	s.Close()
	w.WriteHeader(http.StatusNoContent)
}

func (a *API) startBroadcast(w http.ResponseWriter, r *http.Request) {
	s, ok := a.stream(w, r)
	if !ok {
		return
	}
	var body rtmpout.BroadcastBody
	if !a.decode(w, r, &body) {
		return
	}
	specs, err := body.Specs()
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	cred := credOf(r)
	if err := a.authorize(r.Context(), r, auth.Request{Action: auth.ActionBroadcast, Protocol: "api", StreamID: s.ID(), StreamName: s.Name(),
		Outputs: redactedOutputs(specs), Credential: cred.webhook("")}); err != nil {
		a.writeError(w, r, err)
		return
	}
	b, err := s.StartScopedBroadcast(r.Context(), specs, cred.scope())
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	w.Header().Set("Location", "/v1/streams/"+s.ID()+"/broadcast")
	writeJSON(w, http.StatusCreated, b.Info())
}

func (a *API) getBroadcast(w http.ResponseWriter, r *http.Request) {
	s, ok := a.stream(w, r)
	if !ok {
		return
	}
	b, err := s.Broadcast()
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, b.Info())
}

func (a *API) stopBroadcast(w http.ResponseWriter, r *http.Request) {
	s, ok := a.stream(w, r)
	if !ok {
		return
	}
	b, err := s.StopBroadcast()
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, b.Info())
}

func (a *API) getStats(w http.ResponseWriter, r *http.Request) {
	if s, ok := a.stream(w, r); ok {
		writeJSON(w, http.StatusOK, s.Stats())
	}
}
