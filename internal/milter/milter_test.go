package milter_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/d--j/go-milter"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/elemta/elemta/internal/config"
	elmilter "github.com/elemta/elemta/internal/milter"
	"github.com/elemta/elemta/registry"
)

// TestReplies: every verdict at every step becomes the milter reply with
// the plugin's codes and text, a recipient refusal refuses only that
// recipient, and the connection goes on after each refusal.
func TestReplies(t *testing.T) {
	h := startPlugins(t, nil, "miltertest")

	t.Run("connect", func(t *testing.T) {
		m := h.dial()
		act, err := m.s.Conn("bad.test", milter.FamilyInet, 25, "127.0.0.3")
		require.NoError(t, err)
		assert.Equal(t, milter.ActionRejectWithCode, act.Type)
		assert.Equal(t, uint16(554), act.SMTPCode)
		assert.Equal(t, "554 5.7.1 Client refused by test plugin", act.SMTPReply)
	})
	t.Run("helo", func(t *testing.T) {
		m := h.dial()
		_, err := m.s.Conn("c.test", milter.FamilyInet, 25, "127.0.0.1")
		require.NoError(t, err)
		act, err := m.s.Helo("refused.test")
		require.NoError(t, err)
		assert.Equal(t, "550 5.7.1 HELO refused by test plugin", act.SMTPReply)
	})
	m := h.dial()
	m.open("127.0.0.1", "client.test")
	t.Run("mail", func(t *testing.T) {
		act, err := m.s.Mail("<blocked@example.test>", "")
		require.NoError(t, err)
		assert.Equal(t, "550 5.7.1 Sender blocked by test plugin", act.SMTPReply)
		require.NoError(t, m.s.Abort(nil))
	})
	t.Run("reject with a code of the wrong class falls back to 550 5.7.1", func(t *testing.T) {
		act, err := m.s.Mail("<wrongclass@example.test>", "")
		require.NoError(t, err)
		assert.Equal(t, "550 5.7.1 not a refusal code", act.SMTPReply)
		require.NoError(t, m.s.Abort(nil))
	})
	t.Run("rcpt: one refused, one greylisted, the others kept", func(t *testing.T) {
		act, err := m.s.Mail("<alice@example.test>", "")
		require.NoError(t, err)
		require.Equal(t, milter.ActionContinue, act.Type)
		for rcpt, want := range map[string]string{
			"ok1@example.test":    "",
			"refuse@example.test": "550 5.1.1 No such user here (test)",
			"grey@example.test":   "451 4.7.1 Greylisted by test plugin",
			"ok2@example.test":    "",
		} {
			act, err := m.s.Rcpt("<"+rcpt+">", "")
			require.NoError(t, err)
			assert.Equal(t, want, reply(act), rcpt)
		}
		_, err = m.s.DataStart()
		require.NoError(t, err)
		_, err = m.s.HeaderField("Subject", " x", nil)
		require.NoError(t, err)
		_, err = m.s.HeaderEnd()
		require.NoError(t, err)
		_, err = m.s.BodyChunk([]byte("x\r\n"))
		require.NoError(t, err)
		mods, act, err := m.s.End()
		require.NoError(t, err)
		assert.Equal(t, milter.ActionAccept, act.Type)
		post := headerValue(mods, "X-Test-Post")
		assert.Contains(t, post, "rcpts=2", "the refused recipients are not in the envelope")
	})
	for verdict, want := range map[string]string{
		"reject":   "554 5.7.1 Rejected by test plugin",
		"tempfail": "451 4.7.1 Try later, test plugin",
	} {
		t.Run("end of message: "+verdict, func(t *testing.T) {
			mods, act := m.message("alice@example.test", []string{"bob@example.test"},
				append(slices.Clone(simple), [2]string{"X-Test-Verdict", " " + verdict}), "body\r\n")
			assert.Equal(t, want, act.SMTPReply)
			assert.Empty(t, mods, "a refused message gets no header changes")
		})
	}
	t.Run("quarantine at end of message: Postfix hold", func(t *testing.T) {
		mods, act := m.message("alice@example.test", []string{"bob@example.test"},
			append(slices.Clone(simple), [2]string{"X-Test-Verdict", " quarantine"}), "body\r\n")
		assert.Equal(t, milter.ActionAccept, act.Type)
		assert.Equal(t, []string{"miltertest: held by test plugin"}, quarantines(mods))
	})
	t.Run("quarantine at RCPT holds the transaction", func(t *testing.T) {
		mods, act := m.message("alice@example.test", []string{"hold@example.test", "bob@example.test"}, simple, "body\r\n")
		assert.Equal(t, milter.ActionAccept, act.Type)
		assert.Equal(t, []string{"miltertest: recipient held (test)"}, quarantines(mods))
	})
	t.Run("the next transaction is not held", func(t *testing.T) {
		mods, act := m.message("alice@example.test", []string{"bob@example.test"}, simple, "body\r\n")
		assert.Equal(t, milter.ActionAccept, act.Type)
		assert.Empty(t, quarantines(mods))
	})
}

// TestMacros: the client address, TLS and the authenticated user come
// from the MTA's macros; the queue ID i names the session.
func TestMacros(t *testing.T) {
	h := startPlugins(t, nil, "miltertest")
	m := h.dial()
	m.macros.Set(milter.MacroClientAddr, "192.0.2.7")
	_, err := m.s.Conn("c.test", milter.FamilyUnknown, 0, "")
	require.NoError(t, err)
	m.macros.Set(milter.MacroTlsVersion, "TLSv1.3")
	_, err = m.s.Helo("laptop.test")
	require.NoError(t, err)
	m.macros.Set(milter.MacroAuthAuthen, "alice")
	m.macros.Set(milter.MacroQueueId, "4XYZ")
	mods, act := m.message("alice@example.test", []string{"bob@example.test"}, simple, "hi\r\n")
	require.Equal(t, milter.ActionAccept, act.Type)
	assert.Equal(t, "auth=alice tls=true ip=192.0.2.7 helo=laptop.test rcpts=1 session=4XYZ", headerValue(mods, "X-Test-Post"))

	m.macros.Set(milter.MacroAuthAuthen, "")
	mods, _ = m.message("anon@example.test", []string{"bob@example.test"}, simple, "hi\r\n")
	assert.Contains(t, headerValue(mods, "X-Test-Post"), "auth= tls=true", "the user is the MAIL's, not the session's first")
}

// TestHeaderActions: the header actions the MTA gets turn the message it
// has into exactly what `elemta serve` writes (registry.Message.Rewrite
// with the same changes), under Postfix's rules: a deletion renumbers the
// fields after it, an insertion at 0 goes on top.
func TestHeaderActions(t *testing.T) {
	h := startPlugins(t, nil, "miltertest")
	m := h.dial()
	m.open("127.0.0.1", "client.test")
	fields := [][2]string{{"Received", " from x by y"}, {"X-Remove-Me", " 1"}, {"From", " <a@example.test>"},
		{"X-Second", " a"}, {"X-Remove-Me", " 2"}, {"X-Second", " b"}, {"X-Second", " c"}, {"Subject", " folded\n\tsubject"}}
	mods, act := m.message("alice@example.test", []string{"bob@example.test"}, fields, "body\r\n")
	require.Equal(t, milter.ActionAccept, act.Type)

	got := postfixApply(t, fields, mods)
	var raw strings.Builder
	for _, f := range fields {
		raw.WriteString(f[0] + ":" + strings.ReplaceAll(f[1], "\n", "\r\n") + "\r\n")
	}
	raw.WriteString("\r\nbody\r\n")
	msg, err := registry.ParseMessage([]byte(raw.String()), registry.Envelope{})
	require.NoError(t, err)
	post := headerValue(mods, "X-Test-Post")
	want := msg.Rewrite([]registry.Field{{Name: "X-Test-Mail", Value: "alice@example.test"}, {Name: "X-Test-Post", Value: post}, {Name: "X-Test-Stamp", Value: "ok"}},
		[]registry.Removal{{Name: "X-Remove-Me", Index: -1}, {Name: "X-Second", Index: 1}})
	head, _, _ := bytes.Cut(want, []byte("\r\n\r\n"))
	assert.Equal(t, string(head), got)
}

// postfixApply applies milter header actions to fields as Postfix does.
func postfixApply(t *testing.T, fields [][2]string, mods []milter.ModifyAction) string {
	t.Helper()
	list := slices.Clone(fields)
	for _, a := range mods {
		switch a.Type {
		case milter.ActionInsertHeader:
			i := min(int(a.HeaderIndex), len(list))
			list = slices.Insert(list, i, [2]string{a.HeaderName, a.HeaderValue})
		case milter.ActionChangeHeader:
			require.Empty(t, a.HeaderValue, "only deletions")
			n := 0
			for i, f := range list {
				if strings.EqualFold(f[0], a.HeaderName) {
					n++
					if n == int(a.HeaderIndex) {
						list = slices.Delete(list, i, i+1)
						break
					}
				}
			}
		default:
			t.Fatalf("unexpected action %v", a)
		}
	}
	var lines []string
	for _, f := range list {
		lines = append(lines, f[0]+":"+strings.ReplaceAll(f[1], "\n", "\r\n"))
	}
	return strings.Join(lines, "\r\n")
}

// TestPluginFailureAppliesOnError: a plugin that panics or hangs past its
// timeout gets its on_error verdict (here tempfail: 451 4.3.0), the
// connection and the server go on, and the next message is accepted.
func TestPluginFailureAppliesOnError(t *testing.T) {
	hangUntilCleanup(t)
	h := startTOML(t, `
[plugins]
plugins = ["milterboom"]
[plugins.milterboom]
timeout = "100ms"
on_error = "tempfail"
`, nil)
	m := h.dial()
	m.open("127.0.0.1", "client.test")
	for _, how := range []string{"panic", "hang"} {
		_, act := m.message("a@example.test", []string{"b@example.test"}, append(slices.Clone(simple), [2]string{"X-Boom", " " + how}), "x\r\n")
		assert.Equal(t, "451 4.3.0 Message checks temporarily unavailable, try again later", act.SMTPReply, how)
	}
	_, act := m.message("a@example.test", []string{"b@example.test"}, simple, "x\r\n")
	assert.Equal(t, milter.ActionAccept, act.Type, "same connection, next message")
	_, act = h.dial().messageAfterOpen("a@example.test")
	assert.Equal(t, milter.ActionAccept, act.Type, "a new connection")
	st := h.mgr.Stats()
	require.Len(t, st, 1)
	assert.Equal(t, int64(1), st[0].Panics)
	assert.Equal(t, int64(1), st[0].Timeouts)
}

func (m *mta) messageAfterOpen(from string) ([]milter.ModifyAction, *milter.Action) {
	m.t.Helper()
	m.open("127.0.0.1", "client.test")
	return m.message(from, []string{"b@example.test"}, simple, "x\r\n")
}

// TestDefaultAction: when the milter itself cannot run a stage (here: the
// plugins were closed under it), the reply is default_action's.
func TestDefaultAction(t *testing.T) {
	for action, want := range map[string]milter.ActionType{"tempfail": milter.ActionRejectWithCode, "accept": milter.ActionAccept} {
		t.Run(action, func(t *testing.T) {
			h := startPlugins(t, func(c *elmilter.Config) { c.DefaultAction = action }, "miltertest")
			m := h.dial()
			m.open("127.0.0.1", "client.test")
			require.NoError(t, h.mgr.Close())
			act, err := m.s.Mail("<a@example.test>", "")
			require.NoError(t, err)
			assert.Equal(t, want, act.Type)
			if action == "tempfail" {
				assert.Equal(t, "451 4.3.0 Local error in processing, try again later", act.SMTPReply)
			}
			assert.Equal(t, int64(1), h.srv.Stats().LocalErrors)
		})
	}
}

// TestLimits: max_message_size, max_header_size and max_recipients at
// their boundaries.
func TestLimits(t *testing.T) {
	// The message as assembled: "Subject: " + value + CRLF, CRLF, body.
	const hdr = len("Subject: x\r\n") + len("\r\n")
	const body = "0123456789\r\n"
	t.Run("max_message_size", func(t *testing.T) {
		for _, tc := range []struct {
			limit int64
			ok    bool
		}{{int64(hdr + len(body)), true}, {int64(hdr + len(body) - 1), false}} {
			h := startPlugins(t, func(c *elmilter.Config) { c.MaxMessageSize = tc.limit; c.MaxHeaderSize = tc.limit }, "miltertest")
			m := h.dial()
			m.open("127.0.0.1", "client.test")
			_, act := m.message("a@example.test", []string{"b@example.test"}, [][2]string{{"Subject", " x"}}, body)
			if tc.ok {
				assert.Equal(t, milter.ActionAccept, act.Type, "limit %d", tc.limit)
			} else {
				assert.Equal(t, "552 5.3.4 Message too big for the system", act.SMTPReply, "limit %d", tc.limit)
			}
		}
	})
	t.Run("max_header_size", func(t *testing.T) {
		field := int64(len("Subject: x\r\n"))
		for _, tc := range []struct {
			limit int64
			ok    bool
		}{{field, true}, {field - 1, false}} {
			h := startPlugins(t, func(c *elmilter.Config) { c.MaxHeaderSize = tc.limit }, "miltertest")
			m := h.dial()
			m.open("127.0.0.1", "client.test")
			_, act := m.message("a@example.test", []string{"b@example.test"}, [][2]string{{"Subject", " x"}}, body)
			if tc.ok {
				assert.Equal(t, milter.ActionAccept, act.Type, "limit %d", tc.limit)
			} else {
				assert.Equal(t, "552 5.3.4 Message too big for the system", act.SMTPReply, "limit %d", tc.limit)
			}
		}
	})
	t.Run("max_recipients", func(t *testing.T) {
		h := startPlugins(t, func(c *elmilter.Config) { c.MaxRecipients = 2 }, "miltertest")
		m := h.dial()
		m.open("127.0.0.1", "client.test")
		_, err := m.s.Mail("<a@example.test>", "")
		require.NoError(t, err)
		for i, want := range []string{"", "", "452 4.5.3 Too many recipients"} {
			act, err := m.s.Rcpt(fmt.Sprintf("<r%d@example.test>", i), "")
			require.NoError(t, err)
			assert.Equal(t, want, reply(act), "recipient %d", i+1)
		}
	})
}

// TestUnixSocket: unix: listens with socket_mode; a stale socket is
// replaced, a regular file in the way is an error and stays.
func TestUnixSocket(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "elemta.sock")
	stale, err := net.Listen("unix", sock)
	require.NoError(t, err)
	stale.(*net.UnixListener).SetUnlinkOnClose(false)
	require.NoError(t, stale.Close())

	h := startPlugins(t, func(c *elmilter.Config) { c.Listen = "unix:" + sock; c.SocketMode = "0600" }, "miltertest")
	fi, err := os.Stat(sock)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	c := milter.NewClient("unix", sock)
	s, err := c.Session(milter.NewMacroBag())
	require.NoError(t, err)
	act, err := s.Conn("c.test", milter.FamilyUnix, 0, sock)
	require.NoError(t, err)
	assert.Equal(t, milter.ActionContinue, act.Type)
	s.Close()
	_ = h

	file := filepath.Join(dir, "not-a-socket")
	require.NoError(t, os.WriteFile(file, []byte("keep me"), 0o600))
	cfg := elmilter.DefaultConfig()
	cfg.Listen = "unix:" + file
	_, err = elmilter.Start(context.Background(), cfg, h.mgr, nil)
	require.ErrorContains(t, err, "not a socket")
	b, err := os.ReadFile(file)
	require.NoError(t, err)
	assert.Equal(t, "keep me", string(b))
}

// TestConfigCheckWarnsDeliveryStages: with a [milter] table, config check
// names the plugins that run only (or partly) after delivery.
func TestConfigCheckWarnsDeliveryStages(t *testing.T) {
	cfg, err := config.Parse("w.toml", []byte(`
[plugins]
plugins = ["milterdelivery", "miltertest", "milterdelivery/late"]
[plugins."milterdelivery/late"]
stages = ["post-delivery"]
[milter]
listen = "inet:127.0.0.1:8891"
`))
	require.NoError(t, err)
	require.True(t, cfg.HasMilter)
	assert.Equal(t, []string{
		"[milter]: plugin milterdelivery: its post-delivery stage does not exist in milter mode (the MTA delivers); `elemta milter` runs it at post-reception only",
		"[milter]: plugin milterdelivery/late runs only at post-delivery, which milter mode does not have (the MTA delivers): `elemta milter` never runs it",
	}, cfg.Warnings)

	cfg, err = config.Parse("w.toml", []byte("[plugins]\nplugins = [\"milterdelivery\"]\n"))
	require.NoError(t, err)
	assert.False(t, cfg.HasMilter)
	assert.Empty(t, cfg.Warnings, "no [milter] table: serve mode, where post-delivery exists")
}

// reply is the refusal of act, "" when it lets the command through.
func reply(act *milter.Action) string {
	if act.StopProcessing() {
		return act.SMTPReply
	}
	return ""
}

func headerValue(mods []milter.ModifyAction, name string) string {
	for _, a := range mods {
		if a.Type == milter.ActionInsertHeader && a.HeaderName == name {
			return strings.TrimPrefix(a.HeaderValue, " ")
		}
	}
	return ""
}

func quarantines(mods []milter.ModifyAction) []string {
	var out []string
	for _, a := range mods {
		if a.Type == milter.ActionQuarantine {
			out = append(out, a.Reason)
		}
	}
	return out
}
