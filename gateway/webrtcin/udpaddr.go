package webrtcin

import (
	"net"
	"net/netip"
	"time"
)

// maxCachedAddrs bounds addrCache: beyond it the cache starts over, so a
// sender spraying source addresses costs allocations, not memory.
const maxCachedAddrs = 4096

// addrCache hands out one *net.UDPAddr per source address. pion's UDP mux
// reads the ICE socket through net.PacketConn.ReadFrom, whose net.Addr
// result is a fresh *net.UDPAddr (two allocations) for every datagram;
// publishers send from one address each, so the same value serves all
// their packets. pion only reads the addresses it is given. Not safe for
// concurrent use: the mux reads its socket from one goroutine.
type addrCache struct {
	m map[netip.AddrPort]*net.UDPAddr
}

func (c *addrCache) get(ap netip.AddrPort) *net.UDPAddr {
	if a, ok := c.m[ap]; ok {
		return a
	}
	if c.m == nil || len(c.m) >= maxCachedAddrs {
		c.m = make(map[netip.AddrPort]*net.UDPAddr, 64)
	}
	a := net.UDPAddrFromAddrPort(ap)
	c.m[ap] = a
	return a
}

// readFromCached reads one datagram from conn, its source from cache.
func readFromCached(conn *net.UDPConn, cache *addrCache, p []byte) (int, net.Addr, error) {
	n, ap, err := conn.ReadFromUDPAddrPort(p)
	if err != nil {
		return n, nil, err
	}
	return n, cache.get(ap), nil
}

// cachedAddrConn is the ICE socket as pion's UDP mux reads it, with the
// source addresses from an addrCache.
type cachedAddrConn struct {
	*net.UDPConn
	cache addrCache
	batch *batchReader // recvmmsg(2) where the system has it, else nil
}

// newCachedAddrConn reads c in batches where it can, waiting coalesce
// between batches that were not full (ListenConfig.ReadCoalesce).
func newCachedAddrConn(c *net.UDPConn, coalesce time.Duration) *cachedAddrConn {
	cc := &cachedAddrConn{UDPConn: c}
	if b, err := newBatchReader(c, coalesce); err == nil {
		cc.batch = b
	}
	return cc
}

// ReadFrom reads one datagram; the address is shared with the sender's
// other datagrams and must not be modified.
func (c *cachedAddrConn) ReadFrom(p []byte) (int, net.Addr, error) {
	if c.batch == nil {
		return readFromCached(c.UDPConn, &c.cache, p)
	}
	n, ap, err := c.batch.ReadFrom(p)
	if err != nil {
		return n, nil, err
	}
	return n, c.cache.get(ap), nil
}
