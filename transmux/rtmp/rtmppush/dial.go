package rtmppush

import (
	"bufio"
	"cmp"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"syscall"
	"time"

	"github.com/yutopp/go-rtmp/handshake"

	"github.com/castbridge/castbridge/transmux/format/flv"
	"github.com/castbridge/castbridge/transmux/rtmp/chunk"
)

// Dial connects to cfg.Endpoint and runs the publish sequence: handshake,
// connect (waiting for _result), Set Chunk Size, releaseStream, FCPublish,
// createStream (waiting for the stream id), publish(name, "live"), then waits
// for onStatus NetStream.Publish.Start. It returns once the ingest accepts
// media.
func Dial(ctx context.Context, cfg Config) (*Publisher, error) {
	ep := cfg.Endpoint
	if ep.scheme == "" {
		return nil, fmt.Errorf("rtmp publish: %w: empty endpoint", ErrInvalidURL)
	}
	red := ep.Redacted()
	connectObj, err := connectObject(cfg)
	if err != nil {
		return nil, fmt.Errorf("rtmp publish %s: %w", red, err)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("endpoint", red)
	dialTO := durationOr(cfg.DialTimeout, defaultDialTimeout)
	publishTO := durationOr(cfg.PublishTimeout, defaultPublishTimeout)

	conn, sc, err := dial(ctx, ep, cfg.TLSConfig, dialTO, cmp.Or(cfg.SendBuffer, defaultSendBuffer), cfg.DialContext)
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("rtmp publish %s: dial: %w", red, ctx.Err())
		}
		return nil, fmt.Errorf("rtmp publish %s: %w: %w", red, ErrUnreachable, err)
	}
	log.Debug("rtmp connected", "remote", conn.RemoteAddr())

	p := &Publisher{
		ep:         ep,
		log:        log,
		conn:       conn,
		sc:         sc,
		wto:        durationOr(cfg.WriteTimeout, defaultWriteTimeout),
		cr:         chunk.NewReader(),
		ackWindow:  2500000,
		replies:    make(chan reply, 16),
		readerQuit: make(chan struct{}),
		readerDone: make(chan struct{}),
		done:       make(chan struct{}),
	}
	// 32 KiB holds a P-frame of a 2.5 Mbit/s stream with the audio batched
	// beside it (one write); keyframes take a few. Per target, it is a good
	// part of a stream's memory.
	p.cr.SetMaxMessage(typeCommandAMF0, flv.MaxCommandSize)
	p.bw = bufio.NewWriterSize(countingWriter{conn, &p.sent}, 32*1024)
	p.cw = chunk.NewWriter(p.bw)
	if err := p.setup(ctx, publishTO, connectObj, cfg.FourCCList); err != nil {
		p.closing.Store(true)
		close(p.readerQuit)
		_ = conn.Close()
		if p.readerRunning {
			<-p.readerDone
		}
		if errors.Is(err, errSessionEnded) {
			return nil, p.Err()
		}
		return nil, fmt.Errorf("rtmp publish %s: %w", red, err)
	}
	log.Info("rtmp publish started")
	return p, nil
}

func durationOr(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

func dial(ctx context.Context, ep Endpoint, tlsCfg *tls.Config, timeout time.Duration, sendBuffer int,
	dialFn func(context.Context, *net.Dialer, string, string) (net.Conn, error)) (net.Conn, *spillConn, error) {
	d := &net.Dialer{Timeout: timeout, KeepAlive: 15 * time.Second, Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_SNDBUF, sendBuffer)
		})
		return errors.Join(err, serr)
	}}
	if dialFn == nil {
		dialFn = func(ctx context.Context, d *net.Dialer, network, addr string) (net.Conn, error) {
			return d.DialContext(ctx, network, addr)
		}
	}
	if ep.scheme != "rtmps" {
		raw, err := dialFn(ctx, d, "tcp", ep.addr)
		if err != nil {
			return nil, nil, err
		}
		sc := newSpillConn(raw)
		return sc, sc, nil
	}
	c := tlsCfg.Clone()
	if c == nil {
		c = &tls.Config{}
	}
	if c.ServerName == "" {
		c.ServerName = ep.hostname
	}
	// The TLS handshake counts as part of reaching the ingest. It runs on
	// the dialed connection, verified for the URL's host name (SNI too),
	// whatever address the name resolved to.
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	raw, err := dialFn(ctx, d, "tcp", ep.addr)
	if err != nil {
		return nil, nil, err
	}
	sc := newSpillConn(raw)
	tc := tls.Client(sc, c)
	if err := tc.HandshakeContext(ctx); err != nil {
		_ = raw.Close()
		return nil, nil, err
	}
	return tc, sc, nil
}

func connectObject(cfg Config) (map[string]any, error) {
	flashVer := cfg.FlashVer
	if flashVer == "" {
		flashVer = DefaultFlashVer
	}
	obj := make(map[string]any, len(cfg.ConnectInfo)+4)
	for k, v := range cfg.ConnectInfo {
		switch v := v.(type) {
		case string, float64, bool:
			obj[k] = v
		case int:
			obj[k] = float64(v)
		default:
			return nil, fmt.Errorf("connect info %q: unsupported type %T", k, v)
		}
	}
	if len(cfg.FourCCList) > 0 {
		list := make([]any, len(cfg.FourCCList))
		for i, f := range cfg.FourCCList {
			list[i] = f
		}
		obj["fourCcList"] = list
	}
	obj["app"] = cfg.Endpoint.app
	obj["type"] = "nonprivate"
	obj["flashVer"] = flashVer
	obj["tcUrl"] = cfg.Endpoint.TCURL()
	return obj, nil
}

// checkFourCCs fails when the connect _result (its properties or
// information object) has a fourCcList that lacks a codec of want. An
// ingest that sends none says nothing either way (E-RTMP leaves the reply
// list optional; MediaMTX and nginx send none): it is taken at its word
// when it refuses the stream or its sequence start later.
func checkFourCCs(args []any, want []string) error {
	if len(want) == 0 {
		return nil
	}
	for _, a := range args {
		m := asMap(a)
		if m == nil {
			continue
		}
		raw, ok := m["fourCcList"]
		if !ok {
			continue
		}
		list, _ := raw.([]any)
		var have []string
		for _, v := range list {
			if s, ok := v.(string); ok {
				have = append(have, s)
			}
		}
		for _, w := range want {
			if !slices.Contains(have, w) && !slices.Contains(have, "*") {
				shown := make([]string, 0, min(len(have), maxFourCCsShown))
				for _, h := range have[:min(len(have), maxFourCCsShown)] {
					shown = append(shown, shownFourCC(h))
				}
				return fmt.Errorf("connect: %w", &CodecRefusedError{FourCC: w, Have: shown})
			}
		}
		return nil
	}
	return nil
}

// setup runs the publish sequence under one deadline.
func (p *Publisher) setup(ctx context.Context, timeout time.Duration, connectObj map[string]any, fourCCs []string) error {
	deadline := time.Now().Add(timeout)
	// Cancelling ctx aborts blocked I/O at once.
	stop := context.AfterFunc(ctx, func() { _ = p.conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	classify := func(step string, err error) error {
		if ctx.Err() != nil {
			return fmt.Errorf("%s: %w", step, ctx.Err())
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return fmt.Errorf("%s: %w", step, ErrTimeout)
		}
		return fmt.Errorf("%s: %w", step, err)
	}

	_ = p.conn.SetDeadline(deadline)
	if err := handshake.HandshakeWithServer(p.conn, p.conn, &handshake.Config{
		// Like librtmp: servers answering with the digest handshake do not
		// echo C1, and none of them require the client to check.
		SkipHandshakeVerification: true,
	}); err != nil {
		return classify("handshake", err)
	}
	_ = p.conn.SetReadDeadline(time.Time{})

	p.readerRunning = true
	go p.readLoop()

	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	wait := func(step string, match func(reply) (bool, error)) error {
		for {
			select {
			case r := <-p.replies:
				if ok, err := match(r); err != nil || ok {
					return err
				}
			case <-p.done:
				// The reader may have queued the server's last words (a
				// refusal, typically) just before the connection ended:
				// they explain the end better than EOF does.
				for {
					select {
					case r := <-p.replies:
						if ok, err := match(r); err != nil || ok {
							return err
						}
						continue
					default:
					}
					return errSessionEnded
				}
			case <-timer.C:
				return fmt.Errorf("%s: %w", step, ErrTimeout)
			case <-ctx.Done():
				return fmt.Errorf("%s: %w", step, ctx.Err())
			}
		}
	}
	send := func(step string, msid uint32, name string, tx float64, args ...any) error {
		if err := p.sendCommand(msid, name, tx, deadline, args...); err != nil {
			return classify(step, err)
		}
		return nil
	}

	if err := send("connect", 0, "connect", 1, connectObj); err != nil {
		return err
	}
	err := wait("connect", func(r reply) (bool, error) {
		if r.txID != 1 || (r.name != "_result" && r.name != "_error") {
			return false, nil
		}
		if r.name == "_error" {
			return true, fmt.Errorf("connect: %w", p.rejected(r.args, "NetConnection.Connect.Rejected"))
		}
		return true, checkFourCCs(r.args, fourCCs)
	})
	if err != nil {
		return err
	}

	if err := p.sendControl(typeSetChunkSize, binary.BigEndian.AppendUint32(nil, outChunkSize), deadline); err != nil {
		return classify("set chunk size", err)
	}
	p.cw.SetChunkSize(outChunkSize)

	name := p.ep.name
	if err := send("releaseStream", 0, "releaseStream", 2, nil, name); err != nil {
		return err
	}
	if err := send("FCPublish", 0, "FCPublish", 3, nil, name); err != nil {
		return err
	}
	if err := send("createStream", 0, "createStream", 4, nil); err != nil {
		return err
	}
	err = wait("createStream", func(r reply) (bool, error) {
		if r.txID != 4 || (r.name != "_result" && r.name != "_error") {
			return false, nil
		}
		if r.name == "_error" {
			return true, fmt.Errorf("createStream: %w", p.rejected(r.args, "NetConnection.Call.Failed"))
		}
		if len(r.args) < 2 {
			return true, fmt.Errorf("createStream: reply without stream id")
		}
		id, ok := r.args[1].(float64)
		if !ok || id < 0 || id > 1<<31 {
			return true, fmt.Errorf("createStream: bad stream id %v", r.args[1])
		}
		p.stream = uint32(id)
		return true, nil
	})
	if err != nil {
		return err
	}

	if err := send("publish", p.stream, "publish", 5, nil, name, "live"); err != nil {
		return err
	}
	err = wait("publish", func(r reply) (bool, error) {
		if r.name == "_error" {
			return true, fmt.Errorf("publish: %w", p.rejected(r.args, "NetStream.Publish.Failed"))
		}
		if r.name != "onStatus" {
			return false, nil
		}
		level, code, desc := statusInfo(r.args)
		if level == "error" {
			return true, fmt.Errorf("publish: %w", &RejectedError{Code: code, Description: p.ep.redact(desc)})
		}
		p.log.Debug("rtmp status", "code", code)
		return code == "NetStream.Publish.Start", nil
	})
	if err != nil {
		return err
	}
	p.started.Store(true)
	return nil
}

// rejected builds a RejectedError from a reply's information object.
func (p *Publisher) rejected(args []any, fallbackCode string) error {
	_, code, desc := statusInfo(args)
	if code == "" {
		code = fallbackCode
	}
	return &RejectedError{Code: code, Description: p.ep.redact(desc)}
}

// statusInfo finds level, code and description in the first object among
// args (replies put a null or properties object first).
func statusInfo(args []any) (level, code, desc string) {
	for i := len(args) - 1; i >= 0; i-- {
		m := asMap(args[i])
		if m == nil {
			continue
		}
		level, _ = m["level"].(string)
		code, _ = m["code"].(string)
		desc, _ = m["description"].(string)
		if code != "" || level != "" {
			return level, code, desc
		}
	}
	return "", "", ""
}

func asMap(v any) map[string]any {
	m, _ := v.(map[string]any) // flv.DecodeCommand makes objects and ECMA arrays maps
	return m
}
