// Package apierr is the vocabulary of errors every part of the gateway
// returns to its callers: a machine-readable Code from the public API and a
// message that says what went wrong and how to fix it. It knows nothing of
// HTTP; the API layer maps codes to statuses and adds routes to messages.
package apierr

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
	CodeVideoCodecMismatch  Code = "VIDEO_CODEC_MISMATCH" // a target's videocodec is not the stream's
	CodeUnsupportedOffer    Code = "UNSUPPORTED_OFFER"    // m-sections on transports of their own: one BUNDLE transport is needed (API.md additions)
	CodeNotFound            Code = "NOT_FOUND"
	CodeNotConnected        Code = "NOT_CONNECTED"
	CodeAlreadyBroadcasting Code = "ALREADY_BROADCASTING"
	CodeNotBroadcasting     Code = "NOT_BROADCASTING"
	CodeInvalidOutput       Code = "INVALID_OUTPUT"
	CodeOutputNotAllowed    Code = "OUTPUT_NOT_ALLOWED" // the output policy refuses the address (API.md additions)
	CodeIngestUnreachable   Code = "INGEST_UNREACHABLE"
	CodeIngestRejected      Code = "INGEST_REJECTED"
	CodeMetadataInvalid     Code = "METADATA_INVALID"
	CodeUnauthorized        Code = "UNAUTHORIZED"
	CodeForbidden           Code = "FORBIDDEN" // a valid credential whose scope does not cover the request, or the authorization webhook's no
	CodeLimitExceeded       Code = "LIMIT_EXCEEDED"
	CodeETagMismatch        Code = "ETAG_MISMATCH" // If-Match names an ICE session that was replaced
	CodeUnknownMid          Code = "UNKNOWN_MID"   // a trickled fragment names an m-section the offer lacks
	CodeInternal            Code = "INTERNAL"
	// CodeClusterUnavailable: in a cluster, the registry (Redis) or the
	// node owning the stream could not be reached; retry after Retry-After.
	CodeClusterUnavailable Code = "CLUSTER_UNAVAILABLE"
)

// Error is an error a caller of the API can act on. Messages never carry
// secrets. StreamID names the stream the error is about, when there is one,
// so that the API layer can point at the resource to act on.
type Error struct {
	Code     Code
	Message  string
	StreamID string
	// Limit names the limit a LIMIT_EXCEEDED error hit: one of the Limit*
	// constants.
	Limit string
	Err   error // cause, for logs; may be nil
}

// The limits a LIMIT_EXCEEDED error can name. Streams is the gateway's
// capacity; the others bound what one client may hold in a stream.
const (
	LimitStreams        = "streams"
	LimitTargets        = "targets"
	LimitSSESubscribers = "sse_subscribers"
)

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s: %s: %v", e.Code, e.Message, e.Err)
	}
	return fmt.Sprintf("%s: %s", e.Code, e.Message)
}

func (e *Error) Unwrap() error { return e.Err }

// Info is the part of an Error the API shows.
func (e *Error) Info() Info { return Info{Code: e.Code, Message: e.Message} }

// Errorf makes an Error with a formatted message and no cause.
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Wrap makes an Error with a message and a cause (for logs only).
func Wrap(code Code, err error, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...), Err: err}
}

// As returns err as an *Error, or wraps it as INTERNAL.
func As(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return &Error{Code: CodeInternal, Message: "internal error", Err: err}
}

// Info is an error as the API shows it.
type Info struct {
	Code    Code   `json:"code"`
	Message string `json:"message"`
}
