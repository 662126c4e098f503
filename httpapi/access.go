package httpapi

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/castbridge/castbridge/gateway"
	"github.com/castbridge/castbridge/gateway/apierr"
	"github.com/castbridge/castbridge/gateway/rtmpout"
	"github.com/castbridge/castbridge/httpapi/auth"
)

// Who a request is. Open: no authentication is configured (no API key, no
// token key), and anyone who reaches the port may do anything.
type credKind int

const (
	credOpen credKind = iota
	credAPIKey
	credToken
	credRelay
)

// credential is a request's authenticated caller.
type credential struct {
	kind   credKind
	claims *auth.Claims // credToken
	relay  int          // credRelay: the relay's index (gateway.Manager.RelayID)
}

// scope is what the gateway is told of a token's limits; nil for every
// other credential.
func (c credential) scope() *gateway.Scope {
	if c.kind != credToken {
		return nil
	}
	return &gateway.Scope{Stream: c.claims.Stream, OutputHosts: c.claims.Outputs}
}

// webhook describes the credential to the authorization webhook.
func (c credential) webhook(relayName string) auth.Credential {
	switch c.kind {
	case credAPIKey:
		return auth.Credential{Kind: auth.CredAPIKey}
	case credToken:
		return auth.Credential{Kind: auth.CredToken, Subject: c.claims.Subject, TokenID: c.claims.ID, Scope: c.claims.Stream, Relay: relayName}
	case credRelay:
		return auth.Credential{Kind: auth.CredRelay, Relay: relayName}
	}
	return auth.Credential{Kind: auth.CredNone}
}

type credKey struct{}

func credOf(r *http.Request) credential {
	c, _ := r.Context().Value(credKey{}).(credential)
	return c
}

// authConfigured: a credential is needed (an API key or a token key is set).
func (a *API) authConfigured() bool { return a.apiKey != "" || a.tokens != nil }

// isAPIKey compares in constant time, over digests so that not even the
// key's length shows in the time an answer takes.
func (a *API) isAPIKey(tok string) bool {
	if a.apiKey == "" {
		return false
	}
	got, want := sha256.Sum256([]byte(tok)), sha256.Sum256([]byte(a.apiKey))
	return subtle.ConstantTimeCompare(got[:], want[:]) == 1
}

// identify authenticates the request's bearer token: the API key, a
// publish token, or (open gateways only) nothing. The error is the 401
// to answer; its message never quotes the token.
func (a *API) identify(r *http.Request) (credential, *apierr.Error) {
	tok := bearer(r)
	switch {
	case a.isAPIKey(tok):
		return credential{kind: credAPIKey}, nil
	case a.tokens != nil && auth.LooksLikeToken(tok):
		c, err := a.tokens.Verify(tok)
		if err != nil {
			return credential{}, &apierr.Error{Code: apierr.CodeUnauthorized, Message: err.Error()}
		}
		return credential{kind: credToken, claims: c}, nil
	case !a.authConfigured():
		return credential{kind: credOpen}, nil
	case tok == "":
		return credential{}, &apierr.Error{Code: apierr.CodeUnauthorized, Message: "this server needs a credential: send Authorization: Bearer <API key or publish token>"}
	}
	return credential{}, &apierr.Error{Code: apierr.CodeUnauthorized, Message: "the bearer token is neither the API key nor a publish token this server accepts"}
}

func (a *API) unauthorized(w http.ResponseWriter, r *http.Request, e *apierr.Error) {
	w.Header().Set("WWW-Authenticate", `Bearer realm="castbridge"`)
	a.writeError(w, r, e)
}

// requireCredential authenticates every /v1 call (pre-flights aside) and
// puts the credential into the request's context.
func (a *API) requireCredential(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodOptions {
			next.ServeHTTP(w, r)
			return
		}
		c, e := a.identify(r)
		if e != nil {
			a.unauthorized(w, r, e)
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), credKey{}, c)))
	})
}

// mayDrive: the credential may act on stream s. A token drives only the
// streams created under its own stream claim.
func mayDrive(c credential, s *gateway.Stream) bool {
	if c.kind != credToken {
		return true
	}
	return s.Scope() != "" && s.Scope() == c.claims.Stream
}

func forbidden(s *gateway.Stream) *apierr.Error {
	return &apierr.Error{Code: apierr.CodeForbidden, StreamID: s.ID(),
		Message: "this token's scope does not cover stream " + s.ID() + ": a publish token drives only the streams it created"}
}

// authorize asks the webhook, when one is configured, whether the action
// may start; a refusal is FORBIDDEN.
func (a *API) authorize(ctx context.Context, r *http.Request, req auth.Request) error {
	if a.hook == nil {
		return nil
	}
	req.RemoteAddr = r.RemoteAddr
	if err := a.hook.Ask(ctx, req); err != nil {
		a.log.Info("authorization webhook refused", "action", req.Action, "stream", req.StreamID, "credential", req.Credential.Kind, "why", err.Error())
		return &apierr.Error{Code: apierr.CodeForbidden, Message: err.Error()}
	}
	return nil
}

// redactedOutputs is what the authorization webhook is told of the
// targets (API.md: "outputs": [redacted...]): each output as the API
// shows it (rtmp://host/app/****) and each icecast_url as
// scheme://host/****, never a stream key, path or query.
func redactedOutputs(specs []rtmpout.Spec) []string {
	out := []string{}
	add := func(s string) {
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	for _, s := range specs {
		ep, err := s.Validate()
		if err != nil {
			add("rtmp://<invalid>")
		} else {
			add(ep.Redacted())
		}
		if s.IcecastAudio {
			if u, err := url.Parse(s.IcecastURL); err == nil && u.Host != "" {
				add(u.Scheme + "://" + u.Host + "/****")
			}
		}
	}
	return out
}

// corsPolicy is --cors-origins: which other origins' pages may call the
// API and WHIP. Empty: none (the built-in page at / is same-origin and
// needs no CORS); "*": any.
type corsPolicy struct {
	any     bool
	origins []string // "scheme://host[:port]", lower case
}

// ParseOrigins checks --cors-origins entries: "*" or origins
// (scheme://host[:port], no path).
func ParseOrigins(list []string) ([]string, error) {
	var out []string
	for _, o := range list {
		o = strings.TrimSpace(o)
		if o == "" {
			continue
		}
		if o == "*" {
			out = append(out, o)
			continue
		}
		u, err := url.Parse(o)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil || u.Fragment != "" {
			return nil, &apierr.Error{Code: apierr.CodeInvalidRequest, Message: "CORS origin " + strconv.Quote(o) + " is not scheme://host[:port] or *"}
		}
		out = append(out, strings.ToLower(u.Scheme+"://"+u.Host))
	}
	return out, nil
}

func newCORSPolicy(list []string) corsPolicy {
	var p corsPolicy
	for _, o := range list {
		if o == "*" {
			p.any = true
			continue
		}
		p.origins = append(p.origins, strings.ToLower(strings.TrimSuffix(o, "/")))
	}
	return p
}

// allow returns the Access-Control-Allow-Origin value for origin, "" when
// the origin is not allowed.
func (p corsPolicy) allow(origin string) string {
	if p.any {
		return "*"
	}
	if slices.Contains(p.origins, strings.ToLower(origin)) {
		return origin
	}
	return ""
}
