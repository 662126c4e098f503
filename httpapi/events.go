package httpapi

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/castbridge/castbridge/gateway"
	"github.com/castbridge/castbridge/gateway/apierr"
)

// minStatsInterval is the shortest ?stats= period (API.md).
const minStatsInterval = 250 * time.Millisecond

// sseWriteTimeout cuts off a client that stopped reading.
const sseWriteTimeout = 10 * time.Second

// events streams a stream's events as Server-Sent Events. ?stats=N adds a
// ReceivedWebRTCStats event every N ms (RtcUser's enableStats). A client
// that reconnects with Last-Event-ID gets the events it missed, while they
// are still in the stream's history.
func (a *API) events(w http.ResponseWriter, r *http.Request) {
	s, ok := a.stream(w, r)
	if !ok {
		return
	}
	var statsEvery time.Duration
	if q := r.URL.Query().Get("stats"); q != "" {
		ms, err := strconv.Atoi(q)
		if err != nil || (ms != 0 && time.Duration(ms)*time.Millisecond < minStatsInterval) {
			a.writeErrorCode(w, r, apierr.CodeInvalidRequest, "stats must be a whole number of milliseconds, at least 250 (or 0 for none)")
			return
		}
		statsEvery = time.Duration(ms) * time.Millisecond
	}
	var after uint64
	if id := r.Header.Get("Last-Event-ID"); id != "" {
		after, _ = strconv.ParseUint(id, 10, 64)
	}
	sub, err := s.SubscribeClient(after)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	defer sub.Close()

	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	// The stream outlives the server's read and write timeouts: no read
	// deadline (its expiry would cancel the request), a write deadline per
	// event.
	_ = rc.SetReadDeadline(time.Time{})
	send := func(chunk string) bool {
		_ = rc.SetWriteDeadline(time.Now().Add(sseWriteTimeout))
		if _, err := fmt.Fprint(w, chunk); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	if !send(": castbridge events\n\n") {
		return
	}

	keepAlive := time.NewTicker(a.keepAlive)
	defer keepAlive.Stop()
	var statsC <-chan time.Time
	if statsEvery > 0 {
		st := time.NewTicker(statsEvery)
		defer st.Stop()
		statsC = st.C
	}
	for {
		select {
		case <-r.Context().Done():
			return
		case ev, open := <-sub.C:
			if !open {
				return // the stream closed (StreamClosed was the last event), or we lagged
			}
			if !send(sseEvent(strconv.FormatUint(ev.ID, 10), ev.Name, ev.Data)) {
				return
			}
		case <-statsC:
			st := gateway.ReceivedWebRTCStats{Stats: s.Stats()}
			data, err := json.Marshal(st)
			if err != nil {
				return
			}
			if !send(sseEvent("", st.EventName(), data)) {
				return
			}
		case <-keepAlive.C:
			if !send(": keep-alive\n\n") {
				return
			}
		}
	}
}

// sseEvent frames one event; data is its JSON, on one line.
func sseEvent(id, name string, data []byte) string {
	if id != "" {
		return "id: " + id + "\nevent: " + name + "\ndata: " + string(data) + "\n\n"
	}
	return "event: " + name + "\ndata: " + string(data) + "\n\n"
}
