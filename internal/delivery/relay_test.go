package delivery

import (
	"io"
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/emersion/go-smtp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// smarthost is a go-smtp server that records what it accepts: recipients
// starting with "bad" get 550, "later" 451, messages with an X-Relay:
// reject header field 554 at DATA.
type smarthost struct {
	mu   sync.Mutex
	got  []relayed
	addr string
}

type relayed struct {
	from  string
	rcpts []string
	data  string
}

type hostSession struct {
	h     *smarthost
	from  string
	rcpts []string
}

func (s *hostSession) Reset()        { s.from, s.rcpts = "", nil }
func (s *hostSession) Logout() error { return nil }
func (s *hostSession) Mail(from string, _ *smtp.MailOptions) error {
	s.from = from
	return nil
}

func (s *hostSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	switch {
	case strings.HasPrefix(to, "bad"):
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user at smarthost"}
	case strings.HasPrefix(to, "later"):
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 2, 0}, Message: "mailbox busy"}
	}
	s.rcpts = append(s.rcpts, to)
	return nil
}

func (s *hostSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	hdr, _, _ := strings.Cut(string(b), "\r\n\r\n")
	if strings.Contains(hdr, "X-Relay: reject") { // not a DSN quoting it
		return &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "content refused at smarthost"}
	}
	s.h.mu.Lock()
	s.h.got = append(s.h.got, relayed{from: s.from, rcpts: s.rcpts, data: string(b)})
	s.h.mu.Unlock()
	return nil
}

func startSmarthost(t *testing.T) *smarthost {
	t.Helper()
	h := &smarthost{}
	srv := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return &hostSession{h: h}, nil }))
	srv.Domain = "smarthost.test"
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	h.addr = l.Addr().String()
	done := make(chan struct{})
	go func() { _ = srv.Serve(l); close(done) }()
	t.Cleanup(func() { srv.Close(); <-done })
	return h
}

func (h *smarthost) messages() []relayed {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]relayed(nil), h.got...)
}

func TestRelay(t *testing.T) {
	deadAddr := func(t *testing.T) string {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		addr := l.Addr().String()
		l.Close()
		return addr
	}
	tests := []struct {
		name       string
		down       bool
		header     string
		rcpts      []string
		wantRelays []relayed // from and rcpts of what the smarthost got
		pending    []string  // still queued
		dsnFor     string    // a DSN for this recipient reached the smarthost
	}{
		{
			name: "all accepted", rcpts: []string{"x@remote.test", "y@remote.test"},
			wantRelays: []relayed{{from: "a@example.org", rcpts: []string{"x@remote.test", "y@remote.test"}}},
		},
		{
			name: "per-recipient outcomes", rcpts: []string{"x@remote.test", "bad@remote.test", "later@remote.test"},
			wantRelays: []relayed{{from: "a@example.org", rcpts: []string{"x@remote.test"}}, {from: "", rcpts: []string{"a@example.org"}}},
			pending:    []string{"later@remote.test"},
			dsnFor:     "bad@remote.test",
		},
		{
			name: "refused at DATA", header: "X-Relay: reject\r\n", rcpts: []string{"x@remote.test"},
			wantRelays: []relayed{{from: "", rcpts: []string{"a@example.org"}}},
			dsnFor:     "x@remote.test",
		},
		{
			name: "smarthost down", down: true, rcpts: []string{"x@remote.test", "y@remote.test"},
			pending: []string{"x@remote.test", "y@remote.test"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := setup(t)
			h := startSmarthost(t)
			e.w.cfg.Relay = Relay{Addr: h.addr}
			if tt.down {
				e.w.cfg.Relay.Addr = deadAddr(t)
			}
			id := e.put(t, "a@example.org", tt.header, tt.rcpts...)
			e.run(t)
			got := h.messages()
			require.Len(t, got, len(tt.wantRelays))
			for i, w := range tt.wantRelays {
				assert.Equal(t, w.from, got[i].from)
				assert.Equal(t, w.rcpts, got[i].rcpts)
			}
			if len(tt.wantRelays) > 0 && tt.wantRelays[0].from != "" {
				assert.Contains(t, got[0].data, "X-Delivered-By: test\r\n", "pre-delivery header changes are relayed")
			}
			if tt.dsnFor != "" {
				dsn := got[len(got)-1].data
				assert.Contains(t, dsn, "Final-Recipient: rfc822; "+tt.dsnFor+"\r\nAction: failed\r\nStatus: 5.")
			}
			if tt.pending == nil {
				assert.Empty(t, e.spool.List())
				return
			}
			ent, err := e.spool.Get(id)
			require.NoError(t, err)
			assert.Equal(t, tt.pending, ent.Pending())
			assert.Equal(t, 1, ent.Attempts)
			assert.True(t, strings.HasPrefix(ent.LastError, "451 4."), ent.LastError)
		})
	}
}
