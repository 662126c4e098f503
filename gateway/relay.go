package gateway

import (
	"strconv"

	"github.com/castbridge/castbridge/gateway/apierr"
	"github.com/castbridge/castbridge/gateway/rtmpout"
)

// Relay maps a publisher's stream key (the WHIP bearer token, or the key in
// /whip/{key}) to the ingests its stream goes to, as OBS users configure
// once and then just press "Start Streaming".
type Relay struct {
	Key     string
	Targets []rtmpout.Spec
}

// ValidateRelays checks every relay's targets at start-up.
func ValidateRelays(relays []Relay) error {
	seen := map[string]bool{}
	for i, r := range relays {
		if r.Key == "" {
			return apierr.Errorf(apierr.CodeInvalidRequest, "relay %d has no key", i)
		}
		if seen[r.Key] {
			return apierr.Errorf(apierr.CodeInvalidRequest, "relay %d: the same key is configured twice", i)
		}
		seen[r.Key] = true
		if err := rtmpout.ValidateAll(r.Targets); err != nil {
			e := apierr.As(err)
			return &apierr.Error{Code: e.Code, Message: "relay " + strconv.Itoa(i) + ": " + e.Message, Err: err}
		}
	}
	return nil
}

// HasRelays reports whether relays are configured: then WHIP publishers
// must present a relay key (or the API key).
func (m *Manager) HasRelays() bool { return len(m.cfg.Relays) > 0 }

// RelayTargets returns the targets of the relay with that key.
func (m *Manager) RelayTargets(key string) ([]rtmpout.Spec, bool) {
	if key == "" {
		return nil, false
	}
	for _, r := range m.cfg.Relays {
		if r.Key == key {
			return r.Targets, true
		}
	}
	return nil, false
}
