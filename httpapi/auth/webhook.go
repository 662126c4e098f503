package auth

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"
)

// DefaultWebhookTimeout bounds one authorization request.
const DefaultWebhookTimeout = 3 * time.Second

// maxWebhookAnswer is how much of the backend's answer is read (and
// discarded): the status decides.
const maxWebhookAnswer = 64 << 10

// Actions the webhook is asked about (API.md's two).
const (
	ActionPublish   = "publish"   // POST /v1/streams, WHIP POST (with a relay: its targets)
	ActionBroadcast = "broadcast" // POST /v1/streams/{id}/broadcast, POST .../broadcast/targets
)

// Credential kinds.
const (
	CredNone   = "none"   // no authentication configured
	CredAPIKey = "apiKey" // the master --api-key
	CredToken  = "token"  // a scoped publish token
	CredRelay  = "relay"  // a relay's stream key
)

// Request is what the webhook is POSTed (application/json). It never holds
// a secret: no API key, relay key or token (a token's sub, jti and stream
// claims say whose it is), and output hosts only, never their stream keys,
// paths or queries.
type Request struct {
	Action     string     `json:"action"`
	Protocol   string     `json:"protocol"`         // "whip" or "api"
	StreamID   string     `json:"stream,omitempty"` // the stream's id; none yet for a publish
	StreamName string     `json:"name,omitempty"`
	RemoteAddr string     `json:"remoteAddr"`
	Outputs    []string   `json:"outputs"` // each target redacted (rtmp://host/app/****) and each icecast_url as scheme://host/****
	Credential Credential `json:"credential"`
}

// Credential describes who asks, without the secret itself.
type Credential struct {
	Kind    string `json:"kind"`
	Subject string `json:"subject,omitempty"` // a token's sub
	TokenID string `json:"tokenId,omitempty"` // a token's jti
	Scope   string `json:"scope,omitempty"`   // a token's stream claim
	Relay   string `json:"relay,omitempty"`   // a relay's name (a token's relay claim, or the relay whose key was used)
}

// Webhook asks an operator's backend whether a publish or broadcast may
// start, as MediaMTX's external HTTP authentication and SRS's on_publish
// do. It fails closed.
type Webhook struct {
	url     string
	timeout time.Duration
	client  *http.Client
}

// NewWebhook makes a webhook client for url. The URL is the operator's,
// so no output policy applies, but redirects are not followed (a 3xx is a
// refusal).
func NewWebhook(url string, timeout time.Duration) *Webhook {
	if timeout <= 0 {
		timeout = DefaultWebhookTimeout
	}
	return &Webhook{url: url, timeout: timeout, client: &http.Client{
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Transport:     &http.Transport{Proxy: nil, MaxIdleConns: 4, IdleConnTimeout: 30 * time.Second, ResponseHeaderTimeout: timeout},
	}}
}

// Refusal is the webhook's no. Its text is safe to show the caller: it
// says how the backend answered (status, timeout, unreachable), never what
// it wrote.
type Refusal struct {
	Status  int  // the backend's status, 0 when it did not answer
	Timeout bool // no answer within the timeout
}

func (r *Refusal) Error() string {
	switch {
	case r.Timeout:
		return "the authorization webhook did not answer in time, so this is refused"
	case r.Status == 0:
		return "the authorization webhook could not be reached, so this is refused"
	default:
		return fmt.Sprintf("the authorization webhook refused this (HTTP %d)", r.Status)
	}
}

// Ask POSTs req and returns nil when the backend answers 2xx within the
// timeout, a *Refusal otherwise.
func (w *Webhook) Ask(ctx context.Context, req Request) error {
	if req.Outputs == nil {
		req.Outputs = []string{}
	}
	body, err := json.Marshal(req)
	if err != nil {
		return &Refusal{}
	}
	ctx, cancel := context.WithTimeout(ctx, w.timeout)
	defer cancel()
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, w.url, bytes.NewReader(body))
	if err != nil {
		return &Refusal{}
	}
	hr.Header.Set("Content-Type", "application/json")
	hr.Header.Set("User-Agent", "castbridge-auth")
	resp, err := w.client.Do(hr)
	if err != nil {
		return &Refusal{Timeout: errors.Is(err, context.DeadlineExceeded) || errors.Is(ctx.Err(), context.DeadlineExceeded)}
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxWebhookAnswer))
	_ = resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return &Refusal{Status: resp.StatusCode}
	}
	return nil
}

// Close drops the client's idle connections.
func (w *Webhook) Close() { w.client.CloseIdleConnections() }
