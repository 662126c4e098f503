package gateway

import (
	"net/http"

	"github.com/castbridge/castbridge/gateway/apierr"
	"github.com/castbridge/castbridge/gateway/outpolicy"
)

// Scope is what a scoped credential (httpapi's publish tokens) lets its
// holder do, as the gateway needs it: the gateway knows no tokens. A nil
// *Scope is the unrestricted caller (the API key, or a gateway without
// auth).
type Scope struct {
	// Stream is the scope's stream name: streams created under the scope
	// carry it (Stream.Scope), and only callers of the same scope may
	// drive them.
	Stream string
	// OutputHosts are the hosts (host or host:port) its outputs and
	// icecast_urls may name; loopback and private addresses are refused
	// besides (outpolicy.Policy.Restrict).
	OutputHosts []string
	// OperatorTargets: the targets a stream is created with are the
	// operator's own (a relay's, which a token names by its relay claim),
	// checked against the gateway's policy rather than the scope's. Later
	// broadcasts and targets of the scope's callers are the scope's.
	OperatorTargets bool
}

// access is the output policy a request's targets are checked and dialed
// with, and the HTTP client of its Icecast sources.
type access struct {
	policy  *outpolicy.Policy
	icecast *http.Client
}

// accessFor derives a scope's output policy from the gateway's.
func (m *Manager) accessFor(sc *Scope) (access, error) {
	if sc == nil {
		return access{policy: m.cfg.policy, icecast: m.cfg.icecastClient}, nil
	}
	p, err := m.cfg.policy.Restrict(sc.OutputHosts)
	if err != nil {
		return access{}, apierr.Wrap(apierr.CodeInvalidOutput, err, "the token's outputs claim: %v", err)
	}
	return access{policy: p, icecast: p.HTTPClient()}, nil
}
