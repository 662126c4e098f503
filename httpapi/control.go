package httpapi

import (
	"net/http"

	"github.com/castbridge/castbridge/gateway/apierr"
	"github.com/castbridge/castbridge/gateway/rtmpout"
	"github.com/castbridge/castbridge/httpapi/auth"
	"github.com/go-chi/chi/v5"
)

func (a *API) addTarget(w http.ResponseWriter, r *http.Request) {
	s, ok := a.stream(w, r)
	if !ok {
		return
	}
	var body rtmpout.Body
	if !a.decode(w, r, &body) {
		return
	}
	spec, err := body.Spec()
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	b, err := s.Broadcast()
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	cred := credOf(r)
	if err := a.authorize(r.Context(), r, auth.Request{Action: auth.ActionBroadcast, Protocol: "api", StreamID: s.ID(), StreamName: s.Name(),
		Outputs: redactedOutputs([]rtmpout.Spec{spec}), Credential: cred.webhook("")}); err != nil {
		a.writeError(w, r, err)
		return
	}
	t, err := b.AddScopedTarget(r.Context(), spec, cred.scope())
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	w.Header().Set("Location", "/v1/streams/"+s.ID()+"/broadcast/targets/"+t.ID())
	writeJSON(w, http.StatusCreated, t.Info())
}

func (a *API) removeTarget(w http.ResponseWriter, r *http.Request) {
	s, ok := a.stream(w, r)
	if !ok {
		return
	}
	b, err := s.Broadcast()
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	if err := b.RemoveTarget(chi.URLParam(r, "targetId")); err != nil {
		a.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

type metadataBody struct {
	HandlerName string `json:"handlerName"`
	Values      any    `json:"values"`
}

// sendMetadata answers 202: the values are queued into every running target.
func (a *API) sendMetadata(w http.ResponseWriter, r *http.Request) {
	s, ok := a.stream(w, r)
	if !ok {
		return
	}
	var body metadataBody
	if !a.decode(w, r, &body) {
		return
	}
	if err := s.SendMetadata(body.HandlerName, body.Values); err != nil {
		if e := apierr.As(err); e.Code == apierr.CodeNotBroadcasting {
			// API.md: metadata without a broadcast is a conflict, not a 404.
			writeJSON(w, http.StatusConflict, errorBody{Error: apierr.Info{Code: e.Code, Message: e.Message}})
			return
		}
		a.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusAccepted, map[string]string{"status": "accepted"})
}
