package registrytest

import (
	"net"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

// Server is a loopback TCP server standing in for a plugin's daemon, for
// the faults a real daemon cannot be made to show (hangs, garbage, resets).
type Server struct {
	ln     net.Listener
	handle func(net.Conn)
	wg     sync.WaitGroup

	mu      sync.Mutex
	closed  bool
	conns   []net.Conn
	accepts int
}

// NewServer starts a server on 127.0.0.1 that serves each connection with
// handle on a goroutine of its own, closing the connection when handle
// returns. A nil handle holds every connection open without reading from
// it (see Blackhole). The server is closed when the test ends.
func NewServer(t testing.TB, handle func(net.Conn)) *Server {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	s := &Server{ln: ln, handle: handle}
	s.wg.Add(1)
	go s.serve()
	t.Cleanup(s.Close)
	return s
}

func (s *Server) serve() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		if s.closed { // accepted while Close ran: it would not see c
			s.mu.Unlock()
			c.Close()
			return
		}
		s.conns = append(s.conns, c)
		s.accepts++
		s.mu.Unlock()
		if s.handle == nil {
			continue
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer c.Close()
			s.handle(c)
		}()
	}
}

// Addr is the server's host:port.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Accepts counts the connections accepted so far.
func (s *Server) Accepts() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.accepts
}

// Close stops listening, closes every connection accepted (which unblocks
// handlers reading or writing them) and waits for the handlers to return.
// Safe to call twice.
func (s *Server) Close() {
	s.ln.Close()
	s.mu.Lock()
	s.closed = true
	for _, c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// Blackhole returns the address of a TCP listener that accepts connections
// and never answers, for Options.SlowConfig. It is closed when the test
// ends, together with every connection it accepted.
func Blackhole(t testing.TB) string {
	t.Helper()
	return NewServer(t, nil).Addr()
}

// ClosedAddr returns a loopback host:port nothing listens on, for a daemon
// that is down (connections to it are refused).
func ClosedAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	ln.Close()
	return addr
}
