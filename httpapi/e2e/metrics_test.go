package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"gopkg.in/yaml.v3"

	"github.com/castbridge/castbridge/gateway/gatewaytest"
)

// deployDir holds the Grafana dashboard and the Prometheus rules.
const deployDir = "../../deploy"

// clusterMetrics are series a node exposes only with --redis: a gateway in
// this harness has none. httpapi's TestClusterNode scrapes them from a
// clustered node; here each must be named in the API's metrics source, so
// a rename there cannot leave an alert watching nothing.
var clusterMetrics = []string{"castbridge_cluster_redis_up"}

// prometheusOwn are series Prometheus makes itself for every scrape.
var prometheusOwn = []string{"up"}

// boundedLabels are the only labels castbridge puts on its own series: each
// takes a handful of values (no stream, target or URL), and Prometheus adds
// instance and job.
var boundedLabels = []string{"state", "limit", "reason", "address"}

// TestSRTPFastPathSwitch: with the fast path (the default) a publisher's
// media is decrypted by it; with NoSRTPFastPath (--srtp-fast-path=false)
// none is, and the media reaches the ingest all the same.
func TestSRTPFastPathSwitch(t *testing.T) {
	parallel(t, light)
	for _, off := range []bool{false, true} {
		t.Run(fmt.Sprintf("off=%v", off), func(t *testing.T) {
			h := newHarness(t, harnessOptions{noSRTPFastPath: off})
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			_, id := h.publish(ctx, gatewaytest.PublisherConfig{VideoFile: testdata("video.h264"), Loop: true})
			h.startTargets(id, map[string]any{"output": h.ingestURL() + "/fastpath"})
			if h.rec.waitFramesOfPrefix("fastpath", 30, 10*time.Second) == "" {
				t.Fatal("the ingest got fewer than 30 frames")
			}
			mt := h.m.Metrics()
			if off && mt.FastPathPackets != 0 {
				t.Errorf("%d packets on the fast path with it off", mt.FastPathPackets)
			}
			if !off && (mt.FastPathPackets < 100 || mt.FastPathAuthFailures != 0) {
				t.Errorf("fast path on: %d packets decrypted, %d failures", mt.FastPathPackets, mt.FastPathAuthFailures)
			}
		})
	}
}

// TestMetricsScrape publishes through a real gateway to a target whose
// stream key and query are secrets, then scrapes /metrics: it parses, the
// histograms counted the frames, no secret and no unbounded label is in
// it, and every metric and label the Grafana dashboard and the alert rules
// in deploy/ use is one it exposes.
func TestMetricsScrape(t *testing.T) {
	parallel(t, light)
	const key, query = "MeTrIcSkEy", "QuErYsEcReT"
	h := newHarness(t, harnessOptions{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, id := h.publish(ctx, gatewaytest.PublisherConfig{VideoFile: testdata("video.h264"), Loop: true})
	if st, raw := h.call("POST", "/v1/streams/"+id+"/broadcast", map[string]any{"targets": []any{
		map[string]any{"output": h.ingestURL() + "/" + key + "?token=" + query},
	}}, nil); st != http.StatusOK && st != http.StatusCreated {
		t.Fatalf("start broadcast: %d %s", st, raw)
	}
	const frames = 30
	name := h.rec.waitFramesOfPrefix(key, frames, 10*time.Second)
	if name == "" {
		t.Fatalf("the ingest got fewer than %d frames", frames)
	}
	raw := h.get("/metrics")
	for _, s := range []string{key, query} {
		if strings.Contains(raw, s) {
			at := strings.Index(raw, s)
			t.Errorf("/metrics leaks a secret of the target's URL: ...%s...", raw[max(0, at-200):min(len(raw), at+40)])
		}
	}
	mfs, err := parseExposition(raw)
	if err != nil {
		t.Fatalf("/metrics does not parse: %v", err)
	}

	gauge := func(name, state string) float64 {
		for _, m := range mfs[name].GetMetric() {
			if labelOf(m, "state") == state {
				return m.GetGauge().GetValue()
			}
		}
		return -1
	}
	if v := gauge("castbridge_streams", "live"); v != 1 {
		t.Errorf(`castbridge_streams{state="live"} %v, want 1`, v)
	}
	if v := gauge("castbridge_targets", "live"); v != 1 {
		t.Errorf(`castbridge_targets{state="live"} %v, want 1`, v)
	}
	hist := func(name string) *dto.Histogram {
		mf := mfs[name]
		if mf.GetType() != dto.MetricType_HISTOGRAM || len(mf.GetMetric()) != 1 {
			t.Fatalf("%s: %v, want one histogram", name, mf)
		}
		return mf.GetMetric()[0].GetHistogram()
	}
	lat, queue, pub := hist("castbridge_frame_added_latency_seconds"), hist("castbridge_target_queue_seconds"), hist("castbridge_target_publish_seconds")
	if lat.GetSampleCount() < frames || queue.GetSampleCount() < frames {
		t.Errorf("histograms counted %d frame latencies and %d queue times; the ingest got %d frames", lat.GetSampleCount(), queue.GetSampleCount(), frames)
	}
	if pub.GetSampleCount() != 1 || pub.GetSampleSum() <= 0 || pub.GetSampleSum() > 5 {
		t.Errorf("publish time: %d samples, sum %v s; want the one connect, under the 5 s publish timeout", pub.GetSampleCount(), pub.GetSampleSum())
	}
	if mean := lat.GetSampleSum() / float64(lat.GetSampleCount()); mean <= 0 || mean > 2.5 {
		t.Errorf("mean added latency %v s: outside what the interleaver allows", mean)
	}
	t.Logf("added latency mean %.1f ms over %d frames; queue mean %.2f ms; publish %.1f ms",
		1000*lat.GetSampleSum()/float64(lat.GetSampleCount()), lat.GetSampleCount(),
		1000*queue.GetSampleSum()/float64(queue.GetSampleCount()), 1000*pub.GetSampleSum())

	// Labels: bounded ones only on castbridge's series.
	labelsOf := map[string][]string{}
	for n, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if !slices.Contains(labelsOf[n], l.GetName()) {
					labelsOf[n] = append(labelsOf[n], l.GetName())
				}
				if strings.HasPrefix(n, "castbridge_") && !slices.Contains(boundedLabels, l.GetName()) {
					t.Errorf("%s has label %s=%q, not one of the bounded labels %v", n, l.GetName(), l.GetValue(), boundedLabels)
				}
			}
		}
		if mf.GetType() == dto.MetricType_HISTOGRAM {
			labelsOf[n] = append(labelsOf[n], "le")
		}
	}

	// deploy/: every metric and label the dashboard and the alerts use.
	queries := append(dashboardQueries(t), alertQueries(t)...)
	if len(queries) < 20 {
		t.Fatalf("found %d queries in the dashboard and alert rules", len(queries))
	}
	used := map[string]bool{}
	for _, q := range queries {
		uses, err := promqlUses(q.expr)
		if err != nil {
			t.Errorf("%s: %q: %v", q.where, q.expr, err)
			continue
		}
		for _, u := range uses {
			used[u.metric] = true
			family, known := exposedFamily(mfs, u.metric)
			switch {
			case slices.Contains(prometheusOwn, u.metric):
				continue
			case slices.Contains(clusterMetrics, u.metric):
				if !inSource(t, u.metric) {
					t.Errorf("%s: %s: no httpapi source names this cluster metric", q.where, u.metric)
				}
				continue
			case !known:
				t.Errorf("%s: %s is not a metric castbridge exposes", q.where, u.metric)
				continue
			}
			for _, l := range u.labels {
				if l != "instance" && l != "job" && !slices.Contains(labelsOf[family], l) {
					t.Errorf("%s: %s has no label %q (it has %v)", q.where, u.metric, l, labelsOf[family])
				}
			}
		}
	}
	for _, n := range []string{"castbridge_frame_added_latency_seconds_bucket", "castbridge_target_queue_seconds_bucket",
		"castbridge_target_publish_seconds_bucket", "castbridge_targets", "castbridge_draining", "castbridge_target_frames_dropped_total"} {
		if !used[n] {
			t.Errorf("neither the dashboard nor the alerts use %s", n)
		}
	}
}

// waitFramesOfPrefix waits until a stream whose publish name begins with
// prefix has n video frames, and returns its name ("" at the timeout).
func (r *recorder) waitFramesOfPrefix(prefix string, n int, timeout time.Duration) string {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		r.mu.Lock()
		var names []string
		for name := range r.messages {
			if strings.HasPrefix(name, prefix) {
				names = append(names, name)
			}
		}
		r.mu.Unlock()
		for _, name := range names {
			if r.videoFrames(name) >= n {
				return name
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return ""
}

func parseExposition(s string) (map[string]*dto.MetricFamily, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	return p.TextToMetricFamilies(strings.NewReader(s))
}

func labelOf(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// exposedFamily maps a series name to the family that exposes it: the
// name itself, or a histogram's _bucket, _sum and _count.
func exposedFamily(mfs map[string]*dto.MetricFamily, name string) (string, bool) {
	if _, ok := mfs[name]; ok {
		return name, true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suffix); ok {
			if mf, ok := mfs[base]; ok && (mf.GetType() == dto.MetricType_HISTOGRAM || suffix != "_bucket" && mf.GetType() == dto.MetricType_SUMMARY) {
				return base, true
			}
		}
	}
	return "", false
}

// inSource reports whether a non-test Go file of httpapi names metric.
func inSource(t *testing.T, metric string) bool {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("..", "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(b, []byte(`"`+metric+`"`)) {
			return true
		}
	}
	return false
}

// query is one PromQL expression of deploy/ and where it is.
type query struct{ where, expr string }

// dashboardQueries are the dashboard's panel expressions and the metric its
// variables take label values of. The file must be a Grafana dashboard:
// JSON with a title, a uid and panels.
func dashboardQueries(t *testing.T) []query {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(deployDir, "grafana", "castbridge-dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Title      string           `json:"title"`
		UID        string           `json:"uid"`
		Panels     []map[string]any `json:"panels"`
		Templating struct {
			List []struct {
				Name       string `json:"name"`
				Type       string `json:"type"`
				Definition string `json:"definition"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("dashboard: %v", err)
	}
	if dash.Title == "" || dash.UID == "" || len(dash.Panels) == 0 {
		t.Fatalf("dashboard: title %q, uid %q, %d panels", dash.Title, dash.UID, len(dash.Panels))
	}
	var qs []query
	var walk func(where string, v any)
	walk = func(where string, v any) {
		switch v := v.(type) {
		case map[string]any:
			if title, ok := v["title"].(string); ok {
				where = fmt.Sprintf("dashboard panel %q", title)
			}
			for k, c := range v {
				if s, ok := c.(string); ok && k == "expr" {
					qs = append(qs, query{where, s})
				}
				walk(where, c)
			}
		case []any:
			for _, c := range v {
				walk(where, c)
			}
		}
	}
	for _, p := range dash.Panels {
		walk("dashboard", p)
	}
	labelValues := regexp.MustCompile(`^label_values\((.+),\s*([A-Za-z_]+)\)$`)
	for _, v := range dash.Templating.List {
		if v.Type != "query" {
			continue
		}
		m := labelValues.FindStringSubmatch(v.Definition)
		if m == nil {
			t.Errorf("dashboard variable %s: %q is not label_values(<selector>, <label>)", v.Name, v.Definition)
			continue
		}
		qs = append(qs, query{"dashboard variable " + v.Name, m[1]})
	}
	return qs
}

// alertRules is the Prometheus rule file format, decoded strictly.
type alertRules struct {
	Groups []struct {
		Name     string `yaml:"name"`
		Interval string `yaml:"interval"`
		Rules    []struct {
			Alert         string            `yaml:"alert"`
			Record        string            `yaml:"record"`
			Expr          string            `yaml:"expr"`
			For           string            `yaml:"for"`
			KeepFiringFor string            `yaml:"keep_firing_for"`
			Labels        map[string]string `yaml:"labels"`
			Annotations   map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

// alertQueries decodes deploy/prometheus/alerts.yaml (unknown fields
// refused), checks each rule's shape and returns the expressions. The
// alerts the issue asks for must be there.
func alertQueries(t *testing.T) []query {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(deployDir, "prometheus", "alerts.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	var rf alertRules
	if err := dec.Decode(&rf); err != nil {
		t.Fatalf("alerts.yaml: %v", err)
	}
	var qs []query
	seen := map[string]bool{}
	for _, g := range rf.Groups {
		if g.Name == "" || len(g.Rules) == 0 {
			t.Errorf("alerts.yaml: group %q with %d rules", g.Name, len(g.Rules))
		}
		for _, r := range g.Rules {
			where := "alert " + r.Alert
			if (r.Alert == "") == (r.Record == "") {
				t.Errorf("alerts.yaml: a rule must be an alert or a record: %+v", r)
				continue
			}
			if r.Record != "" {
				t.Errorf("alerts.yaml: recording rule %s: the name check here knows no recorded series", r.Record)
				continue
			}
			if seen[r.Alert] {
				t.Errorf("alerts.yaml: %s twice", r.Alert)
			}
			seen[r.Alert] = true
			for _, d := range []string{r.For, r.KeepFiringFor, g.Interval} {
				if _, err := model.ParseDuration(d); d != "" && err != nil {
					t.Errorf("%s: duration %q: %v", where, d, err)
				}
			}
			if r.Labels["severity"] == "" || r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
				t.Errorf("%s: wants a severity label and summary and description annotations", where)
			}
			for _, a := range r.Annotations {
				if strings.Count(a, "{{") != strings.Count(a, "}}") {
					t.Errorf("%s: unbalanced template in %q", where, a)
				}
			}
			qs = append(qs, query{where, r.Expr})
		}
	}
	for _, want := range []string{"CastbridgeDown", "CastbridgeTargetsFailing", "CastbridgeTargetsReconnecting", "CastbridgeFramesDropped",
		"CastbridgeLatencyP99High", "CastbridgeDrainingLong", "CastbridgeRedisDegraded"} {
		if !seen[want] {
			t.Errorf("alerts.yaml has no %s", want)
		}
	}
	return qs
}

// metricUse is a metric a PromQL expression reads and the labels it
// matches or groups it by.
type metricUse struct {
	metric string
	labels []string
}

var (
	promString   = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)
	promMatchers = regexp.MustCompile(`([A-Za-z_:][A-Za-z0-9_:]*)?\s*\{([^{}]*)\}`)
	promMatcher  = regexp.MustCompile(`([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)`)
	promRange    = regexp.MustCompile(`\[[^\[\]]*\]`)
	promGrouping = regexp.MustCompile(`\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^()]*)\)`)
	promToken    = regexp.MustCompile(`[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?|[A-Za-z_:][A-Za-z0-9_:]*(?:\s*\()?`)
	promKeywords = []string{"and", "or", "unless", "bool", "offset", "inf", "nan", "Inf", "NaN"}
)

// promqlUses lists the metrics an expression reads, with the labels of its
// matchers and of every by/without/on/ignoring clause (attributed to each
// metric: the check is that every label used exists on the metrics used).
// It is a lexer, not a parser (the PromQL parser is in the prometheus
// module, far too big to pull in): strings, matchers, ranges and grouping
// lists are taken out, and every identifier left that does not open a
// function call or is a keyword is a metric. Brackets must balance.
func promqlUses(expr string) ([]metricUse, error) {
	s := promString.ReplaceAllString(expr, `""`)
	var stack []rune
	for _, r := range s {
		switch r {
		case '(', '[', '{':
			stack = append(stack, r)
		case ')', ']', '}':
			open := map[rune]rune{')': '(', ']': '[', '}': '{'}[r]
			if len(stack) == 0 || stack[len(stack)-1] != open {
				return nil, fmt.Errorf("unbalanced %q", r)
			}
			stack = stack[:len(stack)-1]
		}
	}
	if len(stack) > 0 {
		return nil, fmt.Errorf("unclosed %q", stack[len(stack)-1])
	}
	var grouping []string
	for _, m := range promGrouping.FindAllStringSubmatch(s, -1) {
		for _, l := range strings.Split(m[1], ",") {
			if l = strings.TrimSpace(l); l != "" {
				grouping = append(grouping, l)
			}
		}
	}
	s = promGrouping.ReplaceAllString(s, " ")
	var uses []metricUse
	// A selector with matchers: its metric (if named) and their labels.
	s = promMatchers.ReplaceAllStringFunc(s, func(sel string) string {
		m := promMatchers.FindStringSubmatch(sel)
		u := metricUse{metric: m[1]}
		for _, l := range promMatcher.FindAllStringSubmatch(m[2], -1) {
			if l[1] == "__name__" {
				return " "
			}
			u.labels = append(u.labels, l[1])
		}
		if u.metric != "" {
			uses = append(uses, u)
		}
		return " "
	})
	s = promRange.ReplaceAllString(s, " ")
	for _, tok := range promToken.FindAllString(s, -1) {
		if tok[0] >= '0' && tok[0] <= '9' || strings.HasSuffix(tok, "(") || slices.Contains(promKeywords, tok) {
			continue
		}
		uses = append(uses, metricUse{metric: tok})
	}
	if len(uses) == 0 {
		return nil, fmt.Errorf("reads no metric")
	}
	for i := range uses {
		uses[i].labels = append(uses[i].labels, grouping...)
	}
	return uses, nil
}

// TestPromQLUses: the lexer finds metrics and labels and refuses what it
// cannot read.
func TestPromQLUses(t *testing.T) {
	parallel(t, light)
	got, err := promqlUses(`histogram_quantile(0.99, sum by (instance, le) (rate(castbridge_x_bucket{state="a}b",job=~"c"}[5m]))) > 1e3 and on(instance) castbridge_y == bool 1`)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, u := range got {
		names = append(names, u.metric)
		if u.metric == "castbridge_x_bucket" && !slices.Equal(u.labels, []string{"state", "job", "instance", "le", "instance"}) {
			t.Errorf("labels of castbridge_x_bucket: %v", u.labels)
		}
	}
	if !slices.Equal(names, []string{"castbridge_x_bucket", "castbridge_y"}) {
		t.Errorf("metrics %v", names)
	}
	for _, bad := range []string{`rate(castbridge_x[5m]`, `sum(castbridge_x})`, `vector(1)`} {
		if _, err := promqlUses(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}
