// Package cluster joins castbridge nodes through Redis: each node registers
// itself (its id, API URL, ICE addresses and load) and the streams it owns
// under keys with a TTL that a heartbeat refreshes, so a node that dies
// leaves the registry within the TTL and takes its streams with it. The API
// asks it who owns a stream (to forward a call there), which nodes are live
// (to list the cluster), and where a publisher this node cannot take should
// go (placement). Node-to-node requests are signed with a shared secret
// (sign.go).
//
// Redis holds only ids, addresses and load; stream views stay on their
// owner, which answers for them (the API fans GET /v1/streams out), so a
// view is never staler than the call that fetched it.
package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Defaults of Config's timings. A node missing for DefaultTTL is gone; it
// refreshes its keys every DefaultTTL/3, so two heartbeats may be lost
// before it is.
const (
	DefaultTTL = 10 * time.Second
	// opTimeout bounds one Redis round trip of a request (lookup, claim);
	// a Redis that does not answer in time counts as unavailable.
	opTimeout = time.Second
)

// Errors of lookups. ErrUnavailable wraps the Redis failure.
var (
	ErrNotFound    = errors.New("cluster: no live node owns that stream")
	ErrUnavailable = errors.New("cluster: the registry (Redis) is unavailable")
	ErrNoRoom      = errors.New("cluster: no other live node can take a publisher")
)

// Load is what a node reports of itself at each heartbeat.
type Load struct {
	Streams    int
	Targets    int
	MaxStreams int // 0: no cap
	Draining   bool
}

// NodeInfo is one node's registry entry.
type NodeInfo struct {
	ID         string    `json:"id"`
	APIURL     string    `json:"apiUrl"`
	ICE        []string  `json:"ice,omitempty"`
	Streams    int       `json:"streams"`
	Targets    int       `json:"targets"`
	MaxStreams int       `json:"maxStreams"`
	CPU        float64   `json:"cpu"` // cores the process used since the last heartbeat
	Draining   bool      `json:"draining"`
	At         time.Time `json:"at"`
}

// hasRoom: the node takes a new publisher.
func (n NodeInfo) hasRoom() bool {
	return !n.Draining && (n.MaxStreams == 0 || n.Streams < n.MaxStreams)
}

// Config configures a Node.
type Config struct {
	// RedisURL is redis://[user:password@]host:port[/db] (or rediss://).
	RedisURL string
	NodeID   string
	// APIURL is the node's API base URL as other nodes and clients reach
	// it (--advertise-url), with no trailing slash.
	APIURL string
	// ICE are the node's advertised ICE addresses, for operators reading
	// the registry.
	ICE []string
	// Secret signs node-to-node requests (--cluster-secret).
	Secret string
	// TTL is how long the node's keys live without a heartbeat (0:
	// DefaultTTL); the heartbeat runs every TTL/3.
	TTL time.Duration
	// Prefix namespaces the keys (default "castbridge:"): clusters may
	// share one Redis.
	Prefix string
	// Load and Streams are asked at each heartbeat: the node's load and
	// the ids of the streams it owns. Both must be safe to call from the
	// heartbeat goroutine.
	Load    func() Load
	Streams func() []string
	Logger  *slog.Logger
}

// Node is this process's membership of the cluster.
type Node struct {
	cfg    Config
	rdb    *redis.Client
	log    *slog.Logger
	period time.Duration
	kick   chan struct{}
	cpu    cpuMeter

	mu         sync.Mutex
	up         bool      // the last heartbeat reached Redis
	everUp     bool      // one heartbeat ever did
	downSince  time.Time // when it stopped (zero while up)
	registered []string  // stream ids whose keys the last heartbeat wrote

	cancel context.CancelFunc
	done   chan struct{}
}

// New checks the configuration and makes the Redis client (it connects on
// first use); Start runs the heartbeat.
func New(cfg Config) (*Node, error) {
	if cfg.NodeID == "" || cfg.APIURL == "" {
		return nil, errors.New("cluster: a node needs an id and its API URL")
	}
	if len(cfg.Secret) < MinSecretLen {
		return nil, fmt.Errorf("cluster: the cluster secret must have at least %d bytes", MinSecretLen)
	}
	opt, err := redis.ParseURL(cfg.RedisURL)
	if err != nil {
		// redis' message may quote the URL, password and all: never shown.
		return nil, errors.New("cluster: the Redis URL is not redis://[user:password@]host:port[/db] or rediss://")
	}
	opt.DialTimeout, opt.ReadTimeout, opt.WriteTimeout = opTimeout, opTimeout, opTimeout
	// A heartbeat or a request retries by itself: no hidden waits.
	opt.MaxRetries, opt.DialerRetries = -1, 1
	if cfg.TTL <= 0 {
		cfg.TTL = DefaultTTL
	}
	if cfg.Prefix == "" {
		cfg.Prefix = "castbridge:"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Load == nil {
		cfg.Load = func() Load { return Load{} }
	}
	if cfg.Streams == nil {
		cfg.Streams = func() []string { return nil }
	}
	return &Node{cfg: cfg, rdb: redis.NewClient(opt), log: cfg.Logger, period: cfg.TTL / 3,
		kick: make(chan struct{}, 1)}, nil
}

// SetICE sets the ICE addresses the node's entry shows (known once the
// ICE sockets are open). Call it before Start.
func (n *Node) SetICE(addrs []string) { n.cfg.ICE = addrs }

// ID is the node's id.
func (n *Node) ID() string { return n.cfg.NodeID }

// APIURL is the node's advertised API base URL.
func (n *Node) APIURL() string { return n.cfg.APIURL }

// TTL is the registry entries' lifetime.
func (n *Node) TTL() time.Duration { return n.cfg.TTL }

func (n *Node) nodeKey(id string) string   { return n.cfg.Prefix + "node:" + id }
func (n *Node) streamKey(id string) string { return n.cfg.Prefix + "stream:" + id }
func (n *Node) nodesKey() string           { return n.cfg.Prefix + "nodes" }

// Start registers the node and runs its heartbeat until Close. The first
// heartbeat is written before Start returns (or has failed: the node then
// serves alone and retries).
func (n *Node) Start(ctx context.Context) {
	ctx, n.cancel = context.WithCancel(ctx)
	n.done = make(chan struct{})
	n.cpu.sample(time.Now())
	n.heartbeat(ctx)
	go n.run(ctx)
}

// Changed asks for a heartbeat now: a stream ended (its key goes at once)
// or the node's placement changed (draining). It never blocks.
func (n *Node) Changed() {
	select {
	case n.kick <- struct{}{}:
	default:
	}
}

func (n *Node) run(ctx context.Context) {
	defer close(n.done)
	t := time.NewTicker(n.period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-n.kick:
		}
		n.heartbeat(ctx)
	}
}

// heartbeat writes the node's entry and its streams' keys, all with the
// TTL, and deletes the keys of streams that ended since the last one. One
// pipeline: one round trip whatever the number of streams.
func (n *Node) heartbeat(ctx context.Context) {
	now := time.Now()
	load := n.cfg.Load()
	info := NodeInfo{ID: n.cfg.NodeID, APIURL: n.cfg.APIURL, ICE: n.cfg.ICE, Streams: load.Streams, Targets: load.Targets,
		MaxStreams: load.MaxStreams, Draining: load.Draining, CPU: n.cpu.sample(now), At: now.UTC()}
	raw, err := json.Marshal(info)
	if err != nil {
		n.log.Error("cluster: node entry", "err", err)
		return
	}
	streams := n.cfg.Streams()
	n.mu.Lock()
	gone := slices.DeleteFunc(slices.Clone(n.registered), func(id string) bool { return slices.Contains(streams, id) })
	n.mu.Unlock()

	cctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	expiry := now.Add(n.cfg.TTL).UnixMilli()
	_, err = n.rdb.Pipelined(cctx, func(p redis.Pipeliner) error {
		p.Set(cctx, n.nodeKey(n.cfg.NodeID), raw, n.cfg.TTL)
		p.ZAdd(cctx, n.nodesKey(), redis.Z{Score: float64(expiry), Member: n.cfg.NodeID})
		// Entries of nodes that stopped refreshing: their keys are gone.
		p.ZRemRangeByScore(cctx, n.nodesKey(), "-inf", "("+strconv.FormatInt(now.UnixMilli(), 10))
		for _, id := range streams {
			p.Set(cctx, n.streamKey(id), n.cfg.NodeID, n.cfg.TTL)
		}
		for _, id := range gone {
			p.Del(cctx, n.streamKey(id))
		}
		return nil
	})
	n.mu.Lock()
	defer n.mu.Unlock()
	// Keys a failed heartbeat could not delete expire within the TTL; the
	// owner answers 404 for them meanwhile.
	n.registered = streams
	if err != nil {
		if n.up || !n.everUp && n.downSince.IsZero() {
			n.log.Warn("cluster: Redis unavailable: serving this node's streams alone, refusing what it cannot place", "err", err)
			n.downSince = now
		}
		n.up = false
		return
	}
	if !n.up {
		n.log.Info("cluster: registered", "node", n.cfg.NodeID, "streams", len(streams), "was_down", !n.downSince.IsZero())
	}
	n.up, n.everUp, n.downSince = true, true, time.Time{}
}

// Claim registers a new stream at once, so that a call through another
// node right after its creation finds it. A failure is the registry's; the
// next heartbeat retries.
func (n *Node) Claim(ctx context.Context, streamID string) error {
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	err := n.rdb.Set(ctx, n.streamKey(streamID), n.cfg.NodeID, n.cfg.TTL).Err()
	// Registered either way: a stream that ends before the next
	// heartbeat has its key deleted by it.
	n.mu.Lock()
	if !slices.Contains(n.registered, streamID) {
		n.registered = append(n.registered, streamID)
	}
	n.mu.Unlock()
	if err != nil {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return nil
}

// Owner finds the live node that owns a stream: ErrNotFound when no key
// names one or its node has left the registry (died or stopped);
// ErrUnavailable when Redis does not answer.
func (n *Node) Owner(ctx context.Context, streamID string) (NodeInfo, error) {
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	id, err := n.rdb.Get(ctx, n.streamKey(streamID)).Result()
	if errors.Is(err, redis.Nil) {
		return NodeInfo{}, ErrNotFound
	}
	if err != nil {
		return NodeInfo{}, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	raw, err := n.rdb.Get(ctx, n.nodeKey(id)).Bytes()
	if errors.Is(err, redis.Nil) {
		return NodeInfo{}, ErrNotFound // the owner is gone, and its streams with it
	}
	if err != nil {
		return NodeInfo{}, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	var info NodeInfo
	if err := json.Unmarshal(raw, &info); err != nil {
		return NodeInfo{}, fmt.Errorf("cluster: node %s's entry: %w", id, err)
	}
	return info, nil
}

// Nodes lists the live nodes (this one included while it is registered),
// by id.
func (n *Node) Nodes(ctx context.Context) ([]NodeInfo, error) {
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	// ZRANGE ... BYSCORE: Redis 6.2 or later.
	ids, err := n.rdb.ZRangeArgs(ctx, redis.ZRangeArgs{Key: n.nodesKey(), ByScore: true,
		Start: strconv.FormatInt(time.Now().UnixMilli(), 10), Stop: "+inf"}).Result()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	if len(ids) == 0 {
		return nil, nil
	}
	keys := make([]string, len(ids))
	for i, id := range ids {
		keys[i] = n.nodeKey(id)
	}
	vals, err := n.rdb.MGet(ctx, keys...).Result()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	out := make([]NodeInfo, 0, len(vals))
	for i, v := range vals {
		s, ok := v.(string)
		if !ok {
			continue // expired between the two reads
		}
		var info NodeInfo
		if err := json.Unmarshal([]byte(s), &info); err != nil {
			n.log.Warn("cluster: unreadable node entry", "node", ids[i], "err", err)
			continue
		}
		out = append(out, info)
	}
	slices.SortFunc(out, func(a, b NodeInfo) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

// Place picks the least-loaded other live node that takes publishers
// (fewest streams, then least CPU): where a publisher this node cannot
// take is sent. ErrNoRoom when there is none.
func (n *Node) Place(ctx context.Context) (NodeInfo, error) {
	nodes, err := n.Nodes(ctx)
	if err != nil {
		return NodeInfo{}, err
	}
	var best *NodeInfo
	for i := range nodes {
		c := &nodes[i]
		if c.ID == n.cfg.NodeID || !c.hasRoom() {
			continue
		}
		if best == nil || c.Streams < best.Streams || c.Streams == best.Streams && c.CPU < best.CPU {
			best = c
		}
	}
	if best == nil {
		return NodeInfo{}, ErrNoRoom
	}
	return *best, nil
}

// Status is the node's view of the registry, for /readyz and metrics.
type Status struct {
	Node      string
	RedisUp   bool
	DownSince time.Time // zero while up
}

// Status reports whether the last heartbeat reached Redis.
func (n *Node) Status() Status {
	n.mu.Lock()
	defer n.mu.Unlock()
	return Status{Node: n.cfg.NodeID, RedisUp: n.up, DownSince: n.downSince}
}

// Close stops the heartbeat, joins it and removes the node and its
// streams' keys from the registry (until ctx ends), so the cluster forgets
// it at once rather than after the TTL.
func (n *Node) Close(ctx context.Context) error {
	if n.cancel != nil {
		n.cancel()
		<-n.done
	}
	n.mu.Lock()
	keys := []string{n.nodeKey(n.cfg.NodeID)}
	for _, id := range n.registered {
		keys = append(keys, n.streamKey(id))
	}
	n.registered = nil
	n.mu.Unlock()
	cctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	_, err := n.rdb.Pipelined(cctx, func(p redis.Pipeliner) error {
		p.Del(cctx, keys...)
		p.ZRem(cctx, n.nodesKey(), n.cfg.NodeID)
		return nil
	})
	cerr := n.rdb.Close()
	if err != nil {
		return fmt.Errorf("cluster: leaving the registry (its entries expire within %v): %w", n.cfg.TTL, err)
	}
	return cerr
}

// RouteRedisLogs sends go-redis' own log lines (a failed dial, each time)
// to log at debug level: the heartbeat already reports an outage once,
// and when it ends. go-redis' logger is process-wide: main calls this
// once, before any Node is made.
func RouteRedisLogs(log *slog.Logger) { redis.SetLogger(redisLogger{log}) }

type redisLogger struct{ log *slog.Logger }

func (l redisLogger) Printf(ctx context.Context, format string, v ...any) {
	l.log.DebugContext(ctx, fmt.Sprintf(format, v...), "component", "redis")
}
