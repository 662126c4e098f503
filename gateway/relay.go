package gateway

import (
	"crypto/sha256"
	"crypto/subtle"
	"strconv"

	"github.com/castbridge/castbridge/gateway/apierr"
	"github.com/castbridge/castbridge/gateway/rtmpout"
)

// Relay maps a publisher's stream key (the WHIP bearer token, or the key in
// /whip/{key}) to the ingests its stream goes to, as OBS users configure
// once and then just press "Start Streaming".
type Relay struct {
	// Name, optional, is how a publish token's relay claim names the
	// relay (a token is readable by its holder: it never carries the key).
	Name    string
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
		if r.Name != "" {
			if seen["name:"+r.Name] {
				return apierr.Errorf(apierr.CodeInvalidRequest, "relay %d: the name %q is configured twice", i, r.Name)
			}
			seen["name:"+r.Name] = true
		}
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
	if i := m.relayIndex(key); i >= 0 {
		return m.cfg.Relays[i].Targets, true
	}
	return nil, false
}

// RelayID names the relay with that key for comparisons (its position in
// the configuration), -1 for none. A WHIP session remembers the relay it
// was published with so that the same key, and no other, can end it.
func (m *Manager) RelayID(key string) int { return m.relayIndex(key) }

// RelayName is the name of the relay RelayID returned, "" for none.
func (m *Manager) RelayName(id int) string {
	if id < 0 || id >= len(m.cfg.Relays) {
		return ""
	}
	return m.cfg.Relays[id].Name
}

// RelayNamed returns the targets of the relay with that name.
func (m *Manager) RelayNamed(name string) ([]rtmpout.Spec, bool) {
	if name == "" {
		return nil, false
	}
	for _, r := range m.cfg.Relays {
		if r.Name == name {
			return r.Targets, true
		}
	}
	return nil, false
}

// relayIndex compares key with every relay's in constant time (a key's
// prefix must not be learnable from response times) and returns the
// matching relay's index, or -1.
func (m *Manager) relayIndex(key string) int {
	if key == "" {
		return -1
	}
	found := -1
	got := sha256.Sum256([]byte(key))
	for i, r := range m.cfg.Relays {
		want := sha256.Sum256([]byte(r.Key)) // digests: equal lengths, so no length shows either
		if subtle.ConstantTimeCompare(got[:], want[:]) == 1 && found < 0 {
			found = i
		}
	}
	return found
}
