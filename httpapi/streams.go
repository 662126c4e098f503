package httpapi

import (
	"context"
	"encoding/json"
	"net/http"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/castbridge/castbridge/gateway"
	"github.com/castbridge/castbridge/gateway/rtmpout"
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
}

func (a *API) createStream(w http.ResponseWriter, r *http.Request) {
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
	ctx, cancel := context.WithTimeout(r.Context(), answerTimeout)
	defer cancel()
	s, err := a.m.CreateStream(ctx, body.SDP, body.Name, specs)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	w.Header().Set("Location", "/v1/streams/"+s.ID())
	w.Header().Set("ETag", quoteETag(s.ETag()))
	writeJSON(w, http.StatusCreated, createStreamResponse{ID: s.ID(), SDP: s.Answer(), State: s.State(), Rejected: s.Info().Rejected})
}

func (a *API) listStreams(w http.ResponseWriter, _ *http.Request) {
	streams := a.m.Streams()
	out := struct {
		Streams []gateway.StreamInfo `json:"streams"`
	}{Streams: make([]gateway.StreamInfo, len(streams))}
	for i, s := range streams {
		out.Streams[i] = s.Info()
	}
	writeJSON(w, http.StatusOK, out)
}

// stream resolves {id} or answers 404.
func (a *API) stream(w http.ResponseWriter, r *http.Request) (*gateway.Stream, bool) {
	s, err := a.m.Stream(chi.URLParam(r, "id"))
	if err != nil {
		a.writeError(w, r, err)
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
	b, err := s.StartBroadcast(r.Context(), specs)
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
