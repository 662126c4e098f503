package httpapi

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/castbridge/castbridge/gateway"
	"github.com/castbridge/castbridge/gateway/webhook"
	"github.com/castbridge/castbridge/gateway/webrtcin"
)

// oaOperation is the part of an OpenAPI operation the tests look at.
type oaOperation struct {
	OperationID string                     `json:"operationId"`
	Parameters  []json.RawMessage          `json:"parameters"`
	Security    *[]map[string][]string     `json:"security"`
	Responses   map[string]json.RawMessage `json:"responses"`
}

type oaParameter struct {
	Ref    string `json:"$ref"`
	Name   string `json:"name"`
	In     string `json:"in"`
	Schema struct {
		Type    string   `json:"type"`
		Minimum *float64 `json:"minimum"`
	} `json:"schema"`
}

type oaResponse struct {
	Ref     string                     `json:"$ref"`
	Content map[string]json.RawMessage `json:"content"`
}

type oaDoc struct {
	OpenAPI    string                                `json:"openapi"`
	Paths      map[string]map[string]json.RawMessage `json:"paths"`
	Components struct {
		Schemas         map[string]json.RawMessage `json:"schemas"`
		Parameters      map[string]oaParameter     `json:"parameters"`
		Responses       map[string]oaResponse      `json:"responses"`
		SecuritySchemes map[string]struct {
			Type   string `json:"type"`
			Scheme string `json:"scheme"`
		} `json:"securitySchemes"`
	} `json:"components"`
}

var oaMethods = map[string]bool{"get": true, "put": true, "post": true, "delete": true, "options": true, "head": true, "patch": true, "trace": true}

func loadOpenAPI(t *testing.T) (oaDoc, any) {
	t.Helper()
	raw, err := os.ReadFile("openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	var doc oaDoc
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("openapi.json does not parse: %v", err)
	}
	var tree any
	if err := json.Unmarshal(raw, &tree); err != nil {
		t.Fatal(err)
	}
	return doc, tree
}

// operations returns the path's operations by lower-case method.
func operations(t *testing.T, item map[string]json.RawMessage) map[string]oaOperation {
	t.Helper()
	ops := map[string]oaOperation{}
	for k, v := range item {
		if !oaMethods[k] {
			continue
		}
		var op oaOperation
		if err := json.Unmarshal(v, &op); err != nil {
			t.Fatalf("operation %s: %v", k, err)
		}
		ops[k] = op
	}
	return ops
}

var pathParam = regexp.MustCompile(`\{[^}]*\}`)

// normPath makes templated paths comparable: OpenAPI treats /whip/{key} and
// /whip/{id} as the same path.
func normPath(p string) string { return pathParam.ReplaceAllString(p, "{}") }

func (d oaDoc) op(t *testing.T, method, path string) (oaOperation, bool) {
	t.Helper()
	for p, item := range d.Paths {
		if normPath(p) != normPath(path) {
			continue
		}
		op, ok := operations(t, item)[strings.ToLower(method)]
		return op, ok
	}
	return oaOperation{}, false
}

func TestOpenAPIVersionAndServed(t *testing.T) {
	doc, _ := loadOpenAPI(t)
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Fatalf("openapi = %q, want 3.x", doc.OpenAPI)
	}
	rec := httptest.NewRecorder()
	serveOpenAPI(rec, httptest.NewRequest(http.MethodGet, "/openapi.json", nil))
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q", ct)
	}
	raw, _ := os.ReadFile("openapi.json")
	if rec.Body.String() != string(raw) {
		t.Error("the served document is not openapi.json")
	}
}

func TestOpenAPIOperationsHaveResponses(t *testing.T) {
	doc, _ := loadOpenAPI(t)
	if len(doc.Paths) == 0 {
		t.Fatal("no paths")
	}
	ids := map[string]string{}
	for p, item := range doc.Paths {
		ops := operations(t, item)
		if len(ops) == 0 {
			t.Errorf("%s has no operations", p)
		}
		var pathLevel []json.RawMessage
		if raw, ok := item["parameters"]; ok {
			if err := json.Unmarshal(raw, &pathLevel); err != nil {
				t.Fatalf("%s parameters: %v", p, err)
			}
		}
		for m, op := range ops {
			if len(op.Responses) == 0 {
				t.Errorf("%s %s has no responses", strings.ToUpper(m), p)
			}
			for code := range op.Responses {
				if n, err := strconv.Atoi(code); code != "default" && (err != nil || n < 100 || n > 599) {
					t.Errorf("%s %s: response key %q is not a status", strings.ToUpper(m), p, code)
				}
			}
			if op.OperationID == "" {
				t.Errorf("%s %s has no operationId", strings.ToUpper(m), p)
			} else if prev, dup := ids[op.OperationID]; dup {
				t.Errorf("operationId %s is used by %s and %s %s", op.OperationID, prev, strings.ToUpper(m), p)
			}
			ids[op.OperationID] = strings.ToUpper(m) + " " + p
			// Every template segment is declared as a path parameter.
			declared := map[string]bool{}
			for _, raw := range append(append([]json.RawMessage{}, pathLevel...), op.Parameters...) {
				var prm oaParameter
				if err := json.Unmarshal(raw, &prm); err != nil {
					t.Fatal(err)
				}
				if prm.Ref != "" {
					prm = doc.Components.Parameters[strings.TrimPrefix(prm.Ref, "#/components/parameters/")]
				}
				if prm.In == "path" {
					declared[prm.Name] = true
				}
			}
			for _, seg := range pathParam.FindAllString(p, -1) {
				if name := strings.Trim(seg, "{}"); !declared[name] {
					t.Errorf("%s %s does not declare path parameter %s", strings.ToUpper(m), p, name)
				}
			}
		}
	}
}

// walk calls f on every object in the JSON tree, with its JSON pointer.
func walk(v any, ptr string, f func(ptr string, obj map[string]any)) {
	switch v := v.(type) {
	case map[string]any:
		f(ptr, v)
		for k, c := range v {
			walk(c, ptr+"/"+strings.NewReplacer("~", "~0", "/", "~1").Replace(k), f)
		}
	case []any:
		for i, c := range v {
			walk(c, ptr+"/"+strconv.Itoa(i), f)
		}
	}
}

func resolve(tree any, ref string) (any, bool) {
	if !strings.HasPrefix(ref, "#/") {
		return nil, false
	}
	cur := tree
	for _, tok := range strings.Split(ref[2:], "/") {
		tok = strings.NewReplacer("~1", "/", "~0", "~").Replace(tok)
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = m[tok]; !ok {
			return nil, false
		}
	}
	return cur, true
}

func TestOpenAPIRefsResolve(t *testing.T) {
	_, tree := loadOpenAPI(t)
	n := 0
	walk(tree, "", func(ptr string, obj map[string]any) {
		ref, ok := obj["$ref"].(string)
		if !ok {
			return
		}
		n++
		if !strings.HasPrefix(ref, "#/components/") {
			t.Errorf("%s: $ref %q does not point into components", ptr, ref)
			return
		}
		if _, ok := resolve(tree, ref); !ok {
			t.Errorf("%s: $ref %q does not resolve", ptr, ref)
		}
	})
	if n == 0 {
		t.Error("no $ref at all: the schemas should be components")
	}
}

// apiCodes are the error codes API.md names, plus INTERNAL for a 500.
var apiCodes = []string{
	"INVALID_REQUEST", "INVALID_SDP", "UNSUPPORTED_CODEC", "NOT_FOUND", "NOT_CONNECTED",
	"ALREADY_BROADCASTING", "NOT_BROADCASTING", "INVALID_OUTPUT", "OUTPUT_NOT_ALLOWED", "INGEST_UNREACHABLE",
	"INGEST_REJECTED", "METADATA_INVALID", "UNAUTHORIZED", "FORBIDDEN", "LIMIT_EXCEEDED", "INTERNAL",
	"ETAG_MISMATCH", "UNKNOWN_MID", "UNSUPPORTED_OFFER", "VIDEO_CODEC_MISMATCH", "CLUSTER_UNAVAILABLE",
}

func TestOpenAPIErrorCodes(t *testing.T) {
	doc, tree := loadOpenAPI(t)
	var ec struct {
		Enum []string `json:"enum"`
	}
	if err := json.Unmarshal(doc.Components.Schemas["ErrorCode"], &ec); err != nil {
		t.Fatalf("components.schemas.ErrorCode: %v", err)
	}
	enum := map[string]bool{}
	for _, c := range ec.Enum {
		enum[c] = true
	}
	for _, c := range apiCodes {
		if !enum[c] {
			t.Errorf("ErrorCode enum lacks %s", c)
		}
	}
	// Every error example uses a code of the enum.
	walk(tree, "", func(ptr string, obj map[string]any) {
		e, ok := obj["error"].(map[string]any)
		if !ok {
			return
		}
		if code, ok := e["code"].(string); ok && !enum[code] {
			t.Errorf("%s: example code %s is not in the ErrorCode enum", ptr, code)
		}
	})
}

// apiRoutes are the operations API.md defines.
var apiRoutes = []struct{ method, path string }{
	{"POST", "/v1/streams"},
	{"GET", "/v1/streams"},
	{"GET", "/v1/streams/{id}"},
	{"PATCH", "/v1/streams/{id}"},
	{"DELETE", "/v1/streams/{id}"},
	{"POST", "/v1/streams/{id}/broadcast"},
	{"GET", "/v1/streams/{id}/broadcast"},
	{"DELETE", "/v1/streams/{id}/broadcast"},
	{"POST", "/v1/streams/{id}/broadcast/targets"},
	{"DELETE", "/v1/streams/{id}/broadcast/targets/{targetId}"},
	{"POST", "/v1/streams/{id}/metadata"},
	{"GET", "/v1/streams/{id}/stats"},
	{"GET", "/v1/streams/{id}/events"},
	{"PATCH", "/v1/streams/{id}/ice"},
	{"POST", "/whip"},
	{"OPTIONS", "/whip"},
	{"POST", "/whip/{key}"},
	{"DELETE", "/whip/{id}"},
	{"PATCH", "/whip/{id}"},
	{"OPTIONS", "/whip/{id}"},
	{"GET", "/healthz"},
	{"GET", "/readyz"},
	{"GET", "/metrics"},
	{"GET", "/openapi.json"},
	{"GET", "/"},
	{"GET", "/sdk/castbridge.js"},
}

func TestOpenAPICoversAPI(t *testing.T) {
	doc, _ := loadOpenAPI(t)
	want := map[string]bool{}
	for _, r := range apiRoutes {
		want[r.method+" "+normPath(r.path)] = true
		if _, ok := doc.op(t, r.method, r.path); !ok {
			t.Errorf("%s %s is missing", r.method, r.path)
		}
	}
	// And nothing API.md does not define.
	var extra []string
	for p, item := range doc.Paths {
		for m := range operations(t, item) {
			if k := strings.ToUpper(m) + " " + normPath(p); !want[k] {
				extra = append(extra, strings.ToUpper(m)+" "+p)
			}
		}
	}
	sort.Strings(extra)
	if len(extra) > 0 {
		t.Errorf("operations API.md does not define: %v", extra)
	}
}

// TestOpenAPIStatuses checks the statuses API.md gives each endpoint.
func TestOpenAPIStatuses(t *testing.T) {
	doc, _ := loadOpenAPI(t)
	cases := []struct {
		method, path string
		statuses     []string
	}{
		{"POST", "/v1/streams", []string{"201", "400", "401", "403", "422", "503"}},
		{"GET", "/v1/streams", []string{"200", "401"}}, // a token lists its own streams: no 403
		{"GET", "/v1/streams/{id}", []string{"200", "401", "403", "404"}},
		{"PATCH", "/v1/streams/{id}", []string{"200", "400", "401", "403", "404"}},
		{"DELETE", "/v1/streams/{id}", []string{"204", "401", "403", "404"}},
		{"POST", "/v1/streams/{id}/broadcast", []string{"201", "400", "401", "403", "404", "409", "502"}},
		{"GET", "/v1/streams/{id}/broadcast", []string{"200", "401", "403", "404"}},
		{"DELETE", "/v1/streams/{id}/broadcast", []string{"200", "401", "403", "404"}},
		{"POST", "/v1/streams/{id}/broadcast/targets", []string{"201", "400", "401", "403", "404"}},
		{"DELETE", "/v1/streams/{id}/broadcast/targets/{targetId}", []string{"204", "401", "403", "404"}},
		{"POST", "/v1/streams/{id}/metadata", []string{"202", "400", "401", "403", "404", "409"}},
		{"GET", "/v1/streams/{id}/stats", []string{"200", "401", "403", "404"}},
		{"GET", "/v1/streams/{id}/events", []string{"200", "401", "403", "404"}},
		{"POST", "/whip", []string{"201", "400", "401", "403", "415", "422", "503"}},
		{"POST", "/whip/{key}", []string{"201", "401", "403", "415"}},
		{"DELETE", "/whip/{id}", []string{"200", "401", "403", "404"}},
		{"PATCH", "/whip/{id}", []string{"200", "204", "400", "401", "403", "404", "412", "415", "422"}},
		{"PATCH", "/v1/streams/{id}/ice", []string{"200", "204", "400", "401", "403", "404", "412", "415", "422"}},
		{"GET", "/readyz", []string{"200", "503"}},
		// A cluster (--redis): full or draining nodes redirect publishers;
		// calls for other nodes' streams may find the registry or the
		// owner unreachable.
		{"POST", "/v1/streams", []string{"307"}},
		{"POST", "/whip", []string{"307"}},
		{"POST", "/whip/{key}", []string{"307"}},
		{"GET", "/v1/streams/{id}", []string{"503"}},
		{"PATCH", "/v1/streams/{id}", []string{"503"}},
		{"DELETE", "/v1/streams/{id}", []string{"503"}},
		{"POST", "/v1/streams/{id}/broadcast", []string{"503"}},
		{"GET", "/v1/streams/{id}/broadcast", []string{"503"}},
		{"DELETE", "/v1/streams/{id}/broadcast", []string{"503"}},
		{"POST", "/v1/streams/{id}/broadcast/targets", []string{"503"}},
		{"DELETE", "/v1/streams/{id}/broadcast/targets/{targetId}", []string{"503"}},
		{"POST", "/v1/streams/{id}/metadata", []string{"503"}},
		{"GET", "/v1/streams/{id}/stats", []string{"503"}},
		{"GET", "/v1/streams/{id}/events", []string{"503"}},
		{"PATCH", "/v1/streams/{id}/ice", []string{"503"}},
		{"DELETE", "/whip/{id}", []string{"503"}},
		{"PATCH", "/whip/{id}", []string{"503"}},
	}
	for _, c := range cases {
		op, ok := doc.op(t, c.method, c.path)
		if !ok {
			continue // reported by TestOpenAPICoversAPI
		}
		for _, s := range c.statuses {
			if _, ok := op.Responses[s]; !ok {
				t.Errorf("%s %s does not document %s", c.method, c.path, s)
			}
		}
	}

	// Media types: WHIP speaks SDP, events are SSE, metrics are text.
	media := []struct {
		method, path, status, typ string
	}{
		{"POST", "/whip", "201", "application/sdp"},
		{"PATCH", "/whip/{id}", "200", "application/trickle-ice-sdpfrag"},
		{"GET", "/v1/streams/{id}/events", "200", "text/event-stream"},
		{"GET", "/metrics", "200", "text/plain"},
		{"GET", "/", "200", "text/html"},
		{"GET", "/openapi.json", "200", "application/json"},
		{"GET", "/v1/streams/{id}/stats", "200", "application/json"},
	}
	for _, c := range media {
		op, ok := doc.op(t, c.method, c.path)
		if !ok {
			continue
		}
		var r oaResponse
		_ = json.Unmarshal(op.Responses[c.status], &r)
		found := false
		for mt := range r.Content {
			found = found || strings.HasPrefix(mt, c.typ)
		}
		if !found {
			t.Errorf("%s %s %s is not %s", c.method, c.path, c.status, c.typ)
		}
	}

	// The events' stats interval has its minimum of 250 ms.
	if op, ok := doc.op(t, "GET", "/v1/streams/{id}/events"); ok {
		found := false
		for _, raw := range op.Parameters {
			var prm oaParameter
			_ = json.Unmarshal(raw, &prm)
			if prm.Name == "stats" && prm.In == "query" {
				found = true
				if prm.Schema.Minimum == nil || *prm.Schema.Minimum != 250 {
					t.Error("the stats query parameter's minimum is not 250")
				}
			}
		}
		if !found {
			t.Error("events has no stats query parameter")
		}
	}
}

// TestOpenAPISecurity checks the optional bearer scheme: on /v1 and WHIP
// (except OPTIONS), never on the service endpoints.
func TestOpenAPISecurity(t *testing.T) {
	doc, _ := loadOpenAPI(t)
	var scheme string
	for name, s := range doc.Components.SecuritySchemes {
		if s.Type == "http" && strings.EqualFold(s.Scheme, "bearer") {
			scheme = name
		}
	}
	if scheme == "" {
		t.Fatal("no http bearer security scheme")
	}
	for p, item := range doc.Paths {
		for m, op := range operations(t, item) {
			guarded := strings.HasPrefix(p, "/v1/") || (strings.HasPrefix(p, "/whip") && m != "options")
			var bearer, anonymous bool
			if op.Security != nil {
				for _, req := range *op.Security {
					if len(req) == 0 {
						anonymous = true
					}
					if _, ok := req[scheme]; ok {
						bearer = true
					}
				}
			}
			switch {
			case guarded && (!bearer || !anonymous):
				t.Errorf("%s %s: security should be [{%s: []}, {}] (the key is optional: only with --api-key or --token-key)", strings.ToUpper(m), p, scheme)
			case guarded:
				for _, st := range []string{"401", "403"} {
					if st == "403" && m == "get" && p == "/v1/streams" {
						continue // a publish token lists its own streams
					}
					if _, ok := op.Responses[st]; !ok {
						t.Errorf("%s %s does not document %s", strings.ToUpper(m), p, st)
					}
				}
			case !guarded && bearer:
				t.Errorf("%s %s needs no authorization", strings.ToUpper(m), p)
			}
		}
	}
}

// TestOpenAPIOfferLimits: the offer limits the document states for POST
// /v1/streams and WHIP are webrtcin's constants, and the example of a
// refused offer is the message InspectOffer gives.
func TestOpenAPIOfferLimits(t *testing.T) {
	_, tree := loadOpenAPI(t)
	body := fmt.Sprintf("An offer is at most %d bytes, with lines of at most %d characters, at most %d m-sections, %d formats on one m= line and %d a=candidate lines per m-section; past a limit the request is 400 `INVALID_SDP` naming it",
		webrtcin.MaxOfferBytes, webrtcin.MaxSDPLineLen, webrtcin.MaxMediaSections, webrtcin.MaxFormats, webrtcin.MaxCandidates)
	bad := fmt.Sprintf("one past the offer limits: %d bytes, lines of %d characters, %d m-sections, %d formats per m= line, %d candidates per m-section)",
		webrtcin.MaxOfferBytes, webrtcin.MaxSDPLineLen, webrtcin.MaxMediaSections, webrtcin.MaxFormats, webrtcin.MaxCandidates)

	var sections strings.Builder
	sections.WriteString("v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n")
	for range webrtcin.MaxMediaSections + 1 {
		sections.WriteString("m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:0\r\n")
	}
	_, err := webrtcin.InspectOffer(sections.String())
	if err == nil {
		t.Fatal("an offer past the m-section limit was taken")
	}
	refused := err.Error()

	get := func(v any, keys ...string) any {
		for _, k := range keys {
			m, ok := v.(map[string]any)
			if !ok {
				return nil
			}
			v = m[k]
		}
		return v
	}
	paths := tree.(map[string]any)["paths"]
	for _, p := range []string{"/v1/streams", "/whip", "/whip/{id}"} {
		r400 := get(paths, p, "post", "responses", "400")
		if d, _ := get(r400, "description").(string); !strings.Contains(d, bad) {
			t.Errorf("POST %s 400: %q does not state the limits %q", p, d, bad)
		}
		if msg, _ := get(r400, "content", "application/json", "examples", "INVALID_SDP_LIMIT", "value", "error", "message").(string); !strings.Contains(refused, msg) || msg == "" {
			t.Errorf("POST %s 400 example %q is not what InspectOffer says: %q", p, msg, refused)
		}
		desc := get(paths, p, "post", "requestBody", "description")
		if p == "/v1/streams" {
			desc = get(tree, "components", "schemas", "CreateStreamRequest", "properties", "sdp", "description")
		}
		if d, _ := desc.(string); !strings.Contains(d, body) {
			t.Errorf("POST %s offer: %q does not state the limits %q", p, d, body)
		}
	}
}

// TestOpenAPIWebhooks: the x-webhooks request matches what the webhook
// sender sends: the body's fields and the headers.
func TestOpenAPIWebhooks(t *testing.T) {
	_, tree := loadOpenAPI(t)
	post, ok := resolve(tree, "#/x-webhooks/streamEvent/post")
	if !ok {
		t.Fatal("no x-webhooks streamEvent post")
	}
	var headers []string
	for _, p := range post.(map[string]any)["parameters"].([]any) {
		pm := p.(map[string]any)
		if pm["in"] == "header" {
			headers = append(headers, pm["name"].(string))
		}
	}
	sort.Strings(headers)
	want := []string{webhook.AttemptHeader, webhook.DeliveryHeader, webhook.EventHeader, webhook.SignatureHeader}
	sort.Strings(want)
	if strings.Join(headers, ",") != strings.Join(want, ",") {
		t.Errorf("documented headers %v, sent %v", headers, want)
	}
	schema, ok := resolve(tree, "#/components/schemas/WebhookEvent")
	if !ok {
		t.Fatal("no WebhookEvent schema")
	}
	var documented []string
	for k := range schema.(map[string]any)["properties"].(map[string]any) {
		documented = append(documented, k)
	}
	sort.Strings(documented)
	var fields []string
	bt := reflect.TypeFor[webhook.Body]()
	for i := range bt.NumField() {
		fields = append(fields, strings.Split(bt.Field(i).Tag.Get("json"), ",")[0])
	}
	sort.Strings(fields)
	if strings.Join(documented, ",") != strings.Join(fields, ",") {
		t.Errorf("WebhookEvent documents %v, the body has %v", documented, fields)
	}
}

// TestOpenAPICluster: the cluster's additions to the views are documented
// (API.md: each stream view carries "node").
func TestOpenAPICluster(t *testing.T) {
	doc, _ := loadOpenAPI(t)
	for schema, props := range map[string][]string{
		"Stream":       {"node"},
		"StreamList":   {"partial", "unreachableNodes"},
		"HealthStatus": {"cluster"},
	} {
		var s struct {
			Properties map[string]json.RawMessage `json:"properties"`
		}
		if err := json.Unmarshal(doc.Components.Schemas[schema], &s); err != nil {
			t.Fatalf("%s: %v", schema, err)
		}
		for _, p := range props {
			if _, ok := s.Properties[p]; !ok {
				t.Errorf("%s has no %s", schema, p)
			}
		}
	}
}

// TestOpenAPIVideoView: every field of the stream view's video and of the
// inbound video stats is documented (the filler's among them), and the
// event name list holds every event a stream's bus carries.
func TestOpenAPIVideoView(t *testing.T) {
	_, tree := loadOpenAPI(t)
	for schema, typ := range map[string]reflect.Type{
		"VideoInfo":         reflect.TypeFor[gateway.VideoInfo](),
		"InboundVideoStats": reflect.TypeFor[gateway.VideoStats](),
	} {
		s, ok := resolve(tree, "#/components/schemas/"+schema)
		if !ok {
			t.Fatalf("no %s schema", schema)
		}
		props := s.(map[string]any)["properties"].(map[string]any)
		for i := range typ.NumField() {
			name := strings.Split(typ.Field(i).Tag.Get("json"), ",")[0]
			if _, ok := props[name]; !ok {
				t.Errorf("%s does not document %q", schema, name)
			}
		}
	}
	en, ok := resolve(tree, "#/components/schemas/EventName")
	if !ok {
		t.Fatal("no EventName schema")
	}
	documented := map[string]bool{}
	for _, n := range en.(map[string]any)["enum"].([]any) {
		documented[n.(string)] = true
	}
	for _, n := range gateway.EventNames() {
		if !documented[n] {
			t.Errorf("event %s is not in EventName", n)
		}
	}
}
