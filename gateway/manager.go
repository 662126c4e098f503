package gateway

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/castbridge/castbridge/gateway/apierr"
	"github.com/castbridge/castbridge/gateway/media"
	"github.com/castbridge/castbridge/gateway/rtmpout"
	"github.com/castbridge/castbridge/gateway/webrtcin"
)

// Config is the gateway's runtime configuration.
type Config struct {
	// ICEUDPPort is the one UDP port every session's ICE runs on (IPv4,
	// and IPv6 on the same number when the host or ICEIPs has it).
	ICEUDPPort int
	// ICETCPPort is the one TCP port of passive ICE-TCP, for publishers
	// whose networks block UDP: 0 is off, a negative port any free one.
	ICETCPPort int
	// ICEIPs are advertised as host candidates (UDP and TCP); empty means
	// the host's interface addresses.
	ICEIPs []net.IP
	// KeyframeInterval is the longest a target waits for a keyframe before
	// the gateway asks the publisher for one (PLI).
	KeyframeInterval time.Duration
	// PublishTimeout bounds a target's connect + publish handshake.
	PublishTimeout time.Duration
	// MediaTimeout ends a stream whose publisher sent nothing for this long.
	// ICE disconnected does not end a stream (ICE failed does): a publisher
	// whose network blinked has until then to come back.
	MediaTimeout time.Duration
	// ICEDisconnectedTimeout is how long ICE hears nothing before it says
	// disconnected (a stream shows connecting, or live with a broadcast);
	// 0 means pion's 5 s.
	ICEDisconnectedTimeout time.Duration
	// CloseTimeout is how long stopping a broadcast or closing a stream
	// waits for its ingests to be told goodbye before cutting them off.
	CloseTimeout time.Duration
	// Reconnect governs how targets come back after their ingest failed.
	Reconnect rtmpout.ReconnectPolicy
	// RTMPSRootCAs verify rtmps:// ingests; nil means the system's roots.
	// rtmpout.LoadRootCAs makes it from a PEM file.
	RTMPSRootCAs *x509.CertPool
	// Relays map WHIP stream keys to the targets their streams go to.
	Relays []Relay
	// MaxStreams limits concurrent sessions (0 = no limit).
	MaxStreams int
	Logger     *slog.Logger
}

func (c *Config) setDefaults() {
	if c.KeyframeInterval <= 0 {
		c.KeyframeInterval = 2 * time.Second
	}
	if c.PublishTimeout <= 0 {
		c.PublishTimeout = 10 * time.Second
	}
	if c.MediaTimeout <= 0 {
		c.MediaTimeout = 10 * time.Second
	}
	if c.CloseTimeout <= 0 {
		c.CloseTimeout = 5 * time.Second
	}
	c.Reconnect.SetDefaults()
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Manager owns every live Stream and the shared ICE socket.
type Manager struct {
	cfg       Config
	log       *slog.Logger
	transport *webrtcin.Transport
	frames    *media.FramePool

	totals totals // counters of closed streams and retired targets, for metrics

	mu       sync.Mutex
	streams  map[string]*Stream
	draining bool
	wg       sync.WaitGroup // closeAsync goroutines: Shutdown joins them
}

// NewManager opens the ICE UDP port and returns a manager ready to accept
// publishers.
func NewManager(cfg Config) (*Manager, error) {
	cfg.setDefaults()
	if err := ValidateRelays(cfg.Relays); err != nil {
		return nil, fmt.Errorf("relays: %w", err)
	}
	tr, err := webrtcin.Listen(webrtcin.ListenConfig{
		UDPPort: cfg.ICEUDPPort,
		TCPPort: cfg.ICETCPPort,
		IPs:     cfg.ICEIPs,
		Logger:  cfg.Logger.With("component", "ice"),

		ICEDisconnectedTimeout: cfg.ICEDisconnectedTimeout,
	})
	if err != nil {
		return nil, err
	}
	return &Manager{
		cfg:       cfg,
		log:       cfg.Logger,
		transport: tr,
		frames:    media.NewFramePool(),
		streams:   map[string]*Stream{},
	}, nil
}

// ICEPort is the UDP port ICE listens on (useful when configured as 0).
func (m *Manager) ICEPort() int { return m.transport.Port() }

// ICETCPPort is the ICE-TCP port, 0 when ICE-TCP is off.
func (m *Manager) ICETCPPort() int { return m.transport.TCPPort() }

// Ready reports whether new publishers are accepted.
func (m *Manager) Ready() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return !m.draining
}

// CreateStream starts a publisher session from its SDP offer and returns the
// stream with its answer ready (ICE gathering complete: non-trickle). With
// targets, the broadcast starts as soon as media flows, and the answer caps
// the video at their lowest videobitrate (b=AS).
func (m *Manager) CreateStream(ctx context.Context, offer, name string, targets []rtmpout.Spec) (*Stream, error) {
	m.mu.Lock()
	if m.draining {
		m.mu.Unlock()
		return nil, errDraining()
	}
	if m.cfg.MaxStreams > 0 && len(m.streams) >= m.cfg.MaxStreams {
		m.mu.Unlock()
		return nil, apierr.Errorf(apierr.CodeLimitExceeded, "the gateway already runs %d streams, its limit", m.cfg.MaxStreams)
	}
	m.mu.Unlock()
	if targets != nil {
		if err := rtmpout.ValidateAll(targets); err != nil {
			return nil, err
		}
	}
	om, err := webrtcin.InspectOffer(offer)
	if err != nil {
		return nil, err
	}

	s, err := newStream(ctx, m, newID("st_"), name, om)
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	if m.draining {
		m.mu.Unlock()
		s.Close()
		return nil, errDraining()
	}
	m.streams[s.id] = s
	m.mu.Unlock()
	m.totals.streams.Add(1)
	if targets != nil {
		if kbps := rtmpout.MinVideoBitrate(targets) / 1000; kbps > 0 {
			s.answer = withVideoBandwidth(s.answer, kbps)
		}
		s.StartBroadcastWhenReady(targets)
	}
	return s, nil
}

func errDraining() *apierr.Error {
	return apierr.Errorf(apierr.CodeLimitExceeded, "the gateway is shutting down and takes no new publishers")
}

// withVideoBandwidth adds b=AS:<kbps> to the video section of an SDP: the
// publisher's encoder stays under it from the first frame.
func withVideoBandwidth(sdp string, kbps int) string {
	lines := strings.SplitAfter(sdp, "\n")
	var out strings.Builder
	inVideo := false
	for _, l := range lines {
		if strings.HasPrefix(l, "m=") {
			inVideo = strings.HasPrefix(l, "m=video")
		}
		if inVideo && strings.HasPrefix(l, "b=") {
			continue // ours replaces any other
		}
		out.WriteString(l)
		if inVideo && strings.HasPrefix(l, "c=") {
			fmt.Fprintf(&out, "b=AS:%d\r\n", kbps)
		}
	}
	return out.String()
}

// Stream returns the stream with that id.
func (m *Manager) Stream(id string) (*Stream, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, ok := m.streams[id]
	if !ok {
		return nil, apierr.Errorf(apierr.CodeNotFound, "no stream %q: it never existed or has been closed", id)
	}
	return s, nil
}

// Streams lists live streams, oldest first.
func (m *Manager) Streams() []*Stream {
	m.mu.Lock()
	out := make([]*Stream, 0, len(m.streams))
	for _, s := range m.streams {
		out = append(out, s)
	}
	m.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].createdAt.Before(out[j].createdAt) })
	return out
}

// closeAsync closes s on a goroutine the manager owns (Shutdown waits for it).
func (m *Manager) closeAsync(s *Stream) {
	m.wg.Go(s.Close)
}

// closed forgets a stream that finished closing and keeps its counters.
func (m *Manager) closed(s *Stream) {
	m.totals.addStream(s)
	m.mu.Lock()
	if m.streams[s.id] == s {
		delete(m.streams, s.id)
	}
	m.mu.Unlock()
}

func (m *Manager) retireTarget(t *rtmpout.Target) { m.totals.addTarget(t) }

// Shutdown refuses new publishers, stops every broadcast, closes every
// stream and the ICE socket, and returns when all of their goroutines have
// ended. Until ctx ends the ingests are told goodbye; then they are cut off.
func (m *Manager) Shutdown(ctx context.Context) error {
	m.mu.Lock()
	if m.draining {
		m.mu.Unlock()
		return nil // already shut down
	}
	m.draining = true
	m.mu.Unlock()
	var wg sync.WaitGroup
	for _, s := range m.Streams() {
		wg.Go(func() { s.close(ctx) })
	}
	wg.Wait()
	m.wg.Wait()
	return m.transport.Close()
}

func newID(prefix string) string {
	return prefix + strings.ToLower(rand.Text()[:16])
}
