package delivery

import (
	"bytes"
	"io"
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/emersion/go-smtp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/elemta/elemta/internal/mime7bit"
	"github.com/elemta/elemta/internal/spool"
)

// capsHost is a go-smtp smarthost whose EHLO reply lacks the extensions
// in drop (go-smtp always offers 8BITMIME; the listener strips it), and
// that records MAIL's options.
type capsHost struct {
	mu   sync.Mutex
	got  []capsMail
	addr string
}

type capsMail struct {
	from string
	opts smtp.MailOptions
	data string
}

type capsSession struct {
	h    *capsHost
	from string
	opts smtp.MailOptions
}

func (s *capsSession) Reset()        {}
func (s *capsSession) Logout() error { return nil }
func (s *capsSession) Mail(from string, o *smtp.MailOptions) error {
	s.from, s.opts = from, *o
	return nil
}
func (s *capsSession) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (s *capsSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.h.mu.Lock()
	s.h.got = append(s.h.got, capsMail{from: s.from, opts: s.opts, data: string(b)})
	s.h.mu.Unlock()
	return nil
}

type dropListener struct {
	net.Listener
	drop []string
}

func (l dropListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	return dropConn{c, l.drop}, err
}

type dropConn struct {
	net.Conn
	drop []string
}

func (c dropConn) Write(p []byte) (int, error) {
	out := p
	for _, ext := range c.drop {
		out = bytes.ReplaceAll(out, []byte("250-"+ext+"\r\n"), nil)
	}
	if _, err := c.Conn.Write(out); err != nil {
		return 0, err
	}
	return len(p), nil
}

func startCapsHost(t *testing.T, utf8 bool, drop ...string) *capsHost {
	t.Helper()
	h := &capsHost{}
	srv := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return &capsSession{h: h}, nil }))
	srv.Domain = "smarthost.test"
	srv.EnableSMTPUTF8 = utf8
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	h.addr = l.Addr().String()
	done := make(chan struct{})
	go func() { _ = srv.Serve(dropListener{l, drop}); close(done) }()
	t.Cleanup(func() { srv.Close(); <-done })
	return h
}

func (h *capsHost) messages() []capsMail {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]capsMail(nil), h.got...)
}

func (e *env) putRaw(t *testing.T, env spool.Envelope, msg string) string {
	t.Helper()
	id, err := e.spool.Put(&spool.Entry{Envelope: env, Message: []byte(msg)}, false)
	require.NoError(t, err)
	return id
}

// TestRelaySMTPUTF8: a message that needs SMTPUTF8 goes with it to a
// smarthost that offers it, and bounces with 5.6.7 (an RFC 6533 DSN) from
// one that does not; an SMTPUTF8 message that is all ASCII goes without.
func TestRelaySMTPUTF8(t *testing.T) {
	const utf8Msg = "From: Jürgen <jürgen@example.org>\r\nSubject: Grüße\r\n\r\nHallo.\r\n"
	t.Run("offered", func(t *testing.T) {
		e := setup(t)
		h := startCapsHost(t, true)
		e.w.cfg.Relay = Relay{Addr: h.addr}
		e.putRaw(t, spool.Envelope{MailFrom: "jürgen@example.org", RcptTo: []string{"björn@remote.test"}, SMTPUTF8: true}, utf8Msg)
		e.run(t)
		got := h.messages()
		require.Len(t, got, 1)
		assert.True(t, got[0].opts.UTF8)
		assert.Empty(t, e.spool.List())
	})
	t.Run("not offered", func(t *testing.T) {
		e := setup(t)
		h := startCapsHost(t, false)
		e.w.cfg.Relay = Relay{Addr: h.addr, Timeouts: Timeouts{}}
		e.w.cfg.LocalDomains = []string{"example.org"}
		e.w.local = map[string]bool{"example.org": true}
		e.putRaw(t, spool.Envelope{MailFrom: "jürgen@example.org", RcptTo: []string{"björn@remote.test"}, SMTPUTF8: true}, utf8Msg)
		e.run(t) // the bounce is queued
		e.run(t) // and delivered to the local sender
		assert.Empty(t, h.messages(), "nothing sent without SMTPUTF8")
		dsn := e.mails(t, "jürgen@example.org")
		require.Len(t, dsn, 1)
		assert.Contains(t, dsn[0], "Content-Type: message/global-delivery-status\r\n")
		assert.Contains(t, dsn[0], "Final-Recipient: utf-8; björn@remote.test\r\nAction: failed\r\nStatus: 5.6.7\r\n")
		assert.Contains(t, dsn[0], "SMTPUTF8 is required, but was not offered")
		assert.Contains(t, dsn[0], "Content-Type: message/global-headers\r\n")
	})
	t.Run("all ASCII", func(t *testing.T) {
		e := setup(t)
		h := startCapsHost(t, false)
		e.w.cfg.Relay = Relay{Addr: h.addr}
		e.putRaw(t, spool.Envelope{MailFrom: "a@example.org", RcptTo: []string{"b@remote.test"}, SMTPUTF8: true}, "Subject: ascii\r\n\r\nhi\r\n")
		e.run(t)
		got := h.messages()
		require.Len(t, got, 1)
		assert.False(t, got[0].opts.UTF8)
	})
}

// TestRelay8BitMIME: 8-bit content goes as it is to a smarthost that
// offers 8BITMIME, converted to 7-bit to one that does not, and bounces
// with 5.6.3 when it cannot be converted.
func TestRelay8BitMIME(t *testing.T) {
	const msg = "From: a@example.org\r\nSubject: 8bit\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nGrüße\r\n"
	for _, tt := range []struct {
		name, msg  string
		drop       []string
		want       string // what arrives, "" for nothing
		wantStatus string // the DSN's, for a bounce
	}{
		{"offered", msg, nil, msg, ""},
		{"not offered", msg, []string{"8BITMIME"}, "Content-Transfer-Encoding: quoted-printable\r\n\r\nGr=C3=BC=C3=9Fe\r\n", ""},
		{"cannot convert", "From: a@example.org\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n\xff\xfe\r\n",
			[]string{"8BITMIME"}, "", "5.6.3"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := setup(t)
			h := startCapsHost(t, false, tt.drop...)
			e.w.cfg.Relay = Relay{Addr: h.addr}
			e.w.local = map[string]bool{"example.org": true}
			e.putRaw(t, spool.Envelope{MailFrom: "a@example.org", RcptTo: []string{"b@remote.test"}, Body: "8BITMIME"}, tt.msg)
			e.run(t)
			got := h.messages()
			if tt.want == "" {
				assert.Empty(t, got)
				e.run(t)
				dsn := e.mails(t, "a@example.org")
				require.Len(t, dsn, 1)
				assert.Contains(t, dsn[0], "Status: "+tt.wantStatus+"\r\n")
				assert.Contains(t, dsn[0], "does not offer 8BITMIME")
				return
			}
			require.Len(t, got, 1)
			assert.True(t, strings.HasSuffix(got[0].data, tt.want), got[0].data)
			if tt.drop != nil {
				assert.False(t, mime7bit.Needs([]byte(got[0].data)), "7-bit")
				assert.Empty(t, got[0].opts.Body, "no BODY=8BITMIME to a peer that does not offer it")
			}
		})
	}
}

func TestDSNAddress(t *testing.T) {
	assert.Equal(t, "a+b@example.org", dsnAddress("a+b@example.org"), "ASCII is rfc822, as it is")
	assert.Equal(t, `jürgen\x{2B}tag\x{3D}1@example.org`, dsnAddress("jürgen+tag=1@example.org"))
}
