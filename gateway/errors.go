package gateway

import (
	"errors"
	"fmt"
)

// Code is a machine-readable error code of the public API.
type Code string

// The API's error codes (see API.md).
const (
	CodeInvalidRequest      Code = "INVALID_REQUEST"
	CodeInvalidSDP          Code = "INVALID_SDP"
	CodeUnsupportedCodec    Code = "UNSUPPORTED_CODEC"
	CodeNotFound            Code = "NOT_FOUND"
	CodeNotConnected        Code = "NOT_CONNECTED"
	CodeAlreadyBroadcasting Code = "ALREADY_BROADCASTING"
	CodeNotBroadcasting     Code = "NOT_BROADCASTING"
	CodeInvalidOutput       Code = "INVALID_OUTPUT"
	CodeIngestUnreachable   Code = "INGEST_UNREACHABLE"
	CodeIngestRejected      Code = "INGEST_REJECTED"
	CodeMetadataInvalid     Code = "METADATA_INVALID"
	CodeUnauthorized        Code = "UNAUTHORIZED"
	CodeLimitExceeded       Code = "LIMIT_EXCEEDED"
	CodeInternal            Code = "INTERNAL"
)

// Error is an error a caller of the API can act on: a code and a message
// that says what went wrong and how to fix it. Messages never carry secrets.
type Error struct {
	Code    Code
	Message string
	Err     error // cause, for logs; may be nil
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s: %s: %v", e.Code, e.Message, e.Err)
	}
	return fmt.Sprintf("%s: %s", e.Code, e.Message)
}

func (e *Error) Unwrap() error { return e.Err }

func errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// AsError returns err as an *Error, or wraps it as INTERNAL.
func AsError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return &Error{Code: CodeInternal, Message: "internal error", Err: err}
}
