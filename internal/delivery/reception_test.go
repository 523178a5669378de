package delivery

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	mbox "github.com/elemta/elemta/internal/mailbox"
	"github.com/elemta/elemta/internal/spool"
	"github.com/elemta/elemta/pluginhost"
	"github.com/elemta/elemta/registry"
)

const receptionMsg = "From: <a@example.org>\r\nSubject: at reception\r\nMessage-ID: <r1@example.org>\r\n\r\nBody.\r\n"

// received is an entry as the receiver hands it to DeliverNow: id and
// time set, not spooled.
func (e *env) received(rcpts ...string) *spool.Entry {
	return &spool.Entry{ID: spool.NewID(e.clk.now()), ReceivedAt: e.clk.now(),
		Envelope: spool.Envelope{MailFrom: "a@example.org", RcptTo: rcpts}}
}

// rewriter is the message as the receiver passes it: from its pieces,
// with a field added.
func rewriter(t *testing.T) *registry.Message {
	t.Helper()
	m, err := registry.ParseMessage([]byte(receptionMsg), registry.Envelope{})
	require.NoError(t, err)
	return m
}

// blockMailbox makes addr's Maildir impossible to create (a file where its
// directory goes: root cannot get past that, unlike a read-only mode) and
// returns the function that removes the block.
func (e *env) blockMailbox(t *testing.T, addr string) func() {
	t.Helper()
	box, err := mbox.Path(e.root, addr)
	require.NoError(t, err)
	require.NoError(t, os.MkdirAll(filepath.Dir(box), 0o700))
	require.NoError(t, os.WriteFile(box, []byte("not a directory"), 0o600))
	return func() { require.NoError(t, os.Remove(box)) }
}

func TestDeliversNow(t *testing.T) {
	relay := Relay{Addr: "127.0.0.1:1"}
	tests := []struct {
		name    string
		cfg     Config
		plugins []string
		rcpts   []string
		want    bool
	}{
		{"local recipients, no delivery plugin", Config{}, nil, []string{"b@example.net", "c@example.net"}, true},
		{"no recipient", Config{}, nil, nil, false},
		{"a pre/post-delivery plugin", Config{}, []string{"deliverytest"}, []string{"b@example.net"}, false},
		{"relay, local domain", Config{Relay: relay, LocalDomains: []string{"example.net"}}, nil, []string{"b@example.net"}, true},
		{"relay, one remote recipient", Config{Relay: relay, LocalDomains: []string{"example.net"}}, nil, []string{"b@example.net", "x@remote.test"}, false},
		{"relay, no local domains", Config{Relay: relay}, nil, []string{"b@example.net"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := setupWith(t, tt.cfg, tt.plugins...)
			assert.Equal(t, tt.want, e.w.DeliversNow(tt.rcpts))
		})
	}
}

// TestDeliversNowReload: a manager swapped in with a pre-delivery plugin
// applies to the next message, and swapping it out again too.
func TestDeliversNowReload(t *testing.T) {
	e := setupWith(t, Config{})
	mgr := func(plugins ...string) *pluginhost.Manager {
		pcfg, err := pluginhost.NewConfig(plugins...)
		require.NoError(t, err)
		m := pluginhost.NewManager(pcfg)
		require.NoError(t, m.LoadPlugins(context.Background()))
		return m
	}
	live := pluginhost.NewLive(mgr())
	t.Cleanup(func() { assert.NoError(t, live.Close()) })
	e.w.plugins = live
	rcpts := []string{"b@example.net"}
	require.True(t, e.w.DeliversNow(rcpts))
	_, _, err := live.Swap(mgr("deliverytest"))
	require.NoError(t, err)
	assert.False(t, e.w.DeliversNow(rcpts), "after a reload adding a delivery-stage plugin")
	_, _, err = live.Swap(mgr())
	require.NoError(t, err)
	assert.True(t, e.w.DeliversNow(rcpts), "after a reload removing it")
}

func TestDeliverNow(t *testing.T) {
	e := setupWith(t, Config{})
	ent := e.received("b@example.net", "C@Example.NET")
	msg := rewriter(t)
	spooled, err := e.w.DeliverNow(ent, msg.Rewriter([]registry.Field{{Name: "X-Added", Value: "yes"}}, nil))
	require.NoError(t, err)
	assert.False(t, spooled)
	for i, r := range []string{"b@example.net", "C@example.net"} {
		box, err := mbox.Path(e.root, r)
		require.NoError(t, err)
		ents, err := os.ReadDir(filepath.Join(box, "new"))
		require.NoError(t, err)
		require.Len(t, ents, 1, r)
		assert.Equal(t, e.w.uniqueName(ent, i), ents[0].Name(), "the name a spooled attempt would use")
		b, err := os.ReadFile(filepath.Join(box, "new", ents[0].Name()))
		require.NoError(t, err)
		assert.Equal(t, "X-Added: yes\r\n"+receptionMsg, string(b))
		tmp, err := os.ReadDir(filepath.Join(box, "tmp"))
		require.NoError(t, err)
		assert.Empty(t, tmp)
	}
	assert.Empty(t, e.spool.List(), "no spool entry")
	q, err := os.ReadDir(filepath.Join(e.spool.Root(), "queue"))
	require.NoError(t, err)
	assert.Empty(t, q)
	assert.Equal(t, Stats{Attempts: 1, Completed: 1, RcptDelivered: 2, AtReception: 1}, e.w.Stats())
	assert.Equal(t, uint64(2), e.w.MaildirDirSyncs(), "one fsync of each mailbox's new/: nobody to share them with")
}

// TestDeliverNowConcurrentShareFsyncs: sessions delivering into one
// mailbox at once share the fsyncs of its new/ (dirsync.Set), and every
// copy is there.
func TestDeliverNowConcurrentShareFsyncs(t *testing.T) {
	e := setupWith(t, Config{})
	const sessions, each = 8, 25
	var wg sync.WaitGroup
	for range sessions {
		wg.Go(func() {
			for range each {
				ent := e.received("b@example.net")
				if _, err := e.w.DeliverNow(ent, rewriter(t).Rewriter(nil, nil)); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	box, err := mbox.Path(e.root, "b@example.net")
	require.NoError(t, err)
	ents, err := os.ReadDir(filepath.Join(box, "new"))
	require.NoError(t, err)
	assert.Len(t, ents, sessions*each)
	n := e.w.MaildirDirSyncs()
	assert.LessOrEqual(t, n, uint64(sessions*each))
	t.Logf("%d copies, %d fsyncs of new/", sessions*each, n)
}

// TestDeliverNowFallback: a copy that cannot be written spools the message
// for the recipients not yet delivered; the worker delivers them later,
// each recipient getting exactly one copy.
func TestDeliverNowFallback(t *testing.T) {
	rcpts := []string{"u1@example.net", "u2@example.net", "u3@example.net"}
	for _, forget := range []bool{false, true} {
		name := "the spooled entry marks u1 delivered"
		if forget {
			name = "every recipient pending: the retry finds u1's copy by its name"
		}
		t.Run(name, func(t *testing.T) {
			e := setupWith(t, Config{})
			unblock := e.blockMailbox(t, "u2@example.net")
			ent := e.received(rcpts...)
			spooled, err := e.w.DeliverNow(ent, rawMessage(receptionMsg))
			require.NoError(t, err)
			require.True(t, spooled)
			assert.Len(t, e.mails(t, "u1@example.net"), 1)
			assert.Empty(t, e.mails(t, "u3@example.net"), "stopped at the first failure")

			got, err := e.spool.Get(ent.ID)
			require.NoError(t, err, "spooled under the same id")
			assert.Equal(t, []string{"u1@example.net"}, got.Delivered)
			assert.Equal(t, rcpts, got.Envelope.RcptTo)
			assert.True(t, got.ReceivedAt.Equal(ent.ReceivedAt))
			assert.Contains(t, got.LastError, "451 4.3.0 at reception: maildir")
			assert.Equal(t, receptionMsg, string(got.Message))
			assert.Equal(t, Stats{Attempts: 1, Deferred: 1, RcptDelivered: 1, RcptDeferred: 2}, e.w.Stats())
			if forget {
				got.Delivered = nil
				_, err := e.spool.Put(got, false)
				require.NoError(t, err)
			}

			// Still blocked: the worker defers it, u1 untouched.
			require.Equal(t, 1, e.run(t))
			assert.Len(t, e.mails(t, "u1@example.net"), 1)
			unblock()
			e.clk.advance(e.w.cfg.RetryMax)
			require.Equal(t, 1, e.run(t))
			for _, r := range rcpts {
				m := e.mails(t, r)
				require.Len(t, m, 1, r)
				assert.Equal(t, receptionMsg, m[0])
			}
			assert.Empty(t, e.spool.List())
			assert.Zero(t, e.w.Stats().AtReception)
		})
	}
}

// TestDeliverNowPermanent: a recipient whose Maildir cannot be named (the
// receiver refuses it at RCPT) is spooled and bounced by the worker, as
// before delivery at reception.
func TestDeliverNowPermanent(t *testing.T) {
	e := setupWith(t, Config{})
	ent := e.received("ok@example.net", "..@example.net")
	spooled, err := e.w.DeliverNow(ent, rawMessage(receptionMsg))
	require.NoError(t, err)
	require.True(t, spooled)
	require.Equal(t, 2, e.run(t), "the message, then its DSN")
	assert.Len(t, e.mails(t, "ok@example.net"), 1)
	dsn := e.mails(t, "a@example.org")
	require.Len(t, dsn, 1)
	assert.Contains(t, dsn[0], "Final-Recipient: rfc822; ..@example.net\r\nAction: failed\r\nStatus: 5.1.3\r\n")
	assert.Empty(t, e.spool.List())
}

// TestDeliverNowSpoolFails: neither delivered nor spooled is an error, and
// the copies written are taken back so the client's retry is the only copy.
func TestDeliverNowSpoolFails(t *testing.T) {
	e := setupWith(t, Config{})
	e.blockMailbox(t, "u2@example.net")
	require.NoError(t, os.RemoveAll(filepath.Join(e.spool.Root(), "tmp"))) // the spool cannot write
	ent := e.received("u1@example.net", "u2@example.net")
	spooled, err := e.w.DeliverNow(ent, rawMessage(receptionMsg))
	require.Error(t, err)
	assert.False(t, spooled)
	assert.True(t, strings.Contains(err.Error(), "maildir") && strings.Contains(err.Error(), "spool"), err.Error())
	assert.Empty(t, e.mails(t, "u1@example.net"), "u1's copy removed")
	assert.Empty(t, e.spool.List())
	assert.Equal(t, Stats{}, e.w.Stats(), "nothing delivered")
}
