package smtpd

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/textproto"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/elemta/elemta/internal/spool"
	"github.com/elemta/elemta/pluginhost"
	"github.com/elemta/elemta/registry"
)

// holdPlugin stops a message carrying "X-Hold: <key>" at post-reception
// until the test closes release[key], after telling held[key]: the
// message is then in memory, holding its share of the budget.
type holdPlugin struct{}

var holds = struct {
	sync.Mutex
	held, release map[string]chan struct{}
}{held: map[string]chan struct{}{}, release: map[string]chan struct{}{}}

func hold(key string) (held, release chan struct{}) {
	holds.Lock()
	defer holds.Unlock()
	held, release = make(chan struct{}), make(chan struct{})
	holds.held[key], holds.release[key] = held, release
	return held, release
}

func (holdPlugin) HandleStage(ctx context.Context, _ registry.Stage, pc *registry.ProcessingContext) (*registry.Result, error) {
	key := pc.Message.Header.Get("X-Hold")
	holds.Lock()
	held, release := holds.held[key], holds.release[key]
	holds.Unlock()
	if held != nil {
		close(held)
		select {
		case <-release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return &registry.Result{}, nil
}

func init() {
	registry.Register(registry.Module[struct{}, holdPlugin]{
		Name:   "smtpdhold",
		Types:  []registry.PluginType{registry.PluginTypeCustom},
		Stages: []registry.Stage{registry.PostReception},
		New:    func(struct{}, registry.Host) (holdPlugin, error) { return holdPlugin{}, nil },
	})
}

// startHold is start with the hold plugin instead of the test plugin.
func startHold(t *testing.T, cfg Config) *harness {
	t.Helper()
	pcfg, err := pluginhost.NewConfig("smtpdhold")
	require.NoError(t, err)
	mgr := pluginhost.NewManager(pcfg)
	require.NoError(t, mgr.LoadPlugins(context.Background()))
	sp, _, err := spool.Open(t.TempDir())
	require.NoError(t, err)
	cfg.Hostname, cfg.AllDomainsLocal = "mx.test", true
	srv := New(cfg, mgr, sp, slog.New(slog.NewTextHandler(io.Discard, nil)))
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		assert.NoError(t, srv.Shutdown(ctx))
		assert.NoError(t, <-done)
		sp.Close()
		mgr.Close()
	})
	return &harness{addr: l.Addr().String(), spool: sp, srv: srv}
}

// holdMsg is a message of the hold test: its header, then n body bytes.
func holdMsg(key string, n int) string {
	return "X-Hold: " + key + "\r\nSubject: budget\r\n\r\n" + strings.Repeat("b", n-2) + "\r\n"
}

// cost is what holdMsg reserves: the client's bytes and two fields.
func cost(msg string) int64 { return int64(len(msg)) + 2*fieldCost }

// sendHeld starts a transaction whose message the hold plugin keeps at
// post-reception and returns once it is held; wait reads its reply.
func sendHeld(t *testing.T, addr, key string, n int) (wait func() int) {
	t.Helper()
	held, release := hold(key)
	c, err := textproto.Dial("tcp", addr)
	require.NoError(t, err)
	_, _, err = c.ReadResponse(220)
	require.NoError(t, err)
	for _, cmd := range []string{"EHLO c", "MAIL FROM:<a@example.org>", "RCPT TO:<b@example.net>"} {
		id, err := c.Cmd("%s", cmd)
		require.NoError(t, err)
		c.StartResponse(id)
		_, _, err = c.ReadResponse(250)
		c.EndResponse(id)
		require.NoError(t, err)
	}
	id, err := c.Cmd("DATA")
	require.NoError(t, err)
	c.StartResponse(id)
	_, _, err = c.ReadResponse(354)
	c.EndResponse(id)
	require.NoError(t, err)
	_, err = c.W.WriteString(holdMsg(key, n) + ".\r\n")
	require.NoError(t, err)
	require.NoError(t, c.W.Flush())
	select {
	case <-held:
	case <-time.After(10 * time.Second):
		t.Fatal("the held message never reached post-reception")
	}
	return func() int {
		close(release)
		defer c.Close()
		code, _, _ := c.ReadResponse(0)
		return code
	}
}

// TestBytesInFlightBudget: while one message is held in memory, a second
// one is accepted when both fit the budget exactly and refused with
// 451 4.3.1 when they are one byte over; a SIZE= that cannot fit now gets
// 452 4.3.1 at MAIL and one that can never fit 552 5.3.4. The budget is
// given back after each message.
func TestBytesInFlightBudget(t *testing.T) {
	first, second := holdMsg("first", 1000), holdMsg("", 500)
	both := cost(first) + cost(second)
	tests := []struct {
		name   string
		budget int64
		code   int
		text   string
	}{
		{"both fit exactly", both, 250, "queued as"},
		{"one byte over", both - 1, 451, "4.3.1 Insufficient system resources"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := startHold(t, Config{MaxBytesInFlight: tt.budget})
			wait := sendHeld(t, h.addr, "first", 1000)
			free := tt.budget - cost(first)
			converse(t, h.addr, []step{{send: "EHLO c", code: 250},
				{send: fmt.Sprintf("MAIL FROM:<a@example.org> SIZE=%d", free+1), code: 452, text: "4.3.1"},
				{send: fmt.Sprintf("MAIL FROM:<a@example.org> SIZE=%d", tt.budget+1), code: 552, text: "5.3.4"},
				{send: fmt.Sprintf("MAIL FROM:<a@example.org> SIZE=%d", free), code: 250},
				{send: "RCPT TO:<b@example.net>", code: 250}, {send: "DATA", code: 354},
				{send: second + ".\r\n", raw: true, code: tt.code, text: tt.text}})
			assert.Equal(t, 250, wait(), "the held message is queued")
			// Everything given back: a message of the whole budget fits.
			whole := holdMsg("", int(tt.budget-2*fieldCost)-len(holdMsg("", 2))+2)
			require.Equal(t, tt.budget, cost(whole))
			converse(t, h.addr, append(hello("a@example.org", "b@example.net"), step{send: "DATA", code: 354},
				step{send: whole + ".\r\n", raw: true, code: 250, text: "queued as"}))
		})
	}
}

// TestMaxHeaderBytes: a header section of exactly the limit is accepted,
// one byte more is refused with 552 5.3.4 (DATA and BDAT), and the session
// goes on.
func TestMaxHeaderBytes(t *testing.T) {
	header := "Subject: x\r\n" + strings.Repeat("X-Pad: "+strings.Repeat("p", 60)+"\r\n", 20)
	h := start(t, Config{MaxHeaderBytes: int64(len(header)), MaxLineLength: 2000})
	over := "Subject: xy\r\n" + header[len("Subject: x\r\n"):] // one byte more
	require.Len(t, over, len(header)+1)
	tests := []struct {
		name, data string
		code       int
		text       string
	}{
		{"DATA at the limit", "DATA\r\n" + header + "\r\nbody\r\n.\r\n", 250, "queued as"},
		{"DATA one byte over", "DATA\r\n" + over + "\r\nbody\r\n.\r\n", 552, "5.3.4 Header section too large"},
		{"BDAT at the limit", bdatCmd(header + "\r\nbody\r\n"), 250, "queued as"},
		{"BDAT one byte over", bdatCmd(over + "\r\nbody\r\n"), 552, "5.3.4 Header section too large"},
		{"all header, no body, over", "DATA\r\n" + over + ".\r\n", 552, "5.3.4"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(h.spool.List())
			steps := hello("a@example.org", "b@example.net")
			if strings.HasPrefix(tt.data, "DATA") {
				steps = append(steps, step{send: "DATA", code: 354}, step{send: strings.TrimPrefix(tt.data, "DATA\r\n"), raw: true, code: tt.code, text: tt.text})
			} else {
				steps = append(steps, step{send: tt.data, raw: true, code: tt.code, text: tt.text})
			}
			converse(t, h.addr, append(steps, step{send: "NOOP", code: 250}))
			want := 0
			if tt.code == 250 {
				want = 1
			}
			assert.Len(t, h.spool.List(), before+want)
		})
	}
}

func bdatCmd(payload string) string { return fmt.Sprintf("BDAT %d LAST\r\n%s", len(payload), payload) }

// TestRefusedEarlyConsumesTheRest: a check that fails in the first bytes
// ends Data at once; go-smtp then consumes the rest of the transfer (the
// rest of DATA up to the dot, the rest of the BDAT chunk and the chunks
// after it, refused) so that none of it is read as commands.
func TestRefusedEarlyConsumesTheRest(t *testing.T) {
	h := start(t, Config{MaxMessageBytes: 1 << 20})
	rest := strings.Repeat("QUIT\r\nNOOP\r\n", 15000) // 180 KB that would be commands: the first ends the session
	chunk := "Subject: x\r\n\r\nbo\x00dy\r\n" + rest
	second := "more\r\n" + rest
	tests := []struct {
		name  string
		steps []step
	}{
		{"DATA", []step{{send: "DATA", code: 354}, {send: "Subject: x\r\n\r\nbo\x00dy\r\n" + rest + ".\r\n", raw: true, code: 554, text: "NUL"}}},
		{"BDAT", []step{
			{send: fmt.Sprintf("BDAT %d\r\n%s", len(chunk), chunk), raw: true, code: 554, text: "NUL"},
			{send: fmt.Sprintf("BDAT %d LAST\r\n%s", len(second), second), raw: true, code: 503, text: "5.5.1 Bad sequence of commands: no valid recipients"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(h.spool.List())
			steps := append(hello("a@example.org", "b@example.net"), tt.steps...)
			converse(t, h.addr, append(steps, step{send: "NOOP", code: 250}))
			assert.Len(t, h.spool.List(), before)
		})
	}
}

// TestBudgetNeverFits: a message larger than the whole budget gets the
// permanent 552 5.3.4, not a 451 that would have it retried forever.
func TestBudgetNeverFits(t *testing.T) {
	h := startHold(t, Config{MaxBytesInFlight: 1000})
	converse(t, h.addr, append(hello("a@example.org", "b@example.net"), step{send: "DATA", code: 354},
		step{send: holdMsg("", 1000) + ".\r\n", raw: true, code: 552, text: "5.3.4 Message too big for system"},
		step{send: "NOOP", code: 250}))
	assert.Empty(t, h.spool.List())
}

// TestSpoolUnwritable: when the spool cannot take the message, whether it
// is small (kept in memory until the entry is written) or large (moved to
// a file during the transfer), the reply is 451 4.3.0 and nothing is
// queued.
func TestSpoolUnwritable(t *testing.T) {
	h := start(t, Config{MaxMessageBytes: 1 << 20})
	tmp := filepath.Join(h.spool.Root(), "tmp")
	require.NoError(t, os.Remove(tmp))
	t.Cleanup(func() { _ = os.Mkdir(tmp, 0o750) })
	for _, size := range []int{100, 3 * spool.IncomingInMemory} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			converse(t, h.addr, append(hello("a@example.org", "b@example.net"), step{send: "DATA", code: 354},
				step{send: "Subject: x\r\n\r\n" + strings.Repeat(strings.Repeat("b", 76)+"\r\n", size/78) + ".\r\n", raw: true, code: 451, text: "4.3.0 Could not queue"},
				step{send: "NOOP", code: 250}))
			assert.Empty(t, h.spool.List())
		})
	}
}
