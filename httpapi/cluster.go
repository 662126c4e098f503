package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/castbridge/castbridge/gateway"
	"github.com/castbridge/castbridge/gateway/apierr"
	"github.com/castbridge/castbridge/gateway/cluster"
)

// In a cluster (Config.Cluster), any node answers any call: a call for a
// stream another node owns is forwarded to that node (a reverse proxy,
// streaming for SSE), GET /v1/streams asks every live node for its own,
// and a publisher this node cannot take is redirected (307) to the
// least-loaded node that can. A forwarded request keeps the caller's
// Authorization, which the owner checks as if the caller had come to it
// (the API key and token secret are the same on every node), so scoped
// tokens reach exactly what they would on the owner; it adds the hop
// header and a signature with the cluster secret (cluster.Sign), and a
// request with a hop is answered where it lands, never forwarded again.

const (
	// fanOutTimeout bounds one node's answer to a cluster-wide list.
	fanOutTimeout = 2 * time.Second
	// maxListBody bounds a node's list read by the fan-out.
	maxListBody = 16 << 20
	// clusterRetryAfter is the Retry-After of a 503 when the registry or
	// the owner cannot be reached: a heartbeat later things have changed.
	clusterRetryAfter = "3"
)

type hopKey struct{}

// isHop: the request came from another node (and its signature verified).
func isHop(r *http.Request) bool {
	_, ok := r.Context().Value(hopKey{}).(string)
	return ok
}

// clusterHop checks node-to-node requests: one that says it comes from a
// node must carry that node's valid signature (401 otherwise), and then
// has the original caller's address as its RemoteAddr, for the
// authorization webhook. Without a cluster the header is refused as well:
// nobody may pretend to be a node.
func (a *API) clusterHop(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get(cluster.HopHeader) == "" {
			next.ServeHTTP(w, r)
			return
		}
		if a.cluster == nil {
			a.writeErrorCode(w, r, apierr.CodeUnauthorized, "this node is in no cluster: requests with "+cluster.HopHeader+" are refused")
			return
		}
		node, remote, err := a.cluster.Verify(r)
		if err != nil {
			a.clusterWarn("hop", "cluster: refused a hop request", "from", r.RemoteAddr, "claimed_node", r.Header.Get(cluster.HopHeader), "err", err)
			a.writeErrorCode(w, r, apierr.CodeUnauthorized, "the node-to-node signature is missing, stale or wrong (is --cluster-secret the same on every node?)")
			return
		}
		if remote != "" {
			r.RemoteAddr = remote
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), hopKey{}, node)))
	})
}

// forwardStream sends a call for a stream this node does not own to the
// node that does. param is the route's stream id parameter. A stream no
// live node owns is the route's own 404.
func (a *API) forwardStream(param string) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			id := chi.URLParam(r, param)
			if a.cluster == nil || isHop(r) || r.Method == http.MethodOptions {
				next.ServeHTTP(w, r)
				return
			}
			if _, err := a.m.Stream(id); err == nil {
				next.ServeHTTP(w, r)
				return
			}
			if param == "key" && a.authConfigured() && a.m.RelayID(bearer(r)) < 0 {
				// A WHIP session's URL: its relay key, a token or the API
				// key, checked again by the owner. Nothing else is worth a
				// lookup and a hop.
				if _, e := a.identify(r); e != nil {
					a.unauthorized(w, r, e)
					return
				}
			}
			owner, err := a.cluster.Owner(r.Context(), id)
			switch {
			case errors.Is(err, cluster.ErrNotFound), err == nil && owner.ID == a.cluster.ID():
				next.ServeHTTP(w, r) // 404: gone, or a key left by a stream that just ended here
			case err != nil:
				a.clusterWarn("lookup", "cluster: stream lookup failed", "stream", id, "err", err)
				a.clusterUnavailable(w, r, "the cluster registry (Redis) is unavailable: this node cannot tell which node owns stream "+id)
			default:
				a.proxy(w, r, owner)
			}
		})
	}
}

func (a *API) clusterUnavailable(w http.ResponseWriter, r *http.Request, msg string) {
	w.Header().Set("Retry-After", clusterRetryAfter)
	a.writeErrorCode(w, r, apierr.CodeClusterUnavailable, msg)
}

// proxy forwards r to node as it came (method, path, query, headers,
// body), signed. The answer streams back (SSE as it comes).
func (a *API) proxy(w http.ResponseWriter, r *http.Request, node cluster.NodeInfo) {
	target, err := url.Parse(node.APIURL)
	if err != nil || target.Host == "" {
		a.log.Error("cluster: node entry with an unusable API URL", "node", node.ID)
		a.clusterUnavailable(w, r, "the owner's entry in the registry has no usable API URL")
		return
	}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.Out.Host = target.Host
			a.cluster.Sign(pr.Out, r.RemoteAddr)
		},
		Transport:     a.peers,
		FlushInterval: -1, // SSE, and nothing else waits for a buffer
		ModifyResponse: func(res *http.Response) error {
			// This node's CORS middleware answered the caller's Origin
			// already (the same --cors-origins on every node); the owner's
			// copies would make the headers repeat, which browsers refuse.
			for k := range res.Header {
				if strings.HasPrefix(k, "Access-Control-") {
					res.Header.Del(k)
				}
			}
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			if r.Context().Err() != nil {
				return // the caller left
			}
			a.clusterWarn("forward "+node.ID, "cluster: forwarding failed", "node", node.ID, "path", r.URL.Path, "err", err)
			a.clusterUnavailable(w, r, "the node that owns this stream ("+node.ID+") did not answer; it may have just stopped")
		},
	}
	if strings.HasSuffix(r.URL.Path, "/events") {
		// An event stream outlives the server's timeouts: as the events
		// handler does, no read deadline, and a write deadline per write.
		rc := http.NewResponseController(w)
		_ = rc.SetReadDeadline(time.Time{})
		w = &deadlineWriter{ResponseWriter: w, rc: rc}
		// It ends when this server shuts down (its stream lives on
		// elsewhere), not only when the caller or the owner ends it.
		ctx, cancel := context.WithCancel(r.Context())
		defer cancel()
		defer context.AfterFunc(a.forwarded, cancel)()
		r = r.WithContext(ctx)
	}
	rp.ServeHTTP(w, r)
}

// deadlineWriter sets a write deadline before each write: a proxied event
// stream whose client stopped reading is cut off as a local one is.
type deadlineWriter struct {
	http.ResponseWriter
	rc *http.ResponseController
}

func (d *deadlineWriter) Write(p []byte) (int, error) {
	_ = d.rc.SetWriteDeadline(time.Now().Add(sseWriteTimeout))
	return d.ResponseWriter.Write(p)
}

func (d *deadlineWriter) Flush() { _ = d.rc.Flush() }

func (d *deadlineWriter) Unwrap() http.ResponseWriter { return d.ResponseWriter }

// listBody is GET /v1/streams' answer. In a cluster, Partial says some
// node's streams are missing: the registry was unavailable (only this
// node's are listed) or the nodes in UnreachableNodes did not answer.
type listBody struct {
	Streams          []json.RawMessage `json:"streams"`
	Partial          bool              `json:"partial,omitempty"`
	UnreachableNodes []string          `json:"unreachableNodes,omitempty"`
}

// clusterList adds the other live nodes' streams to this node's: each is
// asked, with the caller's credential, for its own (a hop request), so a
// token sees on every node what the owners show it. Views come from their
// owners, live; Redis holds no view that could be stale.
func (a *API) clusterList(r *http.Request, local []gateway.StreamInfo) listBody {
	out := listBody{Streams: make([]json.RawMessage, 0, len(local))}
	created := map[int]time.Time{}
	add := func(raw json.RawMessage) {
		var v struct {
			CreatedAt time.Time `json:"createdAt"`
		}
		_ = json.Unmarshal(raw, &v)
		created[len(out.Streams)] = v.CreatedAt
		out.Streams = append(out.Streams, raw)
	}
	for _, s := range local {
		raw, _ := json.Marshal(s)
		add(raw)
	}
	if a.cluster == nil || isHop(r) {
		return out
	}
	nodes, err := a.cluster.Nodes(r.Context())
	if err != nil {
		a.clusterWarn("nodes", "cluster: listing the nodes failed: listing this node's streams only", "err", err)
		out.Partial = true
		return out
	}
	type result struct {
		node    string
		streams []json.RawMessage
		err     error
	}
	var (
		wg      sync.WaitGroup
		results = make([]result, len(nodes))
	)
	for i, n := range nodes {
		if n.ID == a.cluster.ID() {
			continue
		}
		wg.Go(func() {
			list, err := a.nodeStreams(r, n)
			results[i] = result{node: n.ID, streams: list, err: err}
		})
	}
	wg.Wait()
	for _, res := range results {
		if res.node == "" {
			continue
		}
		if res.err != nil {
			a.clusterWarn("list "+res.node, "cluster: a node did not list its streams", "node", res.node, "err", res.err)
			out.Partial = true
			out.UnreachableNodes = append(out.UnreachableNodes, res.node)
			continue
		}
		for _, raw := range res.streams {
			add(raw)
		}
	}
	// Oldest first, as one node lists them.
	idx := make([]int, len(out.Streams))
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(x, y int) int { return created[x].Compare(created[y]) })
	sorted := make([]json.RawMessage, len(idx))
	for i, j := range idx {
		sorted[i] = out.Streams[j]
	}
	out.Streams = sorted
	return out
}

// nodeStreams asks one node for the streams it owns.
func (a *API) nodeStreams(r *http.Request, n cluster.NodeInfo) ([]json.RawMessage, error) {
	ctx, cancel := context.WithTimeout(r.Context(), fanOutTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(n.APIURL, "/")+"/v1/streams", nil)
	if err != nil {
		return nil, fmt.Errorf("node %s's API URL: %w", n.ID, err)
	}
	if h := r.Header.Get("Authorization"); h != "" {
		req.Header.Set("Authorization", h)
	}
	a.cluster.Sign(req, r.RemoteAddr)
	resp, err := a.peers.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("node %s answered %d", n.ID, resp.StatusCode)
	}
	var body struct {
		Streams []json.RawMessage `json:"streams"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxListBody)).Decode(&body); err != nil {
		return nil, fmt.Errorf("node %s's list: %w", n.ID, err)
	}
	return body.Streams, nil
}

// placeElsewhere answers a publish this node cannot take (full or
// draining): 307 to the least-loaded node that can, at the same path
// (WHIP clients and HTTP clients follow it with the method and body), or
// 503 LIMIT_EXCEEDED with Retry-After when no node can. It returns false
// when the node is in no cluster (the caller answers as a single node).
func (a *API) placeElsewhere(w http.ResponseWriter, r *http.Request) bool {
	if a.cluster == nil || isHop(r) {
		return false
	}
	node, err := a.cluster.Place(r.Context())
	if err != nil {
		why := "no other node of the cluster can take it now"
		if !errors.Is(err, cluster.ErrNoRoom) {
			a.clusterWarn("place", "cluster: placement failed", "err", err)
			why = "the cluster registry (Redis) is unavailable, so no other node can be chosen"
		}
		a.m.CountRefusal(apierr.LimitStreams)
		a.writeError(w, r, &apierr.Error{Code: apierr.CodeLimitExceeded, Limit: apierr.LimitStreams,
			Message: "this node is full (--max-streams) or draining, and " + why})
		return true
	}
	loc := strings.TrimSuffix(node.APIURL, "/") + r.URL.RequestURI()
	a.log.Info("cluster: publisher redirected", "to", node.ID, "path", r.URL.Path)
	w.Header().Set("Location", loc)
	w.WriteHeader(http.StatusTemporaryRedirect)
	return true
}

// claim registers a new stream at once, so a call for it through another
// node right after the 201 finds it; when Redis is away the heartbeat
// registers it once it is back.
func (a *API) claim(ctx context.Context, id string) {
	if a.cluster == nil {
		return
	}
	if err := a.cluster.Claim(ctx, id); err != nil {
		a.clusterWarn("claim", "cluster: registering a stream failed; the next heartbeat retries", "stream", id, "err", err)
	}
}

// warnEvery is how often one kind of cluster failure is logged as a
// warning: a dead node fails every call for its streams until its entry
// expires, and an outage every lookup; the rest go to debug.
const warnEvery = 10 * time.Second

// quietLog remembers when each kind of cluster failure (keyed by what
// failed: "lookup", "forward <node>", ...) was last warned about. Its keys
// are a few constants and the nodes' ids.
type quietLog struct {
	mu   sync.Mutex
	last map[string]time.Time
}

// clusterWarn logs msg as a warning, or at debug level when the same kind
// of failure was warned about within warnEvery.
func (a *API) clusterWarn(kind, msg string, args ...any) {
	now := time.Now()
	q := &a.quiet
	q.mu.Lock()
	if q.last == nil {
		q.last = map[string]time.Time{}
	}
	loud := now.Sub(q.last[kind]) >= warnEvery
	if loud {
		q.last[kind] = now
	}
	q.mu.Unlock()
	if loud {
		a.log.Warn(msg, args...)
	} else {
		a.log.Debug(msg, args...)
	}
}

// newPeerTransport is the client of node-to-node calls: short dials (the
// nodes share a network), no response timeout (SSE), bounded idle pool.
func newPeerTransport() *http.Transport {
	return &http.Transport{
		Proxy:                 nil,
		DialContext:           (&net.Dialer{Timeout: 2 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConnsPerHost:   32,
		IdleConnTimeout:       60 * time.Second,
		TLSHandshakeTimeout:   5 * time.Second,
		ExpectContinueTimeout: time.Second,
		ForceAttemptHTTP2:     true,
	}
}
