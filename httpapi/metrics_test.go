package httpapi_test

import (
	"net/http"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// scrape GETs url's /metrics and parses Prometheus' text format.
func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain; version=0.0.4") {
		t.Fatalf("/metrics: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("/metrics does not parse: %v", err)
	}
	return mfs
}

// TestMetricsExposition: /metrics keeps the names and types of the
// hand-written exposition it replaced, adds the histograms and the Go and
// process collectors, and labels nothing by stream.
func TestMetricsExposition(t *testing.T) {
	srv := newServer(t, "")
	mfs := scrape(t, srv.URL)
	want := map[string]dto.MetricType{
		"castbridge_streams_created_total":              dto.MetricType_COUNTER,
		"castbridge_target_bytes_sent_total":            dto.MetricType_COUNTER,
		"castbridge_target_frames_sent_total":           dto.MetricType_COUNTER,
		"castbridge_target_frames_dropped_total":        dto.MetricType_COUNTER,
		"castbridge_target_reconnects_total":            dto.MetricType_COUNTER,
		"castbridge_plis_sent_total":                    dto.MetricType_COUNTER,
		"castbridge_nacks_sent_total":                   dto.MetricType_COUNTER,
		"castbridge_rtp_packets_lost_total":             dto.MetricType_COUNTER,
		"castbridge_video_filler_frames_total":          dto.MetricType_COUNTER,
		"castbridge_rtp_fast_path_packets_total":        dto.MetricType_COUNTER,
		"castbridge_rtp_fast_path_auth_failures_total":  dto.MetricType_COUNTER,
		"castbridge_rtp_fast_path_inline_packets_total": dto.MetricType_COUNTER,
		"castbridge_ice_udp_oversized_datagrams_total":  dto.MetricType_COUNTER,
		"castbridge_limit_refusals_total":               dto.MetricType_COUNTER,
		"castbridge_webhook_deliveries_total":           dto.MetricType_COUNTER,
		"castbridge_webhook_failed_attempts_total":      dto.MetricType_COUNTER,
		"castbridge_webhook_dropped_total":              dto.MetricType_COUNTER,
		"castbridge_draining":                           dto.MetricType_GAUGE,
		"castbridge_frame_added_latency_seconds":        dto.MetricType_HISTOGRAM,
		"castbridge_target_queue_seconds":               dto.MetricType_HISTOGRAM,
		"castbridge_target_publish_seconds":             dto.MetricType_HISTOGRAM,
		"go_goroutines":                                 dto.MetricType_GAUGE,
		"go_memstats_heap_alloc_bytes":                  dto.MetricType_GAUGE,
		"process_cpu_seconds_total":                     dto.MetricType_COUNTER,
		"process_resident_memory_bytes":                 dto.MetricType_GAUGE,
		"process_open_fds":                              dto.MetricType_GAUGE,
	}
	for name, typ := range want {
		mf, ok := mfs[name]
		if !ok {
			t.Errorf("/metrics lacks %s", name)
			continue
		}
		if mf.GetType() != typ {
			t.Errorf("%s is a %s, want %s", name, mf.GetType(), typ)
		}
	}
	// Without --stun there is no STUN series; without streams no by-state
	// sample.
	for _, name := range []string{"castbridge_ice_stun_up", "castbridge_ice_public_address_info", "castbridge_streams"} {
		if _, ok := mfs[name]; ok {
			t.Errorf("/metrics has %s on a gateway without it", name)
		}
	}
	refusals := map[string]float64{}
	for _, m := range mfs["castbridge_limit_refusals_total"].GetMetric() {
		refusals[m.GetLabel()[0].GetValue()] = m.GetCounter().GetValue()
	}
	if len(refusals) != 3 || refusals["streams"] != 0 || refusals["targets"] != 0 || refusals["sse_subscribers"] != 0 {
		t.Errorf("limit refusals %v, want zeros for streams, targets, sse_subscribers", refusals)
	}
	if v := mfs["castbridge_draining"].GetMetric()[0].GetGauge().GetValue(); v != 0 {
		t.Errorf("castbridge_draining %v on a serving gateway", v)
	}
	if h := mfs["castbridge_frame_added_latency_seconds"].GetMetric()[0].GetHistogram(); h.GetSampleCount() != 0 || len(h.GetBucket()) < 10 {
		t.Errorf("frame latency before any frame: %d samples, %d buckets", h.GetSampleCount(), len(h.GetBucket()))
	}
}

// TestMetricsPerAPI: every API has a registry of its own, so two gateways in
// one process each serve their own counters (no global default registry).
func TestMetricsPerAPI(t *testing.T) {
	a, ma := newServerWith(t, nil)
	b := newServer(t, "")
	if err := ma.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	draining := func(url string) float64 {
		return scrape(t, url)["castbridge_draining"].GetMetric()[0].GetGauge().GetValue()
	}
	if da, db := draining(a.URL), draining(b.URL); da != 1 || db != 0 {
		t.Errorf("castbridge_draining: %v on the shut down gateway, %v on the other; want 1 and 0", da, db)
	}
}
