package gateway

import (
	"github.com/castbridge/castbridge/gateway/apierr"
	"github.com/castbridge/castbridge/gateway/rtmpout"
)

// The stream's and broadcast's events (API.md, nanoStream RtcUser's
// events); the targets' are rtmpout's. Each is published once on the
// stream's events.Bus.

// PublisherConnected: the publisher's first media arrived.
type PublisherConnected struct {
	StreamID string `json:"streamId"`
}

// PublisherDisconnected: the publisher went away (ICE failed, or no media).
type PublisherDisconnected struct {
	StreamID string `json:"streamId"`
	Reason   string `json:"reason"`
}

// StartBroadcastSuccess: a broadcast is live on at least one target.
type StartBroadcastSuccess struct{ BroadcastInfo }

// StartBroadcastError: a broadcast could not start.
type StartBroadcastError struct{ apierr.Info }

// StopBroadcastSuccess: a broadcast ended; every ingest was told.
type StopBroadcastSuccess struct{ BroadcastInfo }

// MetaDataSent: a client's metadata was queued into Targets targets.
type MetaDataSent struct {
	HandlerName string `json:"handlerName"`
	Values      any    `json:"values"`
	Targets     int    `json:"targets"`
}

// VideoFiller: the video filler started (Active, and why: "muted", or
// "stalled" when the publisher's video stopped while its audio flows) or
// ended, when the publisher's picture came back at a keyframe.
type VideoFiller struct {
	StreamID string `json:"streamId"`
	Active   bool   `json:"active"`
	Reason   string `json:"reason"`
}

// StreamClosed: the stream's last event.
type StreamClosed struct {
	StreamID string `json:"streamId"`
}

// ReceivedWebRTCStats is a stats snapshot sent to a listener that asked
// for them (RtcUser's enableStats); it is not kept in the history.
type ReceivedWebRTCStats struct{ Stats }

// EventName implements events.Payload.
func (PublisherConnected) EventName() string { return "PublisherConnected" }

// EventName implements events.Payload.
func (VideoFiller) EventName() string { return "VideoFiller" }

// EventName implements events.Payload.
func (PublisherDisconnected) EventName() string { return "PublisherDisconnected" }

// EventName implements events.Payload.
func (StartBroadcastSuccess) EventName() string { return "StartBroadcastSuccess" }

// EventName implements events.Payload.
func (StartBroadcastError) EventName() string { return "StartBroadcastError" }

// EventName implements events.Payload.
func (StopBroadcastSuccess) EventName() string { return "StopBroadcastSuccess" }

// EventName implements events.Payload.
func (MetaDataSent) EventName() string { return "MetaDataSent" }

// EventName implements events.Payload.
func (StreamClosed) EventName() string { return "StreamClosed" }

// EventName implements events.Payload.
func (ReceivedWebRTCStats) EventName() string { return "ReceivedWebRTCStats" }

// EventNames are the names of the events a stream's bus carries (the
// stream's, the broadcast's and the targets'), in the order of the API
// docs: what the event webhooks send and --webhook-events may choose from.
// ReceivedWebRTCStats is not one: it is made for each SSE client that asks.
func EventNames() []string {
	return []string{
		PublisherConnected{}.EventName(), PublisherDisconnected{}.EventName(),
		StartBroadcastSuccess{}.EventName(), StartBroadcastError{}.EventName(), StopBroadcastSuccess{}.EventName(),
		rtmpout.TargetConnected{}.EventName(), rtmpout.TargetReconnecting{}.EventName(), rtmpout.TargetFailed{}.EventName(),
		rtmpout.TargetStalled{}.EventName(), rtmpout.TargetRecovered{}.EventName(),
		MetaDataSent{}.EventName(), VideoFiller{}.EventName(), StreamClosed{}.EventName(),
		PublisherKeyframeInterval{}.EventName(),
	}
}
