package httpapi

import (
	"encoding/json"
	"errors"
	"net/http"

	"github.com/castbridge/castbridge/gateway"
)

type errorBody struct {
	Error gateway.ErrorInfo `json:"error"`
}

// statusOf maps an API error code to its HTTP status (API.md).
func statusOf(code gateway.Code) int {
	switch code {
	case gateway.CodeInvalidRequest, gateway.CodeInvalidSDP, gateway.CodeInvalidOutput, gateway.CodeMetadataInvalid:
		return http.StatusBadRequest
	case gateway.CodeUnauthorized:
		return http.StatusUnauthorized
	case gateway.CodeNotFound, gateway.CodeNotBroadcasting:
		return http.StatusNotFound
	case gateway.CodeAlreadyBroadcasting, gateway.CodeNotConnected:
		return http.StatusConflict
	case gateway.CodeUnsupportedCodec:
		return http.StatusUnprocessableEntity
	case gateway.CodeIngestUnreachable, gateway.CodeIngestRejected:
		return http.StatusBadGateway
	case gateway.CodeLimitExceeded:
		return http.StatusServiceUnavailable
	default:
		return http.StatusInternalServerError
	}
}

// writeError answers with the API's error body. Internal causes are logged,
// never sent.
func (a *API) writeError(w http.ResponseWriter, r *http.Request, err error) {
	e := gateway.AsError(err)
	status := statusOf(e.Code)
	if status >= 500 && e.Code == gateway.CodeInternal {
		a.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	writeJSON(w, status, errorBody{Error: gateway.ErrorInfo{Code: e.Code, Message: e.Message}})
}

func (a *API) writeErrorCode(w http.ResponseWriter, r *http.Request, code gateway.Code, msg string) {
	a.writeError(w, r, &gateway.Error{Code: code, Message: msg})
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
		var reqErr *gateway.Error
		switch {
		case errors.As(err, &tooBig):
			return &gateway.Error{Code: gateway.CodeInvalidRequest, Message: "the request body is larger than 1 MiB"}
		case errors.As(err, &reqErr):
			return reqErr
		case errors.As(err, &typeErr):
			return &gateway.Error{Code: gateway.CodeInvalidRequest, Message: "field " + typeErr.Field + " has the wrong type: expected " + typeErr.Type.String()}
		default:
			return &gateway.Error{Code: gateway.CodeInvalidRequest, Message: "the request body is not valid JSON: " + err.Error()}
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
