// Package httpapi serves castbridge's HTTP API (API.md): the /v1 REST
// resources, WHIP, health and the OpenAPI document, on a chi router.
package httpapi

import (
	"context"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/castbridge/castbridge/gateway"
	"github.com/castbridge/castbridge/gateway/apierr"
	"github.com/castbridge/castbridge/gateway/cluster"
	"github.com/castbridge/castbridge/httpapi/auth"
)

// maxBody bounds JSON and SDP request bodies.
const maxBody = 1 << 20

// Config configures the API.
type Config struct {
	Manager *gateway.Manager
	// APIKey, when set, is the master key: a bearer token that may do
	// anything. With it or Tokens set, every /v1 and WHIP call needs a
	// credential.
	APIKey string
	// Tokens, when set, verifies scoped publish tokens (auth.Claims).
	Tokens *auth.Verifier
	// AuthWebhook, when set, is asked before a publish or a broadcast
	// starts; it fails closed.
	AuthWebhook *auth.Webhook
	// CORSOrigins are the other origins whose pages may call the API and
	// WHIP ("*": any; empty: none). ParseOrigins checks them.
	CORSOrigins []string
	Logger      *slog.Logger
	// KeepAlive is the SSE comment interval (default 15 s).
	KeepAlive time.Duration
	// Cluster, when set (--redis), makes this node one of many: calls for
	// other nodes' streams are forwarded, lists span the cluster,
	// publishers it cannot take are redirected (cluster.go).
	Cluster *cluster.Node
}

// API is castbridge's HTTP API.
type API struct {
	m         *gateway.Manager
	apiKey    string
	tokens    *auth.Verifier
	hook      *auth.Webhook
	cors      corsPolicy
	sessions  whipSessions
	keepAlive time.Duration
	log       *slog.Logger
	router    chi.Router
	cluster   *cluster.Node
	peers     *http.Transport // node-to-node calls (cluster.go)
	quiet     quietLog        // cluster failures already warned about
	// forwarded ends when the server shuts down (EndForwarded): event
	// streams proxied to other nodes end with it, as local ones end with
	// their streams.
	forwarded    context.Context
	endForwarded context.CancelFunc
	metrics      http.Handler // /metrics, over a registry of this API's own
}

// New builds the API's router.
func New(cfg Config) *API {
	a := &API{m: cfg.Manager, apiKey: cfg.APIKey, tokens: cfg.Tokens, hook: cfg.AuthWebhook,
		cors: newCORSPolicy(cfg.CORSOrigins), log: cfg.Logger, keepAlive: cfg.KeepAlive, cluster: cfg.Cluster}
	if a.cluster != nil {
		a.peers = newPeerTransport()
	}
	a.forwarded, a.endForwarded = context.WithCancel(context.Background())
	a.sessions.owners = map[string]sessionOwner{}
	a.metrics = newMetricsHandler(cfg.Manager, cfg.Cluster)
	if a.keepAlive <= 0 {
		a.keepAlive = 15 * time.Second
	}
	if a.log == nil {
		a.log = slog.Default()
	}
	r := chi.NewRouter()
	r.Use(a.recoverer, a.accessLog, a.corsMiddleware, a.clusterHop)

	r.Get("/healthz", a.healthz)
	r.Get("/readyz", a.readyz)
	r.Get("/openapi.json", serveOpenAPI)
	mountWeb(r)
	r.Get("/metrics", a.metrics.ServeHTTP)

	r.Route("/v1", func(r chi.Router) {
		r.Use(a.requireCredential)
		r.Post("/streams", a.createStream)
		r.Get("/streams", a.listStreams)
		r.Route("/streams/{id}", func(r chi.Router) {
			r.Use(a.forwardStream("id"))
			r.Get("/", a.getStream)
			r.Patch("/", a.patchStream)
			r.Delete("/", a.deleteStream)
			r.Post("/broadcast", a.startBroadcast)
			r.Get("/broadcast", a.getBroadcast)
			r.Delete("/broadcast", a.stopBroadcast)
			r.Patch("/ice", a.streamICE)
			r.Get("/stats", a.getStats)
			r.Get("/events", a.events)
			r.Post("/metadata", a.sendMetadata)
			r.Post("/broadcast/targets", a.addTarget)
			r.Delete("/broadcast/targets/{targetId}", a.removeTarget)
		})
	})

	r.Options("/whip", whipOptions)
	r.Options("/whip/{key}", whipOptions)
	r.Post("/whip", a.whipPublish)
	r.Post("/whip/{key}", a.whipPublish)
	r.With(a.forwardStream("key")).Delete("/whip/{key}", a.whipDelete)
	r.With(a.forwardStream("key")).Patch("/whip/{key}", a.whipPatch)

	r.NotFound(func(w http.ResponseWriter, r *http.Request) {
		a.writeErrorCode(w, r, apierr.CodeNotFound, "no such endpoint: "+r.Method+" "+r.URL.Path)
	})
	r.MethodNotAllowed(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusMethodNotAllowed, errorBody{Error: apierr.Info{
			Code: apierr.CodeInvalidRequest, Message: r.Method + " is not allowed on " + r.URL.Path}})
	})
	a.router = r
	return a
}

func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) { a.router.ServeHTTP(w, r) }

// EndForwarded ends the calls forwarded to other nodes that are still
// open (event streams): register it with http.Server.RegisterOnShutdown,
// so that Shutdown need not wait for other nodes' streams to end.
func (a *API) EndForwarded() { a.endForwarded() }

// Close ends forwarded calls and releases the idle node-to-node
// connections; call it after the HTTP server has shut down.
func (a *API) Close() {
	a.endForwarded()
	if a.peers != nil {
		a.peers.CloseIdleConnections()
	}
}

// bearer returns the request's bearer token, or "".
func bearer(r *http.Request) string {
	h := r.Header.Get("Authorization")
	if len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		return strings.TrimSpace(h[7:])
	}
	return ""
}

// recoverer turns a handler panic into a 500 for that request alone.
func (a *API) recoverer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				a.log.Error("handler panic", "method", r.Method, "path", r.URL.Path, "panic", v, "stack", string(debug.Stack()))
				a.writeErrorCode(w, r, apierr.CodeInternal, "internal error")
			}
		}()
		next.ServeHTTP(w, r)
	})
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	s.status = code
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// accessLog logs method, path (ids only, never tokens) and status.
func (a *API) accessLog(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		next.ServeHTTP(rec, r)
		path := r.URL.Path
		if strings.HasPrefix(path, "/whip/") && r.Method == http.MethodPost {
			path = "/whip/****" // the path may be a relay's stream key
		}
		a.log.Debug("http", "method", r.Method, "path", path, "status", rec.status, "dur", time.Since(start))
	})
}

// allowedMethods is what a path's routes answer: the WHIP endpoint takes
// offers; a WHIP session (or a keyed endpoint, the same path shape) takes
// offers, trickle ICE and its end; the rest of the API all four.
func allowedMethods(path string) string {
	switch {
	case path == "/whip":
		return "POST, OPTIONS"
	case strings.HasPrefix(path, "/whip/"):
		return "POST, PATCH, DELETE, OPTIONS"
	default:
		return "GET, POST, PATCH, DELETE, OPTIONS"
	}
}

// CORS: the request headers the routes read (Authorization; Content-Type
// of offers, fragments and JSON; If-Match on PATCH), and the response
// headers WHIP clients read (ETag and Location of the POST, Link, and
// Accept-Patch/Accept-Post of OPTIONS).
const (
	corsAllowHeaders  = "Authorization, Content-Type, If-Match"
	corsExposeHeaders = "ETag, Location, Link, Accept-Patch, Accept-Post"
)

// corsMiddleware lets browser apps on the allowed origins (--cors-origins)
// call the API and WHIP: every answer to a request from one allows it and
// exposes the headers; a pre-flight is answered here with the path's
// methods. A request from any other origin gets no CORS header (its
// pre-flight goes on to the routes, which do not allow it), so the
// browser keeps the page from reading or, after a pre-flight, sending.
func (a *API) corsMiddleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !a.cors.any && len(a.cors.origins) > 0 {
			w.Header().Add("Vary", "Origin") // the answer depends on it
		}
		if origin := r.Header.Get("Origin"); origin != "" {
			allow := a.cors.allow(origin)
			if allow == "" {
				next.ServeHTTP(w, r)
				return
			}
			h := w.Header()
			h.Set("Access-Control-Allow-Origin", allow)
			h.Set("Access-Control-Expose-Headers", corsExposeHeaders)
			if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
				h.Set("Access-Control-Allow-Methods", allowedMethods(r.URL.Path))
				h.Set("Access-Control-Allow-Headers", corsAllowHeaders)
				h.Set("Access-Control-Max-Age", "600")
				w.WriteHeader(http.StatusNoContent)
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

func (a *API) healthz(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// readyBody is /readyz's answer. In a cluster it says how the node sees
// the registry: with Redis away the node still serves its own streams and
// takes publishers it has room for, so it stays ready, degraded.
type readyBody struct {
	Status  string        `json:"status"`
	Cluster *clusterReady `json:"cluster,omitempty"`
}

type clusterReady struct {
	Node      string     `json:"node"`
	Redis     string     `json:"redis"` // "up" or "unavailable"
	Degraded  bool       `json:"degraded"`
	DownSince *time.Time `json:"downSince,omitempty"`
}

func (a *API) readyz(w http.ResponseWriter, _ *http.Request) {
	body := readyBody{Status: "ready"}
	if a.cluster != nil {
		st := a.cluster.Status()
		cr := &clusterReady{Node: st.Node, Redis: "up"}
		if !st.RedisUp {
			cr.Redis, cr.Degraded = "unavailable", true
			if !st.DownSince.IsZero() {
				t := st.DownSince.UTC()
				cr.DownSince = &t
			}
		}
		body.Cluster = cr
	}
	if !a.m.Ready() {
		body.Status = "draining"
		writeJSON(w, http.StatusServiceUnavailable, body)
		return
	}
	writeJSON(w, http.StatusOK, body)
}
