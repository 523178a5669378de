// Admission: the listener go-smtp accepts from counts the open connections,
// in all and per client, refuses those over a limit with a 421 before
// go-smtp sees them, and keeps a spare file descriptor so that running out
// of them (EMFILE) still gets a client a polite refusal instead of a hang
// in the listen queue.

package smtpd

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/elemta/elemta/internal/spool"
)

// clientKey is what per-client limits count by: an IPv4 address, or the
// /64 of an IPv6 address (one site usually holds a whole /64).
type clientKey = netip.Prefix

func keyOf(a netip.Addr) clientKey {
	a = a.Unmap()
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p
	}
	return netip.PrefixFrom(a, a.BitLen())
}

// tracker remembers the open connections.
type tracker struct {
	mu        sync.Mutex
	conns     map[*clientConn]struct{}
	perClient map[clientKey]int
	listeners []net.Listener
	down      bool
	// handlers counts the accepted connections whose session has not
	// ended yet: go-smtp closes a connection after the session's Logout.
	handlers sync.WaitGroup
}

func (t *tracker) closeAll() {
	t.mu.Lock()
	conns := make([]*clientConn, 0, len(t.conns))
	for c := range t.conns {
		conns = append(conns, c)
	}
	t.mu.Unlock()
	for _, c := range conns {
		c.Conn.Close() // the handler's own Close marks it done
	}
}

// admit registers c, or returns why it is refused.
func (t *tracker) admit(c *clientConn, maxTotal, maxPerClient int) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.conns == nil {
		t.conns, t.perClient = map[*clientConn]struct{}{}, map[clientKey]int{}
	}
	if len(t.conns) >= maxTotal {
		return "max_connections"
	}
	if c.key.IsValid() && t.perClient[c.key] >= maxPerClient {
		return "max_connections_per_client"
	}
	t.conns[c] = struct{}{}
	if c.key.IsValid() {
		t.perClient[c.key]++
	}
	t.handlers.Add(1)
	return ""
}

func (t *tracker) release(c *clientConn) {
	t.mu.Lock()
	delete(t.conns, c)
	if c.key.IsValid() {
		if t.perClient[c.key]--; t.perClient[c.key] <= 0 {
			delete(t.perClient, c.key)
		}
	}
	t.mu.Unlock()
	t.handlers.Done()
}

// open returns the number of connections open now.
func (t *tracker) open() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.conns)
}

type listener struct {
	net.Listener
	srv *Server

	spareMu sync.Mutex
	spare   *os.File // closed to make room for one refusal when fds run out
}

func newListener(l net.Listener, srv *Server) *listener {
	ln := &listener{Listener: l, srv: srv}
	ln.spare, _ = os.Open(os.DevNull)
	return ln
}

func (l *listener) Close() error {
	l.spareMu.Lock()
	if l.spare != nil {
		l.spare.Close()
		l.spare = nil
	}
	l.spareMu.Unlock()
	return l.Listener.Close()
}

func (l *listener) Accept() (net.Conn, error) {
	for {
		nc, err := l.Listener.Accept()
		if err != nil {
			if fdExhausted(err) && l.refuseWithSpare() {
				continue
			}
			return nil, err
		}
		s := l.srv
		c := &clientConn{Conn: nc, srv: s, start: s.now(), id: spool.NewID(time.Now()), done: make(chan struct{})}
		c.lastReply = c.start
		if ap, err := netip.ParseAddrPort(nc.RemoteAddr().String()); err == nil {
			c.ip = ap.Addr().Unmap()
			c.key = keyOf(c.ip)
		}
		c.log = s.log.With("session", c.id, "client", c.ip.String())
		if why := s.conns.admit(c, s.maxConns, s.limits.MaxConnectionsPerClient); why != "" {
			s.counters.refused.Add(1)
			c.log.Info("connection refused", "reason", why, "open", s.conns.open())
			refuse(nc, s.cfg.Hostname, "Too many connections, try again later")
			continue
		}
		s.counters.connections.Add(1)
		return c, nil
	}
}

// refuseWithSpare accepts one pending connection in the room of the spare
// descriptor, refuses it and takes the spare back.
func (l *listener) refuseWithSpare() bool {
	l.spareMu.Lock()
	defer l.spareMu.Unlock()
	if l.spare == nil {
		if f, err := os.Open(os.DevNull); err == nil {
			l.spare = f // descriptors came back: let the caller retry
			return true
		}
		return false
	}
	l.spare.Close()
	l.spare = nil
	nc, err := l.Listener.Accept()
	if err == nil {
		l.srv.counters.refused.Add(1)
		l.srv.log.Warn("connection refused: out of file descriptors", "client", nc.RemoteAddr().String(), "open", l.srv.conns.open())
		refuse(nc, l.srv.cfg.Hostname, "Server busy, try again later")
	}
	l.spare, _ = os.Open(os.DevNull)
	return err == nil
}

// refuse answers a connection that is not admitted with 421 and closes it.
// A fresh socket's send buffer is empty, so the write does not block; the
// deadline is for a peer that never reads.
func refuse(nc net.Conn, hostname, text string) {
	_ = nc.SetWriteDeadline(time.Now().Add(time.Second))
	fmt.Fprintf(nc, "421 4.7.0 %s %s\r\n", hostname, text)
	nc.Close()
}

func fdExhausted(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE)
}

// fileLimit returns the soft RLIMIT_NOFILE, or 0 if unknown.
func fileLimit() int {
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err != nil || r.Cur > 1<<30 {
		return 0
	}
	return int(r.Cur)
}

// connectionLimit is max_connections lowered to what the file descriptor
// limit leaves after the reserve (at least one connection).
func connectionLimit(l Limits, files int) int {
	if files <= 0 {
		return l.MaxConnections
	}
	return max(1, min(l.MaxConnections, files-l.ReservedFiles))
}
