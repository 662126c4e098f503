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

// EventName implements events.Payload.
func (TargetConnected) EventName() string { return "TargetConnected" }

// EventName implements events.Payload.
func (TargetReconnecting) EventName() string { return "TargetReconnecting" }

// EventName implements events.Payload.
func (TargetFailed) EventName() string { return "TargetFailed" }
