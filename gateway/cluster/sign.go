package cluster

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Headers of a request one node sends another. HopHeader names the sender:
// a request that carries it is answered by the node it reaches, never
// forwarded again (no loops). AuthHeader proves the sender knows the
// cluster secret: "<unix seconds>.<hex HMAC-SHA256>" over the sender, the
// time, the method, the request URI and the original caller's address
// (RemoteAddrHeader), so none of them can be changed on the way.
const (
	HopHeader        = "X-Castbridge-Hop"
	AuthHeader       = "X-Castbridge-Node-Auth"
	RemoteAddrHeader = "X-Castbridge-Remote-Addr"
	// MinSecretLen is the shortest --cluster-secret accepted.
	MinSecretLen = 16
	// maxSkew is how far a signature's time may be from the receiver's
	// clock: a captured request can be replayed only this long.
	maxSkew = 30 * time.Second
	// maxAuthLen bounds the header parsed.
	maxAuthLen = 128
)

// ErrBadSignature is a hop request whose signature does not verify.
var ErrBadSignature = errors.New("cluster: the node-to-node signature is missing, stale or wrong")

func mac(secret, node, ts, method, uri, remote string) string {
	h := hmac.New(sha256.New, []byte(secret))
	for _, p := range []string{"castbridge-hop-v1", node, ts, method, uri, remote} {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Sign marks r (an outgoing request to another node) as this node's: the
// hop, the caller's address remoteAddr (what the owner's authorization
// webhook is told) and the signature. The caller's own Authorization
// stays on r: the owner checks it as if the caller had come to it.
func (n *Node) Sign(r *http.Request, remoteAddr string) {
	signWith(n.cfg.Secret, n.cfg.NodeID, r, remoteAddr, time.Now())
}

func signWith(secret, node string, r *http.Request, remoteAddr string, now time.Time) {
	ts := strconv.FormatInt(now.Unix(), 10)
	r.Header.Set(HopHeader, node)
	r.Header.Set(RemoteAddrHeader, remoteAddr)
	r.Header.Set(AuthHeader, ts+"."+mac(secret, node, ts, r.Method, r.URL.RequestURI(), remoteAddr))
}

// Verify checks a hop request's signature and returns the sending node and
// the original caller's address.
func (n *Node) Verify(r *http.Request) (node, remoteAddr string, err error) {
	return verifyWith(n.cfg.Secret, r, time.Now())
}

func verifyWith(secret string, r *http.Request, now time.Time) (string, string, error) {
	node, remote, auth := r.Header.Get(HopHeader), r.Header.Get(RemoteAddrHeader), r.Header.Get(AuthHeader)
	if node == "" || len(auth) > maxAuthLen {
		return "", "", ErrBadSignature
	}
	ts, sig, ok := strings.Cut(auth, ".")
	if !ok {
		return "", "", ErrBadSignature
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return "", "", ErrBadSignature
	}
	if d := now.Sub(time.Unix(sec, 0)); d > maxSkew || d < -maxSkew {
		return "", "", ErrBadSignature
	}
	want := mac(secret, node, ts, r.Method, r.URL.RequestURI(), remote)
	if !hmac.Equal([]byte(sig), []byte(want)) {
		return "", "", ErrBadSignature
	}
	return node, remote, nil
}
