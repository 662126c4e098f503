package rtmpout

import "github.com/castbridge/castbridge/gateway/apierr"

// TargetConnected: a target is live (again, after Reconnects reconnects).
type TargetConnected struct {
	TargetID   string `json:"targetId"`
	Output     string `json:"output"` // redacted
	Reconnects int    `json:"reconnects"`
}

// TargetReconnecting: a target's ingest failed; attempt Attempt follows in DelayMs.
type TargetReconnecting struct {
	TargetID string      `json:"targetId"`
	Output   string      `json:"output"`
	Attempt  int         `json:"attempt"`
	DelayMs  int64       `json:"delayMs"`
	Code     apierr.Code `json:"code"`
	Message  string      `json:"message"`
}

// TargetFailed: a target gave up for good.
type TargetFailed struct {
	TargetID string      `json:"targetId"`
	Output   string      `json:"output"`
	Code     apierr.Code `json:"code"`
	Message  string      `json:"message"`
}

// TargetStalled: a connected target's writer has been stuck in one write
// for BlockedMs (the ingest stopped reading); QueueMs of stream time waits
// behind it. The target's state is stalled until TargetRecovered (or
// TargetReconnecting, when the connection fails instead).
type TargetStalled struct {
	TargetID  string  `json:"targetId"`
	Output    string  `json:"output"`
	BlockedMs int64   `json:"blockedMs"`
	QueueMs   float64 `json:"queueMs"`
}

// TargetRecovered: a stalled target's write completed after StalledMs in
// it; the target shows its state (live, connecting) again.
type TargetRecovered struct {
	TargetID  string `json:"targetId"`
	Output    string `json:"output"`
	StalledMs int64  `json:"stalledMs"`
}

// EventName implements events.Payload.
func (TargetStalled) EventName() string { return "TargetStalled" }

// EventName implements events.Payload.
func (TargetRecovered) EventName() string { return "TargetRecovered" }

// EventName implements events.Payload.
func (TargetConnected) EventName() string { return "TargetConnected" }

// EventName implements events.Payload.
func (TargetReconnecting) EventName() string { return "TargetReconnecting" }

// EventName implements events.Payload.
func (TargetFailed) EventName() string { return "TargetFailed" }
