package httpapi

import (
	"encoding/json"
	"errors"
	"net/http"

	"github.com/castbridge/castbridge/gateway/apierr"
)

type errorBody struct {
	Error apierr.Info `json:"error"`
}

// statusOf maps an API error code to its HTTP status (API.md).
func statusOf(code apierr.Code) int {
	switch code {
	case apierr.CodeInvalidRequest, apierr.CodeInvalidSDP, apierr.CodeInvalidOutput, apierr.CodeOutputNotAllowed, apierr.CodeMetadataInvalid:
		return http.StatusBadRequest
	case apierr.CodeUnauthorized:
		return http.StatusUnauthorized
	case apierr.CodeForbidden:
		return http.StatusForbidden
	case apierr.CodeNotFound, apierr.CodeNotBroadcasting:
		return http.StatusNotFound
	case apierr.CodeAlreadyBroadcasting, apierr.CodeNotConnected:
		return http.StatusConflict
	case apierr.CodeUnsupportedCodec, apierr.CodeUnsupportedOffer, apierr.CodeUnknownMid, apierr.CodeVideoCodecMismatch:
		return http.StatusUnprocessableEntity
	case apierr.CodeETagMismatch:
		return http.StatusPreconditionFailed
	case apierr.CodeIngestUnreachable, apierr.CodeIngestRejected:
		return http.StatusBadGateway
	case apierr.CodeLimitExceeded, apierr.CodeClusterUnavailable:
		return http.StatusServiceUnavailable
	default:
		return http.StatusInternalServerError
	}
}

// writeError answers with the API's error body. Internal causes are logged,
// never sent.
func (a *API) writeError(w http.ResponseWriter, r *http.Request, err error) {
	e := apierr.As(err)
	status := statusOf(e.Code)
	if e.Code == apierr.CodeLimitExceeded {
		switch e.Limit {
		case apierr.LimitTargets, apierr.LimitSSESubscribers:
			// What one client holds in a stream: its own doing, 429.
			status = http.StatusTooManyRequests
		default:
			// The gateway's capacity: come back later.
			w.Header().Set("Retry-After", "5")
		}
	}
	if status >= 500 && e.Code == apierr.CodeInternal {
		a.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	writeJSON(w, status, errorBody{Error: apierr.Info{Code: e.Code, Message: e.Message + routeHint(e)}})
}

// routeHint names the call that fixes an error, where there is one: the
// gateway's errors say what is wrong; the routes are the API's.
func routeHint(e *apierr.Error) string {
	if e.StreamID == "" {
		return ""
	}
	switch e.Code {
	case apierr.CodeAlreadyBroadcasting:
		return " (DELETE /v1/streams/" + e.StreamID + "/broadcast)"
	case apierr.CodeNotBroadcasting:
		return " (start one with POST /v1/streams/" + e.StreamID + "/broadcast)"
	}
	return ""
}

func (a *API) writeErrorCode(w http.ResponseWriter, r *http.Request, code apierr.Code, msg string) {
	a.writeError(w, r, &apierr.Error{Code: code, Message: msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	_ = enc.Encode(v) // the client may have gone; nothing to do about it
}

// decodeJSON reads a size-limited JSON body into v. Unknown fields are
// ignored; malformed JSON and wrong types are INVALID_REQUEST.
func decodeJSON(w http.ResponseWriter, r *http.Request, v any) error {
	r.Body = http.MaxBytesReader(w, r.Body, maxBody)
	dec := json.NewDecoder(r.Body)
	if err := dec.Decode(v); err != nil {
		var tooBig *http.MaxBytesError
		var typeErr *json.UnmarshalTypeError
		var reqErr *apierr.Error
		switch {
		case errors.As(err, &tooBig):
			return &apierr.Error{Code: apierr.CodeInvalidRequest, Message: "the request body is larger than 1 MiB"}
		case errors.As(err, &reqErr):
			return reqErr
		case errors.As(err, &typeErr):
			return &apierr.Error{Code: apierr.CodeInvalidRequest, Message: "field " + typeErr.Field + " has the wrong type: expected " + typeErr.Type.String()}
		default:
			return &apierr.Error{Code: apierr.CodeInvalidRequest, Message: "the request body is not valid JSON: " + err.Error()}
		}
	}
	return nil
}

// decode reads the request's JSON body into v, or answers with the error
// and returns false.
func (a *API) decode(w http.ResponseWriter, r *http.Request, v any) bool {
	if err := decodeJSON(w, r, v); err != nil {
		a.writeError(w, r, err)
		return false
	}
	return true
}
