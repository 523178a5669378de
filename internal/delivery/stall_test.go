package delivery

import (
	"context"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/elemta/elemta/internal/domains"
	"github.com/elemta/elemta/internal/spool"
)

// guard bounds every wait of these tests; a wait that takes it is a bug
// (the stalls under test last minutes with the default timeouts).
const guard = 20 * time.Second

// shutdownSlack is what Shutdown may take past its deadline: closing the
// stalled connections and releasing their entries.
const shutdownSlack = 2 * time.Second

func watchPosts(t *testing.T) chan post {
	t.Helper()
	ch := make(chan post, 64)
	outcomesMu.Lock()
	posted = ch
	outcomesMu.Unlock()
	t.Cleanup(func() {
		outcomesMu.Lock()
		posted = nil
		outcomesMu.Unlock()
	})
	return ch
}

func nextPost(t *testing.T, ch chan post) post {
	t.Helper()
	select {
	case p := <-ch:
		return p
	case <-time.After(guard):
		t.Fatal("no delivery attempt finished")
		return post{}
	}
}

func waitStall(t *testing.T, h *stallHost) {
	t.Helper()
	select {
	case <-h.reached:
	case <-time.After(guard):
		t.Fatalf("the relay never reached the %s stall", h.stallAt)
	}
}

// runInBackground starts w.Run and returns its result channel.
func runInBackground(w *Worker) chan error {
	done := make(chan error, 1)
	go func() { done <- w.Run(context.Background()) }()
	return done
}

// shutdown calls w.Shutdown with deadline and checks that it cancels
// what is in flight and returns within deadline plus shutdownSlack.
func shutdown(t *testing.T, w *Worker, run chan error, deadline time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	start := time.Now()
	err := w.Shutdown(ctx)
	elapsed := time.Since(start)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Contains(t, err.Error(), "cancelled at the shutdown deadline")
	assert.Less(t, elapsed, deadline+shutdownSlack, "Shutdown overran its deadline")
	select {
	case err := <-run:
		require.NoError(t, err)
	case <-time.After(guard):
		t.Fatal("Run did not return after Shutdown")
	}
}

// restart closes e's spool, opens it again and returns a fresh worker with
// cfg over it, as after a process restart.
func restart(t *testing.T, e *env, cfg Config) *Worker {
	t.Helper()
	root := e.spool.Root()
	require.NoError(t, e.spool.Close())
	sp, _, err := spool.Open(root, spool.WithClock(e.clk.now))
	require.NoError(t, err)
	t.Cleanup(func() { sp.Close() })
	e.spool = sp
	return NewLive(cfg, e.w.plugins, sp, e.w.log)
}

// fullBacklog returns the address of a listener on 127.0.0.1 whose
// accept queue is full: a connect to it gets no answer (Linux drops the
// SYN) until the dialer's timeout.
func fullBacklog(t *testing.T) string {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	require.NoError(t, err)
	t.Cleanup(func() { syscall.Close(fd) })
	require.NoError(t, syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}))
	require.NoError(t, syscall.Listen(fd, 0)) // room for one connection, never accepted
	sa, err := syscall.Getsockname(fd)
	require.NoError(t, err)
	addr := (&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: sa.(*syscall.SockaddrInet4).Port}).String()
	c, err := net.DialTimeout("tcp", addr, guard)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return addr
}

// TestRelayConnectTimeout: a smarthost that never answers the SYN is
// given up on after relay_connect_timeout: 451 4.4.1, retried later.
func TestRelayConnectTimeout(t *testing.T) {
	e := setup(t)
	to := DefaultTimeouts()
	to.Connect = 100 * time.Millisecond
	withRelay(e, fullBacklog(t), to)
	id := e.put(t, "a@local.test", "", "x@remote.test")
	done := make(chan struct{})
	start := time.Now()
	go func() { defer close(done); e.run(t) }()
	select {
	case <-done:
	case <-time.After(guard):
		t.Fatal("the connect did not time out")
	}
	assert.GreaterOrEqual(t, time.Since(start), to.Connect, "the connect got an answer: the test proves nothing")
	ent, err := e.spool.Get(id)
	require.NoError(t, err)
	assert.Equal(t, 1, ent.Attempts)
	assert.True(t, strings.HasPrefix(ent.LastError, "451 4.4.1 relay "), ent.LastError)
	assert.Contains(t, ent.LastError, "connect: timed out after 100ms")
}

// sendBufferMax is the most a TCP socket buffers for sending
// (net.ipv4.tcp_wmem's maximum): a message larger than that blocks the
// sender's writes when the receiver reads nothing.
func sendBufferMax(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile("/proc/sys/net/ipv4/tcp_wmem")
	require.NoError(t, err)
	f := strings.Fields(string(b))
	require.Len(t, f, 3)
	n, err := strconv.Atoi(f[2])
	require.NoError(t, err)
	return n
}

func withRelay(e *env, addr string, to Timeouts) {
	e.w.cfg.Relay = Relay{Addr: addr, Timeouts: to}
	e.w.cfg.LocalDomains = []string{"local.test"}
	e.w.local = domains.NewSet(e.w.cfg.LocalDomains)
}

// TestRelayPhaseTimeouts: a smarthost that stalls in one phase is given up
// on after that phase's timeout (the others are minutes: the test would
// hang on them), the recipients deferred with 451 4.4.2 naming the phase.
func TestRelayPhaseTimeouts(t *testing.T) {
	const short = 100 * time.Millisecond
	tests := []struct {
		stallAt string
		set     func(*Timeouts)
		want    string
		big     bool // a message larger than the socket buffers
	}{
		{stallGreeting, func(to *Timeouts) { to.Greeting = short }, "greeting and EHLO: timed out after 100ms", false},
		{stallMail, func(to *Timeouts) { to.Mail = short }, "MAIL: timed out after 100ms", false},
		{stallRcpt, func(to *Timeouts) { to.Rcpt = short }, "RCPT: timed out after 100ms", false},
		{stallDataInit, func(to *Timeouts) { to.DataInit = short }, "DATA: timed out after 100ms", false},
		{stallDataRead, func(to *Timeouts) { to.DataBlock = short }, "the message data: timed out after 100ms", true},
		{stallDataTerm, func(to *Timeouts) { to.DataTerm = short }, "the end of data: timed out after 100ms", false},
	}
	for _, tt := range tests {
		t.Run(tt.stallAt, func(t *testing.T) {
			e := setup(t)
			h := startStallHost(t, tt.stallAt, -1)
			to := DefaultTimeouts()
			tt.set(&to)
			withRelay(e, h.addr, to)
			var id string
			if tt.big {
				body := strings.Repeat(strings.Repeat("x", 76)+"\r\n", (sendBufferMax(t)+1<<20)/78)
				var err error
				id, err = e.spool.Put(&spool.Entry{Envelope: spool.Envelope{MailFrom: "a@local.test", RcptTo: []string{"x@remote.test"}},
					Message: []byte("Subject: big\r\n\r\n" + body)}, false)
				require.NoError(t, err)
			} else {
				id = e.put(t, "a@local.test", "", "x@remote.test")
			}
			done := make(chan struct{})
			go func() { defer close(done); e.run(t) }()
			select {
			case <-done:
			case <-time.After(guard):
				t.Fatal("the relay attempt did not time out")
			}
			select {
			case <-h.reached:
			default:
				t.Fatalf("the smarthost never stalled at %s", tt.stallAt)
			}
			ent, err := e.spool.Get(id)
			require.NoError(t, err)
			assert.Equal(t, 1, ent.Attempts)
			assert.Equal(t, []string{"x@remote.test"}, ent.Pending())
			assert.True(t, strings.HasPrefix(ent.LastError, "451 4.4.2 relay "+h.addr+": "), ent.LastError)
			assert.Contains(t, ent.LastError, tt.want)
		})
	}
}

// TestStalledRelayHoldsOnlyItself: a smarthost connection that never
// greets holds one relay worker. Local mail and the next relayed message
// go through at once; Shutdown cancels the stuck attempt at its deadline,
// which leaves the message queued as it was, and the next start relays it.
func TestStalledRelayHoldsOnlyItself(t *testing.T) {
	e := setup(t)
	h := startStallHost(t, stallGreeting, 1) // the first connection only
	withRelay(e, h.addr, Timeouts{})         // RFC defaults: minutes
	e.w.cfg.Concurrency, e.w.cfg.RelayConcurrency = 1, 2
	posts := watchPosts(t)
	run := runInBackground(e.w)

	stuck := e.put(t, "a@local.test", "", "x@remote.test")
	waitStall(t, h)

	local := e.put(t, "a@local.test", "", "b@local.test")
	p := nextPost(t, posts)
	assert.Equal(t, local, p.id)
	assert.Equal(t, []string{"b@local.test"}, p.out.Delivered)

	next := e.put(t, "a@local.test", "", "y@remote.test")
	p = nextPost(t, posts)
	assert.Equal(t, next, p.id)
	assert.Equal(t, []string{"y@remote.test"}, p.out.Delivered)
	assert.Equal(t, [][]string{{"RCPT TO:<y@remote.test>"}}, h.messages())

	shutdown(t, e.w, run, 200*time.Millisecond)
	items := e.spool.List()
	require.Len(t, items, 1, "only the stuck message is queued, no DSN")
	assert.Equal(t, stuck, items[0].ID)
	assert.False(t, items[0].Claimed)
	ent, err := e.spool.Get(stuck)
	require.NoError(t, err)
	assert.Equal(t, 0, ent.Attempts, "a cancelled attempt is not counted")
	assert.Empty(t, ent.LastError)
	assert.Equal(t, []string{"x@remote.test"}, ent.Pending())

	w := restart(t, e, e.w.cfg)
	n, err := w.RunOnce(context.Background())
	require.NoError(t, err)
	assert.Equal(t, 1, n)
	assert.Equal(t, [][]string{{"RCPT TO:<y@remote.test>"}, {"RCPT TO:<x@remote.test>"}}, h.messages())
	assert.Empty(t, e.spool.List())
	assert.Empty(t, e.mails(t, "a@local.test"), "no DSN")
}

// TestShutdownCancelsStalledRelay: a message for a local and a remote
// recipient whose smarthost stalls (before the greeting, at MAIL, after
// the data): the local copy is written before the relay starts; Shutdown
// returns at its deadline; the entry is queued as it was (no attempt, no
// DSN) and the next start relays it without a second local copy.
func TestShutdownCancelsStalledRelay(t *testing.T) {
	for _, stallAt := range []string{stallGreeting, stallMail, stallDataTerm} {
		t.Run(stallAt, func(t *testing.T) {
			e := setup(t)
			h := startStallHost(t, stallAt, -1)
			withRelay(e, h.addr, Timeouts{})
			run := runInBackground(e.w)
			id := e.put(t, "a@local.test", "", "b@local.test", "x@remote.test")
			waitStall(t, h)
			assert.Len(t, e.mails(t, "b@local.test"), 1, "the local copy does not wait for the smarthost")

			shutdown(t, e.w, run, 150*time.Millisecond)
			items := e.spool.List()
			require.Len(t, items, 1)
			ent, err := e.spool.Get(id)
			require.NoError(t, err)
			assert.Equal(t, 0, ent.Attempts)
			assert.Empty(t, ent.LastError)
			assert.Equal(t, []string{"b@local.test", "x@remote.test"}, ent.Pending(), "nothing of the cancelled attempt is recorded")

			healthy := startStallHost(t, "", 0)
			cfg := e.w.cfg
			cfg.Relay.Addr = healthy.addr
			w := restart(t, e, cfg)
			_, err = w.RunOnce(context.Background())
			require.NoError(t, err)
			assert.Equal(t, [][]string{{"RCPT TO:<x@remote.test>"}}, healthy.messages())
			assert.Len(t, e.mails(t, "b@local.test"), 1, "no second local copy")
			assert.Empty(t, e.mails(t, "a@local.test"), "no DSN")
			assert.Empty(t, e.spool.List())
		})
	}
}

// logSink is a slog.Handler sending each record's message to a channel.
type logSink chan string

func (s logSink) Enabled(context.Context, slog.Level) bool { return true }
func (s logSink) Handle(_ context.Context, r slog.Record) error {
	id := ""
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "id" {
			id = a.Value.String()
		}
		return true
	})
	select {
	case s <- r.Message + " " + id:
	default:
	}
	return nil
}
func (s logSink) WithAttrs([]slog.Attr) slog.Handler { return s }
func (s logSink) WithGroup(string) slog.Handler      { return s }

var _ slog.Handler = logSink(nil)

// TestRelayQueueFull: with one relay worker stuck and its queue (one
// place) taken, the next relayed message is put back, due after
// retry_base, without an attempt counted; after a restart all three go.
func TestRelayQueueFull(t *testing.T) {
	e := setup(t)
	h := startStallHost(t, stallGreeting, 1)
	withRelay(e, h.addr, Timeouts{})
	e.w.cfg.Concurrency, e.w.cfg.RelayConcurrency, e.w.cfg.RelayQueue = 1, 1, 1
	logs := make(logSink, 256)
	e.w.log = slog.New(logs)
	run := runInBackground(e.w)

	first := e.put(t, "a@local.test", "", "x@remote.test")
	waitStall(t, h)
	ids := map[string]bool{e.put(t, "a@local.test", "", "y@remote.test"): true, e.put(t, "a@local.test", "", "z@remote.test"): true}
	var parked string
	for parked == "" {
		select {
		case l := <-logs:
			if id, ok := strings.CutPrefix(l, "relay queue full, message put back "); ok {
				parked = id
			}
		case <-time.After(guard):
			t.Fatal("no message was put back")
		}
	}
	require.True(t, ids[parked], "one of the two waiting messages is put back: %s", parked)
	for _, it := range e.spool.List() {
		switch it.ID {
		case parked:
			assert.False(t, it.Claimed)
			assert.Equal(t, e.clk.now().Add(time.Minute), it.NextAttempt, "due after retry_base")
		default: // the stuck one and the one in the queue
			assert.True(t, it.Claimed, it.ID)
		}
	}
	shutdown(t, e.w, run, 100*time.Millisecond)
	for _, it := range e.spool.List() {
		ent, err := e.spool.Get(it.ID)
		require.NoError(t, err)
		assert.Equal(t, 0, ent.Attempts, it.ID)
	}
	require.Len(t, e.spool.List(), 3)

	w := restart(t, e, e.w.cfg)
	n, err := w.RunOnce(context.Background())
	require.NoError(t, err)
	assert.GreaterOrEqual(t, n, 3, "one queue place for two waiting: parked again, then claimed when there is room")
	got := h.messages()
	require.Len(t, got, 3)
	assert.Contains(t, got, []string{"RCPT TO:<x@remote.test>"}, first)
	assert.Empty(t, e.spool.List())
}
