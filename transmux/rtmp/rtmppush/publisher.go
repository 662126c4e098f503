// Package rtmppush publishes a live stream to an RTMP or RTMPS ingest.
//
// It is built on go-rtmp's handshake and message codecs but drives the
// publish sequence itself: go-rtmp's client cannot add connect fields, ignores
// onStatus errors and has no timeouts, and all three matter for real ingests
// (YouTube, Twitch, Facebook, nanoStream, nginx-rtmp). Outgoing messages are
// framed by package chunk directly on a bufio.Writer from the caller's
// goroutine, so the media path has no goroutine hop and no allocation.
package rtmppush

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/castbridge/castbridge/transmux/rtmp/chunk"
)

// Errors reported by Dial and the Publisher. Match them with errors.Is.
var (
	// ErrUnreachable: the ingest could not be reached (DNS, refused, dial timeout, TLS).
	ErrUnreachable = errors.New("ingest unreachable")
	// ErrTimeout: the ingest did not complete the publish sequence in time.
	ErrTimeout = errors.New("ingest did not answer in time")
	// ErrInvalidURL: the ingest address is malformed.
	ErrInvalidURL = errors.New("invalid ingest URL")
	// ErrClosed: the Publisher was closed.
	ErrClosed = errors.New("publisher closed")

	// errSessionEnded: the reader recorded why the session ended in Err.
	errSessionEnded = errors.New("session ended")
)

// RejectedError is an ingest's refusal: an _error reply to connect or an
// onStatus with level "error" (for example NetStream.Publish.BadName when a
// key is wrong or already live).
type RejectedError struct {
	Code        string // e.g. NetConnection.Connect.Rejected, NetStream.Publish.BadName
	Description string // server text, with the stream key masked
}

func (e *RejectedError) Error() string {
	if e.Description == "" {
		return "rejected by ingest: " + e.Code
	}
	return "rejected by ingest: " + e.Code + ": " + e.Description
}

// ErrCodecRefused is an ingest that announced (fourCcList in its connect
// _result) that it does not take a codec the client will send.
var ErrCodecRefused = errors.New("the ingest does not take the codec")

// CodecRefusedError is ErrCodecRefused with what the ingest said: the
// FourCC refused and the ingest's list (its first maxFourCCsShown entries,
// each cut to a FourCC's length and to printable ASCII: it is the
// ingest's text).
type CodecRefusedError struct {
	FourCC string
	Have   []string
}

// maxFourCCsShown bounds the ingest's list kept in a CodecRefusedError.
const maxFourCCsShown = 8

func (e *CodecRefusedError) Error() string {
	return fmt.Sprintf("the ingest's fourCcList %q lacks %q", e.Have, e.FourCC)
}

// Unwrap makes errors.Is(err, ErrCodecRefused) hold.
func (e *CodecRefusedError) Unwrap() error { return ErrCodecRefused }

// shownFourCC is an ingest's FourCC as an error shows it.
func shownFourCC(s string) string {
	b := make([]byte, 0, 4)
	for i := 0; i < len(s) && len(b) < 4; i++ {
		if c := s[i]; c >= 0x20 && c < 0x7f {
			b = append(b, c)
		} else {
			b = append(b, '?')
		}
	}
	return string(b)
}

// DefaultFlashVer is the flashVer sent in connect. Some ingests choose their
// behaviour from it; FMLE's is the one they all know.
const DefaultFlashVer = "FMLE/3.0 (compatible; castbridge)"

const (
	defaultDialTimeout    = 10 * time.Second
	defaultSendBuffer     = 256 << 10
	defaultPublishTimeout = 10 * time.Second
	defaultWriteTimeout   = 5 * time.Second
	closeTimeout          = time.Second
	outChunkSize          = 4096
)

// Chunk stream ids, as ffmpeg and OBS use them.
const (
	csidControl = 2
	csidCommand = 3
	csidAudio   = 4
	csidData    = 5
	csidVideo   = 6
)

// RTMP message type ids.
const (
	typeSetChunkSize  = 1
	typeAck           = 3
	typeUserControl   = 4
	typeWindowAckSize = 5
	typePeerBandwidth = 6
	typeAudio         = 8
	typeVideo         = 9
	typeDataAMF0      = 18
	typeCommandAMF0   = 20
)

// Config configures Dial.
type Config struct {
	Endpoint Endpoint
	// ConnectInfo holds extra keys for the connect command object (for
	// example nanoStream's rtmpconnectinfo). Values may be string, float64,
	// int or bool. They cannot replace app, type, flashVer or tcUrl.
	ConnectInfo map[string]any
	FlashVer    string // default DefaultFlashVer
	// FourCCList is the E-RTMP fourCcList sent in connect: the codecs
	// (FourCCs such as "vp09") this client will send over Enhanced RTMP.
	// When the ingest's connect _result carries a fourCcList of its own
	// that lacks one of them, Dial fails with ErrCodecRefused.
	FourCCList []string

	DialTimeout    time.Duration // TCP+TLS connect, default 10 s
	PublishTimeout time.Duration // handshake to NetStream.Publish.Start, default 10 s
	WriteTimeout   time.Duration // every network write, default 5 s
	TLSConfig      *tls.Config   // for rtmps; ServerName defaults to the host
	// SendBuffer sets the socket's send buffer (default 256 KiB). Left to
	// the kernel, it grows to megabytes, and a stalled ingest then swallows
	// many seconds of video before the sender's own queue notices anything.
	SendBuffer int
	// DialContext, when set, makes the TCP connection with d (which
	// carries the timeout and socket options): a policy resolves and
	// checks the host there and dials the checked address. For rtmps the
	// TLS handshake runs on top of it, verified for the URL's host name.
	DialContext func(ctx context.Context, d *net.Dialer, network, addr string) (net.Conn, error)
	Logger      *slog.Logger
}

// Publisher is a live RTMP publish session. Write* methods are meant to be
// called from one goroutine; Close may be called from any goroutine at any
// time.
type Publisher struct {
	ep     Endpoint
	log    *slog.Logger
	conn   net.Conn
	sc     *spillConn // under conn (and its TLS): non-blocking writes
	wto    time.Duration
	stream uint32 // message stream id from createStream

	writeMu sync.Mutex
	bw      *bufio.Writer
	cw      *chunk.Writer
	// Guarded by writeMu: batch leaves media messages in bw until Flush;
	// deadline is the write deadline last set on conn.
	batch    bool
	deadline time.Time
	closing  atomic.Bool
	sent     atomic.Uint64

	// Reader goroutine state.
	cr            *chunk.Reader
	received      uint64
	ackWindow     uint32
	lastAck       uint64
	peerBW        int32
	started       atomic.Bool   // Publish.Start seen; reader stops forwarding replies
	readerRunning bool          // set by Dial's goroutine only
	replies       chan reply    // command replies during Dial
	readerQuit    chan struct{} // closed to stop the reader from blocking on replies
	readerDone    chan struct{}
	done          chan struct{}
	errMu         sync.Mutex
	err           error
	closeOnce     sync.Once
	closeResult   error
}

type reply struct {
	name string
	txID float64
	args []any
}

// Done is closed when the session has ended: closed by the ingest, broken,
// or closed with Close.
func (p *Publisher) Done() <-chan struct{} { return p.done }

// Err returns why the session ended, or nil while it is live.
func (p *Publisher) Err() error {
	p.errMu.Lock()
	defer p.errMu.Unlock()
	return p.err
}

// BytesSent counts bytes written to the connection after the handshake.
func (p *Publisher) BytesSent() uint64 { return p.sent.Load() }
