package httpapi

import (
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"sort"
)

// metrics serves Prometheus' text format. Only aggregate series: no stream
// or target labels, so no stream key can reach a label.
func (a *API) metrics(w http.ResponseWriter, _ *http.Request) {
	mt := a.m.Metrics()
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	gauge := func(name, help string) {
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s gauge\n", name, help, name)
	}
	counter := func(name, help string, v uint64) {
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s counter\n%s %d\n", name, help, name, name, v)
	}
	gauge("castbridge_streams", "Publisher sessions open now, by state.")
	writeByState(w, "castbridge_streams", mt.StreamsByState)
	gauge("castbridge_targets", "Ingest targets of running broadcasts, by state.")
	writeByState(w, "castbridge_targets", mt.TargetsByState)
	counter("castbridge_streams_created_total", "Publisher sessions created.", mt.StreamsTotal)
	counter("castbridge_target_bytes_sent_total", "Bytes written to RTMP ingests.", mt.BytesSent)
	counter("castbridge_target_frames_sent_total", "Video frames written to RTMP ingests.", mt.FramesSent)
	counter("castbridge_target_frames_dropped_total", "Video frames dropped because an ingest fell behind.", mt.FramesDropped)
	counter("castbridge_target_reconnects_total", "Reconnections to RTMP ingests.", mt.Reconnects)
	counter("castbridge_plis_sent_total", "Keyframe requests (PLI) sent to publishers.", mt.PLIs)
	counter("castbridge_nacks_sent_total", "NACK packets sent to publishers.", mt.NACKs)
	counter("castbridge_rtp_packets_lost_total", "Inbound video RTP packets given up as lost.", mt.PacketsLost)
	fmt.Fprintf(w, "# HELP castbridge_limit_refusals_total Requests refused with LIMIT_EXCEEDED, by limit.\n# TYPE castbridge_limit_refusals_total counter\n")
	for _, k := range slices.Sorted(maps.Keys(mt.LimitRefusals)) {
		fmt.Fprintf(w, "castbridge_limit_refusals_total{limit=%q} %d\n", k, mt.LimitRefusals[k])
	}
	wh := mt.Webhooks
	counter("castbridge_webhook_deliveries_total", "Events the webhook receivers accepted (2xx), over all --webhook URLs.", wh.Delivered)
	counter("castbridge_webhook_failed_attempts_total", "Webhook requests that failed (network error, timeout, non-2xx); most are retried.", wh.Failed)
	fmt.Fprintf(w, "# HELP castbridge_webhook_dropped_total Webhook events given up, by reason: queue_full (the oldest queued was dropped), gave_up (attempts or age ran out, or the receiver refused with a 4xx), shutdown (left at the shutdown deadline).\n# TYPE castbridge_webhook_dropped_total counter\n")
	fmt.Fprintf(w, "castbridge_webhook_dropped_total{reason=\"gave_up\"} %d\n", wh.DroppedGaveUp)
	fmt.Fprintf(w, "castbridge_webhook_dropped_total{reason=\"queue_full\"} %d\n", wh.DroppedQueueFull)
	fmt.Fprintf(w, "castbridge_webhook_dropped_total{reason=\"shutdown\"} %d\n", wh.DroppedShutdown)
	if st := mt.STUN; st.Server != "" {
		up := 0
		if st.Up {
			up = 1
		}
		gauge("castbridge_ice_stun_up", "Whether the last query to the STUN server (--stun) was answered.")
		fmt.Fprintf(w, "castbridge_ice_stun_up %d\n", up)
		counter("castbridge_ice_stun_failures_total", "STUN queries (--stun) that got no answer.", st.Failures)
		if st.PublicAddr != "" {
			gauge("castbridge_ice_public_address_info", "The public address STUN learned, advertised as a srflx candidate.")
			fmt.Fprintf(w, "castbridge_ice_public_address_info{address=%q} 1\n", st.PublicAddr)
		}
	}
}

func writeByState[S ~string](w io.Writer, name string, m map[S]int) {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, string(k))
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(w, "%s{state=%q} %d\n", name, k, m[S(k)])
	}
}
