package gatewaytest

import (
	"net"
	"sync"
	"sync/atomic"

	"github.com/pion/stun"
)

// STUNResponder is a STUN server on 127.0.0.1 that answers binding
// requests with a mapped address of the test's choosing (a real server
// reflects the request's source, which on loopback is the gateway's own
// address): a stand-in for the gateway's NAT.
type STUNResponder struct {
	conn     *net.UDPConn
	mapped   atomic.Pointer[net.UDPAddr]
	requests atomic.Int64
	wg       sync.WaitGroup
}

// StartSTUNResponder starts one answering with mapped.
func StartSTUNResponder(mapped *net.UDPAddr) (*STUNResponder, error) {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return nil, err
	}
	r := &STUNResponder{conn: c}
	r.mapped.Store(mapped)
	r.wg.Add(1)
	go r.serve()
	return r, nil
}

func (r *STUNResponder) serve() {
	defer r.wg.Done()
	buf := make([]byte, 1500)
	for {
		n, from, err := r.conn.ReadFromUDP(buf)
		if err != nil {
			return
		}
		m := &stun.Message{Raw: append([]byte(nil), buf[:n]...)}
		if m.Decode() != nil || m.Type != stun.BindingRequest {
			continue
		}
		r.requests.Add(1)
		to := r.mapped.Load()
		resp, err := stun.Build(stun.NewTransactionIDSetter(m.TransactionID), stun.BindingSuccess,
			&stun.XORMappedAddress{IP: to.IP, Port: to.Port}, stun.Fingerprint)
		if err == nil {
			_, _ = r.conn.WriteToUDP(resp.Raw, from)
		}
	}
}

// Addr is the server's host:port, for --stun.
func (r *STUNResponder) Addr() string { return r.conn.LocalAddr().String() }

// SetMapped changes the address the next answers give.
func (r *STUNResponder) SetMapped(a *net.UDPAddr) { r.mapped.Store(a) }

// Requests counts the binding requests answered.
func (r *STUNResponder) Requests() int64 { return r.requests.Load() }

// Close stops the server and waits for it.
func (r *STUNResponder) Close() error {
	err := r.conn.Close()
	r.wg.Wait()
	return err
}
