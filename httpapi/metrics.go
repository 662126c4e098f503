package httpapi

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/castbridge/castbridge/gateway"
	"github.com/castbridge/castbridge/gateway/cluster"
)

// newMetricsHandler serves /metrics from a registry of this API's own (the
// process-wide default registry is global state, and two gateways in one
// test binary would collide in it): the Go runtime and process collectors,
// the manager's histograms, and its counters and gauges read from one
// Manager.Metrics snapshot per scrape. Only aggregate series: no stream,
// target or URL label, so no stream key can reach a label.
func newMetricsHandler(m *gateway.Manager, node *cluster.Node) http.Handler {
	reg := prometheus.NewRegistry()
	// Registering fails only on two metrics of one name: a bug here, the
	// same at every start, which a test meets first.
	reg.MustRegister(collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		snapshotCollector{m: m})
	reg.MustRegister(m.Collectors()...)
	if node != nil {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "castbridge_cluster_redis_up",
			Help: "Whether this node's last heartbeat reached the cluster registry (--redis)."}, func() float64 {
			if node.Status().RedisUp {
				return 1
			}
			return 0
		}))
	}
	// A failure to collect is a bug too (the snapshot cannot fail): answer
	// 500 rather than a partial page that would hide it.
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.HTTPErrorOnError})
}

var (
	descStreams = prometheus.NewDesc("castbridge_streams",
		"Publisher sessions open now, by state.", []string{"state"}, nil)
	descTargets = prometheus.NewDesc("castbridge_targets",
		"Ingest targets of running broadcasts, by state.", []string{"state"}, nil)
	descStreamsCreated = prometheus.NewDesc("castbridge_streams_created_total",
		"Publisher sessions created.", nil, nil)
	descBytesSent = prometheus.NewDesc("castbridge_target_bytes_sent_total",
		"Bytes written to RTMP ingests.", nil, nil)
	descFramesSent = prometheus.NewDesc("castbridge_target_frames_sent_total",
		"Video frames written to RTMP ingests.", nil, nil)
	descFramesDropped = prometheus.NewDesc("castbridge_target_frames_dropped_total",
		"Video frames dropped because an ingest fell behind.", nil, nil)
	descReconnects = prometheus.NewDesc("castbridge_target_reconnects_total",
		"Reconnections to RTMP ingests.", nil, nil)
	descPLIs = prometheus.NewDesc("castbridge_plis_sent_total",
		"Keyframe requests (PLI) sent to publishers.", nil, nil)
	descNACKs = prometheus.NewDesc("castbridge_nacks_sent_total",
		"NACK packets sent to publishers.", nil, nil)
	descPacketsLost = prometheus.NewDesc("castbridge_rtp_packets_lost_total",
		"Inbound video RTP packets given up as lost.", nil, nil)
	descFastPath = prometheus.NewDesc("castbridge_rtp_fast_path_packets_total",
		"Inbound RTP packets the SRTP fast path decrypted off the ICE socket (the others took pion's receive path).", nil, nil)
	descFastPathFailures = prometheus.NewDesc("castbridge_rtp_fast_path_auth_failures_total",
		"Inbound RTP packets the SRTP fast path could not authenticate and left to pion (a track with many in a row leaves the fast path).", nil, nil)
	descFastPathInline = prometheus.NewDesc("castbridge_rtp_fast_path_inline_packets_total",
		"Inbound RTP packets of the fast path that the ICE socket's reader handed to their track's pipeline itself, without waking the track's goroutine (video, and Opus no AAC output decodes).", nil, nil)
	descOversized = prometheus.NewDesc("castbridge_ice_udp_oversized_datagrams_total",
		"Datagrams on the ICE UDP port dropped for being over 4 KiB (larger than any ICE, DTLS or RTP packet of a publisher).", nil, nil)
	descFillerFrames = prometheus.NewDesc("castbridge_video_filler_frames_total",
		"Filler frames sent instead of a publisher's picture while its video was muted or stalled (black for H.264, the last picture for VP9, AV1, H.265).", nil, nil)
	descRefusals = prometheus.NewDesc("castbridge_limit_refusals_total",
		"Requests refused with LIMIT_EXCEEDED, by limit.", []string{"limit"}, nil)
	descDraining = prometheus.NewDesc("castbridge_draining",
		"1 while the gateway refuses new publishers because it is shutting down (SIGTERM), else 0.", nil, nil)
	descWebhookDelivered = prometheus.NewDesc("castbridge_webhook_deliveries_total",
		"Events the webhook receivers accepted (2xx), over all --webhook URLs.", nil, nil)
	descWebhookFailed = prometheus.NewDesc("castbridge_webhook_failed_attempts_total",
		"Webhook requests that failed (network error, timeout, non-2xx); most are retried.", nil, nil)
	descWebhookDropped = prometheus.NewDesc("castbridge_webhook_dropped_total",
		"Webhook events given up, by reason: queue_full (the oldest queued was dropped), gave_up (attempts or age ran out, or the receiver refused with a 4xx), shutdown (left at the shutdown deadline).",
		[]string{"reason"}, nil)
	descSTUNUp = prometheus.NewDesc("castbridge_ice_stun_up",
		"Whether the last query to the STUN server (--stun) was answered.", nil, nil)
	descSTUNFailures = prometheus.NewDesc("castbridge_ice_stun_failures_total",
		"STUN queries (--stun) that got no answer.", nil, nil)
	descPublicAddr = prometheus.NewDesc("castbridge_ice_public_address_info",
		"The public address STUN learned, advertised as a srflx candidate.", []string{"address"}, nil)
)

// snapshotCollector turns Manager.Metrics into const metrics at each scrape:
// the gateway keeps its counters in its own atomics (closed streams' totals
// plus the live ones'), so nothing on the media path knows Prometheus.
type snapshotCollector struct{ m *gateway.Manager }

func (c snapshotCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descStreams, descTargets, descStreamsCreated, descBytesSent,
		descFramesSent, descFramesDropped, descReconnects, descPLIs, descNACKs, descPacketsLost,
		descFillerFrames, descFastPath, descFastPathFailures, descFastPathInline, descOversized, descRefusals, descDraining, descWebhookDelivered, descWebhookFailed, descWebhookDropped,
		descSTUNUp, descSTUNFailures, descPublicAddr} {
		ch <- d
	}
}

func (c snapshotCollector) Collect(ch chan<- prometheus.Metric) {
	mt := c.m.Metrics()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	for st, n := range mt.StreamsByState {
		gauge(descStreams, float64(n), string(st))
	}
	for st, n := range mt.TargetsByState {
		gauge(descTargets, float64(n), string(st))
	}
	counter(descStreamsCreated, mt.StreamsTotal)
	counter(descBytesSent, mt.BytesSent)
	counter(descFramesSent, mt.FramesSent)
	counter(descFramesDropped, mt.FramesDropped)
	counter(descReconnects, mt.Reconnects)
	counter(descPLIs, mt.PLIs)
	counter(descNACKs, mt.NACKs)
	counter(descPacketsLost, mt.PacketsLost)
	counter(descFillerFrames, mt.FillerFrames)
	counter(descFastPath, mt.FastPathPackets)
	counter(descFastPathFailures, mt.FastPathAuthFailures)
	counter(descFastPathInline, mt.FastPathInline)
	counter(descOversized, mt.OversizedDatagrams)
	for limit, n := range mt.LimitRefusals {
		counter(descRefusals, n, limit)
	}
	gauge(descDraining, boolValue(mt.Draining))
	wh := mt.Webhooks
	counter(descWebhookDelivered, wh.Delivered)
	counter(descWebhookFailed, wh.Failed)
	counter(descWebhookDropped, wh.DroppedGaveUp, "gave_up")
	counter(descWebhookDropped, wh.DroppedQueueFull, "queue_full")
	counter(descWebhookDropped, wh.DroppedShutdown, "shutdown")
	if st := mt.STUN; st.Server != "" {
		gauge(descSTUNUp, boolValue(st.Up))
		counter(descSTUNFailures, st.Failures)
		if st.PublicAddr != "" {
			gauge(descPublicAddr, 1, st.PublicAddr)
		}
	}
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
