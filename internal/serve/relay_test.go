package serve

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/smtp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pelletier/go-toml/v2"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/elemta/elemta/internal/spool"
	"github.com/elemta/elemta/registry"
)

func TestValidateRelayKeys(t *testing.T) {
	c := DefaultConfig()
	require.NoError(t, c.Validate())
	c.RelayWorkers, c.RelayQueue = -1, -1
	c.RelayConnectTimeout = 0
	c.RelayGreetingTimeout = registry.Duration(-time.Second)
	c.RelayMailTimeout, c.RelayRcptTimeout, c.RelayDataInitTimeout, c.RelayDataBlockTimeout, c.RelayDataTermTimeout = 0, 0, 0, 0, 0
	err := c.Validate()
	require.Error(t, err)
	for _, w := range []string{"relay_workers must not be negative", "relay_queue must not be negative",
		"relay_connect_timeout must be positive", "relay_greeting_timeout must be positive (got -1s)", "relay_mail_timeout must",
		"relay_rcpt_timeout must", "relay_data_init_timeout must", "relay_data_block_timeout must", "relay_data_term_timeout must"} {
		assert.Contains(t, err.Error(), w)
	}
	// The boundary: the smallest positive timeout and zero workers (the
	// default) are valid.
	c = DefaultConfig()
	c.RelayWorkers, c.RelayQueue = 0, 0
	c.RelayGreetingTimeout = registry.Duration(time.Nanosecond)
	assert.NoError(t, c.Validate())
}

func TestConfigDecodeRelayKeys(t *testing.T) {
	var doc struct {
		Server Config `toml:"server"`
	}
	doc.Server = DefaultConfig()
	src := "[server]\nrelay_workers = 8\nrelay_queue = 40\nrelay_connect_timeout = 5\nrelay_greeting_timeout = \"1m\"\n" +
		"relay_mail_timeout = \"2m\"\nrelay_rcpt_timeout = \"3m\"\nrelay_data_init_timeout = \"30s\"\n" +
		"relay_data_block_timeout = \"45s\"\nrelay_data_term_timeout = \"15m\"\n"
	require.NoError(t, toml.NewDecoder(strings.NewReader(src)).DisallowUnknownFields().EnableUnmarshalerInterface().Decode(&doc))
	want := DefaultConfig()
	want.RelayWorkers, want.RelayQueue = 8, 40
	want.RelayConnectTimeout = registry.Duration(5 * time.Second)
	want.RelayGreetingTimeout = registry.Duration(time.Minute)
	want.RelayMailTimeout = registry.Duration(2 * time.Minute)
	want.RelayRcptTimeout = registry.Duration(3 * time.Minute)
	want.RelayDataInitTimeout = registry.Duration(30 * time.Second)
	want.RelayDataBlockTimeout = registry.Duration(45 * time.Second)
	want.RelayDataTermTimeout = registry.Duration(15 * time.Minute)
	assert.Equal(t, want, doc.Server)
	r := doc.Server.relayConfig()
	assert.Equal(t, time.Minute, r.Timeouts.Greeting)
	assert.Equal(t, 15*time.Minute, r.Timeouts.DataTerm)
}

// silentHost accepts TCP connections on 127.0.0.1 and never greets,
// sending a value on accepted for each.
type silentHost struct {
	ln       net.Listener
	accepted chan struct{}
}

func startSilentHost(t *testing.T) *silentHost {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	h := &silentHost{ln: ln, accepted: make(chan struct{}, 16)}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			h.accepted <- struct{}{}
			wg.Go(func() { _, _ = io.Copy(io.Discard, c) })
		}
	})
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return h
}

// TestShutdownWithStalledRelay: the smarthost accepts and never greets
// (the relay timeouts are minutes). Shutdown returns within
// shutdown_timeout plus a little, reporting the cancelled delivery; the
// message is still queued, with no attempt counted, and the next start
// relays it.
func TestShutdownWithStalledRelay(t *testing.T) {
	const shutdownTimeout = 300 * time.Millisecond
	silent := startSilentHost(t)
	cfg := testConfig(t) // loopback, no local_domains: everything is relayed
	cfg.Relay = silent.ln.Addr().String()
	cfg.ShutdownTimeout = registry.Duration(shutdownTimeout)
	mgr, err := manager("servetest")
	require.NoError(t, err)
	defer mgr.Close()
	s, err := Start(context.Background(), cfg, mgr, slog.New(slog.NewTextHandler(io.Discard, nil)))
	require.NoError(t, err)
	msg := []byte("From: a@example.org\r\nSubject: stuck\r\nMessage-ID: <stuck@example.org>\r\n\r\nx\r\n")
	require.NoError(t, smtp.SendMail(s.Addr().String(), nil, "a@example.org", []string{"x@remote.test"}, msg))
	select {
	case <-silent.accepted:
	case <-time.After(20 * time.Second):
		t.Fatal("the relay attempt never connected")
	}

	ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	start := time.Now()
	err = s.Shutdown(ctx)
	elapsed := time.Since(start)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "deliveries in flight cancelled at the shutdown deadline")
	assert.Less(t, elapsed, shutdownTimeout+2*time.Second, "Shutdown overran shutdown_timeout")

	sp, _, err := spool.Open(cfg.SpoolDir)
	require.NoError(t, err)
	items := sp.List()
	require.Len(t, items, 1, "the message is still queued, no DSN")
	ent, err := sp.Get(items[0].ID)
	require.NoError(t, err)
	assert.Equal(t, 0, ent.Attempts)
	assert.Empty(t, ent.LastError)
	require.NoError(t, sp.Close())

	smarthostCfg := testConfig(t)
	cfg.Relay = startServer(t, smarthostCfg).Addr().String()
	startServer(t, cfg)
	got := waitMail(t, smarthostCfg.MaildirRoot, "x@remote.test", 1)
	assert.Contains(t, got[0], "<stuck@example.org>")
}
