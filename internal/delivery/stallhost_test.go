package delivery

import (
	"bufio"
	"context"
	"io"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
)

// Where a stallHost stops answering.
const (
	stallGreeting = "greeting" // accepts the connection, never sends 220
	stallMail     = "MAIL"     // never answers MAIL
	stallRcpt     = "RCPT"     // never answers RCPT
	stallDataInit = "DATA"     // never answers DATA with 354
	stallDataRead = "data"     // answers 354, then stops reading
	stallDataTerm = "."        // reads the whole message, never answers the final dot
)

// stallHost is a scripted SMTP server on 127.0.0.1 for fault injection.
// Its first stuck connections (all when stuck < 0) stall at stallAt and
// send stallAt on reached once they do; the others accept the message
// and record its recipients. A stalled connection waits until the client
// closes it or the test ends.
type stallHost struct {
	addr    string
	stallAt string
	reached chan string
	done    chan struct{} // closed at the test's end

	mu        sync.Mutex
	stuck     int
	delivered [][]string
	conns     []net.Conn
}

func startStallHost(t *testing.T, stallAt string, stuck int) *stallHost {
	t.Helper()
	lc := net.ListenConfig{}
	if stallAt == stallDataRead {
		// A small receive buffer, so that the client's writes block soon.
		lc.Control = func(_, _ string, c syscall.RawConn) error {
			return c.Control(func(fd uintptr) {
				_ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
			})
		}
	}
	ln, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	require.NoError(t, err)
	h := &stallHost{addr: ln.Addr().String(), stallAt: stallAt, stuck: stuck, reached: make(chan string, 64), done: make(chan struct{})}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			h.mu.Lock()
			h.conns = append(h.conns, c)
			stall := h.stuck != 0
			if h.stuck > 0 {
				h.stuck--
			}
			h.mu.Unlock()
			wg.Go(func() { h.serve(c, stall) })
		}
	})
	t.Cleanup(func() {
		ln.Close()
		close(h.done)
		h.mu.Lock()
		for _, c := range h.conns {
			c.Close()
		}
		h.mu.Unlock()
		wg.Wait()
	})
	return h
}

// hang signals that the connection reached its stall and waits for it to
// end: with drain, reading and discarding until the client closes it;
// without, reading nothing (so that the client's writes fill the socket
// buffers) until the test ends.
func (h *stallHost) hang(c net.Conn, drain bool) {
	h.reached <- h.stallAt
	if drain {
		_, _ = io.Copy(io.Discard, c)
		return
	}
	<-h.done
}

func (h *stallHost) serve(c net.Conn, stall bool) {
	defer c.Close()
	at := func(phase string) bool { return stall && h.stallAt == phase }
	if at(stallGreeting) {
		h.hang(c, true)
		return
	}
	r := bufio.NewReader(c)
	say := func(line string) bool { _, err := io.WriteString(c, line+"\r\n"); return err == nil }
	if !say("220 stallhost.test ESMTP") {
		return
	}
	var rcpts []string
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		verb, _, _ := strings.Cut(strings.ToUpper(strings.TrimSpace(line)), " ")
		var ok bool
		switch {
		case verb == "EHLO" || verb == "HELO":
			ok = say("250 stallhost.test")
		case verb == "MAIL" && at(stallMail), verb == "RCPT" && at(stallRcpt), verb == "DATA" && at(stallDataInit):
			h.hang(c, true)
			return
		case verb == "MAIL" || verb == "RSET" || verb == "NOOP":
			rcpts = nil
			ok = say("250 2.0.0 ok")
		case verb == "RCPT":
			rcpts = append(rcpts, strings.TrimSpace(line))
			ok = say("250 2.1.5 ok")
		case verb == "DATA":
			if !say("354 go ahead") {
				return
			}
			if at(stallDataRead) {
				h.hang(c, false)
				return
			}
			for {
				l, err := r.ReadString('\n')
				if err != nil {
					return
				}
				if l == ".\r\n" {
					break
				}
			}
			if at(stallDataTerm) {
				h.hang(c, true)
				return
			}
			h.mu.Lock()
			h.delivered = append(h.delivered, rcpts)
			h.mu.Unlock()
			ok = say("250 2.0.0 queued")
		case verb == "QUIT":
			say("221 2.0.0 bye")
			return
		default:
			ok = say("502 5.5.2 unknown command")
		}
		if !ok {
			return
		}
	}
}

// messages returns the recipient lists of the messages it accepted.
func (h *stallHost) messages() [][]string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([][]string(nil), h.delivered...)
}
