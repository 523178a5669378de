package ratelimit

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/elemta/elemta/pkg/store/storetest"
	"github.com/elemta/elemta/pluginhost"
	"github.com/elemta/elemta/registry"
)

const accept = "250 2.0.0 OK"

// step is one SMTP event at a time since the start of a case.
type step struct {
	at      time.Duration
	op      string // connect, helo, mail, rcpt, scan (offline, PhaseMessage), end (EndSession)
	session string // "" = s1
	ip      string // "" = 192.0.2.10
	from    string // "" = alice@sender.example
	rcpts   []string
	user    string
	want    string // the reply; "" = accept
}

func (st step) pc(t testing.TB) *registry.ProcessingContext {
	env := registry.Envelope{ClientIP: netip.MustParseAddr(or(st.ip, "192.0.2.10")), HELO: "client.example",
		MailFrom: or(st.from, "alice@sender.example"), RcptTo: st.rcpts, AuthUser: st.user}
	if env.MailFrom == "<>" {
		env.MailFrom = ""
	}
	if env.RcptTo == nil && (st.op == "rcpt" || st.op == "scan") {
		env.RcptTo = []string{"bob@rcpt.example"}
	}
	phase := map[string]registry.Phase{"connect": registry.PhaseConnect, "helo": registry.PhaseHelo,
		"mail": registry.PhaseMail, "rcpt": registry.PhaseRcpt, "scan": registry.PhaseMessage, "end": registry.PhaseMessage}[st.op]
	return newPC(t, or(st.session, "s1"), phase, env)
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func limit(name, key string, count int, window, extra string) string {
	return fmt.Sprintf("[[plugins.ratelimit.limits]]\nname = %q\nkey = [%s]\ncount = %d\nwindow = %q\n%s\n", name, key, count, window, extra)
}

// TestRateLimitTable runs the same cases against bbolt and a real Redis.
func TestRateLimitTable(t *testing.T) {
	const sessionsOff = "max_sessions_per_client = 0\n"
	cases := []struct {
		name     string
		settings string
		steps    []step
	}{
		{"count boundary per client, then one per interval", sessionsOff + limit("msgs", `"ip"`, 3, "1m", ""), []step{
			{op: "mail"}, {op: "mail"}, {op: "mail"},
			{op: "mail", want: `451 4.7.1 Rate limit "msgs" exceeded (3 per 1m0s), try again in 20 seconds`},
			{op: "mail", ip: "192.0.2.11"}, // another client has its own budget
			{at: 19 * time.Second, op: "mail", want: `451 4.7.1 Rate limit "msgs" exceeded (3 per 1m0s), try again in 1 seconds`},
			{at: 20 * time.Second, op: "mail"},
			{at: 20 * time.Second, op: "mail", want: `451 4.7.1 Rate limit "msgs" exceeded (3 per 1m0s), try again in 20 seconds`},
		}},
		{"no double rate at a window edge", sessionsOff + limit("msgs", `"ip"`, 2, "1m", ""), []step{
			{at: 59 * time.Second, op: "mail"}, {at: 59 * time.Second, op: "mail"},
			{at: 61 * time.Second, op: "mail", want: `451 4.7.1 Rate limit "msgs" exceeded (2 per 1m0s), try again in 28 seconds`},
		}},
		{"burst 1 paces", sessionsOff + limit("msgs", `"ip"`, 60, "1m", "burst = 1"), []step{
			{op: "mail"},
			{at: 500 * time.Millisecond, op: "mail", want: `451 4.7.1 Rate limit "msgs" exceeded (60 per 1m0s), try again in 1 seconds`},
			{at: time.Second, op: "mail"},
		}},
		{"network key groups a /24", sessionsOff + limit("net", `"network"`, 1, "1h", ""), []step{
			{op: "mail", ip: "192.0.2.1"},
			{op: "mail", ip: "192.0.2.99", want: `451 4.7.1 Rate limit "net" exceeded (1 per 1h0m0s), try again in 3600 seconds`},
			{op: "mail", ip: "192.0.3.1"},
		}},
		{"sender and client combined", sessionsOff + limit("ip-sender", `"ip", "sender"`, 1, "1h", ""), []step{
			{op: "mail", from: "a@s.example"},
			{op: "mail", from: "b@s.example"},
			{op: "mail", from: "A@S.example", want: `451 4.7.1 Rate limit "ip-sender" exceeded (1 per 1h0m0s), try again in 3600 seconds`},
			{op: "mail", from: "a@s.example", ip: "198.51.100.1"},
		}},
		{"sender domain and null sender", sessionsOff + limit("dom", `"sender_domain"`, 1, "1h", ""), []step{
			{op: "mail", from: "a@s.example"},
			{op: "mail", from: "b@s.example", want: `451 4.7.1 Rate limit "dom" exceeded (1 per 1h0m0s), try again in 3600 seconds`},
			{op: "mail", from: "<>"},
			{op: "mail", from: "<>", want: `451 4.7.1 Rate limit "dom" exceeded (1 per 1h0m0s), try again in 3600 seconds`},
		}},
		{"recipients counted at RCPT, per recipient domain", sessionsOff + limit("rd", `"rcpt_domain"`, 2, "1h", ""), []step{
			{op: "mail"}, {op: "mail"}, {op: "mail"}, // mail does not count rcpt limits
			{op: "rcpt", rcpts: []string{"a@r.example"}},
			{op: "rcpt", rcpts: []string{"a@r.example", "b@R.example"}},
			{op: "rcpt", rcpts: []string{"a@r.example", "b@r.example", "c@r.example"}, want: `451 4.7.1 Rate limit "rd" exceeded (2 per 1h0m0s), try again in 1800 seconds`},
			{op: "rcpt", rcpts: []string{"x@other.example"}},
		}},
		{"user limit only for authenticated sessions", sessionsOff + limit("user", `"user"`, 1, "1h", `on = "rcpt"`), []step{
			{op: "rcpt"}, {op: "rcpt"}, {op: "rcpt"},
			{op: "rcpt", user: "alice"},
			{op: "rcpt", user: "alice", want: `451 4.7.1 Rate limit "user" exceeded (1 per 1h0m0s), try again in 3600 seconds`},
			{op: "rcpt", user: "bob"},
		}},
		{"connection rate: 421", sessionsOff + limit("conn", `"ip"`, 2, "1m", `on = "connect"`), []step{
			{op: "connect"}, {op: "connect"},
			{op: "connect", want: `421 4.7.0 Rate limit "conn" exceeded (2 per 1m0s), try again in 30 seconds`},
			{op: "mail"}, // mail does not count connect limits
		}},
		{"offline scan counts connect, message and each recipient", sessionsOff +
			limit("conn", `"ip"`, 1, "1h", `on = "connect"`) + limit("rc", `"ip"`, 3, "1h", `on = "rcpt"`), []step{
			{op: "scan", rcpts: []string{"a@r.example", "b@r.example"}},
			{op: "rcpt"},
			{op: "rcpt", want: `451 4.7.1 Rate limit "rc" exceeded (3 per 1h0m0s), try again in 1200 seconds`},
			{op: "connect", want: `421 4.7.0 Rate limit "conn" exceeded (1 per 1h0m0s), try again in 3600 seconds`},
		}},
		{"concurrent sessions per client: limit boundary, release, lease expiry", "max_sessions_per_client = 2\nsession_lease = \"10m\"\nlimits = []\n", []step{
			{op: "connect", session: "s1"},
			{op: "connect", session: "s2"},
			{op: "connect", session: "s3", want: "421 4.7.0 Too many concurrent sessions from 192.0.2.10 (limit 2), try again later"},
			{op: "connect", session: "s3", ip: "192.0.2.11"}, // per address by default
			{op: "end", session: "s2"},
			{op: "connect", session: "s3"},
			{at: 9 * time.Minute, op: "mail", session: "s1"},     // renews s1 until 19m
			{at: 10 * time.Minute, op: "connect", session: "s4"}, // s3's lease ended
			{at: 10 * time.Minute, op: "connect", session: "s5", want: "421 4.7.0 Too many concurrent sessions from 192.0.2.10 (limit 2), try again later"}, // s1 and s4
			{at: 19 * time.Minute, op: "connect", session: "s5"},
		}},
		{"concurrent sessions per network", "max_sessions_per_client = 1\nsession_key = \"network\"\nlimits = []\n", []step{
			{op: "connect", session: "s1", ip: "2001:db8::1"},
			{op: "connect", session: "s2", ip: "2001:db8::2", want: "421 4.7.0 Too many concurrent sessions from 2001:db8::2 (limit 1), try again later"},
			{op: "connect", session: "s2", ip: "2001:db8:0:1::2"},
		}},
		{"exempt networks are never limited", sessionsOff + "exempt_networks = [\"192.0.2.0/24\"]\n" + limit("msgs", `"ip"`, 1, "1h", ""), []step{
			{op: "mail"}, {op: "mail"}, {op: "mail"},
			{op: "mail", ip: "198.51.100.1"},
			{op: "mail", ip: "198.51.100.1", want: `451 4.7.1 Rate limit "msgs" exceeded (1 per 1h0m0s), try again in 3600 seconds`},
		}},
		{"several limits: the first exceeded answers", sessionsOff + limit("a", `"ip"`, 5, "1h", "") + limit("b", `"sender"`, 1, "1m", ""), []step{
			{op: "mail"},
			{op: "mail", want: `451 4.7.1 Rate limit "b" exceeded (1 per 1m0s), try again in 60 seconds`},
		}},
	}
	for _, be := range storetest.Backends() {
		t.Run(be.Name, func(t *testing.T) {
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					clock := storetest.NewClock(epoch)
					n := newNode(t, be.TOML(t)+tc.settings, t.TempDir(), clock)
					at := time.Duration(0)
					for i, st := range tc.steps {
						clock.Advance(st.at - at)
						at = st.at
						pc := st.pc(t)
						if st.op == "end" {
							if err := n.plugin().EndSession(context.Background(), pc); err != nil {
								t.Fatal(err)
							}
							continue
						}
						sr := n.run(pc)
						if got, want := reply(sr), or(st.want, accept); got != want {
							t.Fatalf("step %d (+%v %s %s): %q, want %q (%s)", i, st.at, st.op, st.session, got, want, sr.Results[0].Details)
						}
					}
				})
			}
		})
	}
}

// TestConcurrentChecks: 1,000 simultaneous messages against a limit of 100
// let exactly 100 through, and 1,000 simultaneous connections against 100
// session slots get exactly 100, for both stores. Run with -race.
func TestConcurrentChecks(t *testing.T) {
	const callers, limit = 1000, 100
	for _, be := range storetest.Backends() {
		t.Run(be.Name, func(t *testing.T) {
			n := newNode(t, be.TOML(t)+fmt.Sprintf("max_sessions_per_client = %d\n", limit)+
				fmt.Sprintf("[[plugins.ratelimit.limits]]\nname = \"msgs\"\nkey = [\"ip\"]\ncount = %d\nwindow = \"1h\"\n", limit),
				t.TempDir(), storetest.NewClock(epoch))
			for _, op := range []string{"connect", "mail"} {
				t.Run(op, func(t *testing.T) {
					var wg sync.WaitGroup
					var passed, errs atomic.Int64
					start := make(chan struct{})
					for i := range callers {
						pc := step{op: op, session: fmt.Sprintf("session-%d", i)}.pc(t)
						wg.Add(1)
						go func() {
							defer wg.Done()
							<-start
							sr, err := n.m.ExecuteStage(context.Background(), registry.PreReception, pc)
							if err != nil || sr.Results[0].Err != nil {
								errs.Add(1)
								return
							}
							if sr.Verdict.Action == registry.Accept {
								passed.Add(1)
							}
						}()
					}
					close(start)
					wg.Wait()
					if passed.Load() != limit || errs.Load() != 0 {
						t.Fatalf("%d of %d passed (%d errors), want exactly %d", passed.Load(), callers, errs.Load(), limit)
					}
				})
			}
		})
	}
}

// TestTwoNodesShareRedis: two managers on one Redis spend one budget and
// share the session slots.
func TestTwoNodesShareRedis(t *testing.T) {
	settings := storetest.Backends()[1].TOML(t) + "max_sessions_per_client = 1\n" + limit("msgs", `"ip"`, 2, "1h", "")
	clock := storetest.NewClock(epoch)
	a := newNode(t, settings, t.TempDir(), clock)
	b := newNode(t, settings, t.TempDir(), clock)
	if got := reply(a.run(step{op: "connect", session: "a1"}.pc(t))); got != accept {
		t.Fatal(got)
	}
	if got := reply(b.run(step{op: "connect", session: "b1"}.pc(t))); !strings.HasPrefix(got, "421 4.7.0 Too many concurrent sessions") {
		t.Fatalf("second session on node B while node A holds the only slot: %q", got)
	}
	if got := reply(a.run(step{op: "mail", session: "a1"}.pc(t))); got != accept {
		t.Fatal(got)
	}
	if got := reply(b.run(step{op: "mail", session: "b1"}.pc(t))); got != accept {
		t.Fatal(got)
	}
	want := `451 4.7.1 Rate limit "msgs" exceeded (2 per 1h0m0s), try again in 1800 seconds`
	for _, n := range []*node{a, b} {
		if got := reply(n.run(step{op: "mail", session: "a1"}.pc(t))); got != want {
			t.Fatalf("third message on either node: %q, want %q", got, want)
		}
	}
}

// TestStoreOutage: Redis unreachable: on_error (accept by default), the
// outage logged once, the recovery once.
func TestStoreOutage(t *testing.T) {
	addr, prefix := storetest.Redis(t)
	proxy := storetest.NewCutProxy(t, addr)
	settings := fmt.Sprintf("store = \"redis\"\nredis_addr = %q\nredis_prefix = %q\nredis_timeout = \"500ms\"\n", proxy.Addr, prefix) +
		limit("msgs", `"ip"`, 100, "1h", "")
	n := newNode(t, settings, t.TempDir(), storetest.NewClock(epoch))
	if got := reply(n.run(step{op: "mail"}.pc(t))); got != accept {
		t.Fatal(got)
	}
	proxy.Cut()
	for i := range 3 {
		sr := n.run(step{op: "mail"}.pc(t))
		if got := reply(sr); got != accept {
			t.Fatalf("store down, message %d: %q, want on_error's default accept", i, got)
		}
		if err := sr.Results[0].Err; err == nil || !strings.Contains(err.Error(), "rate limit msgs: redis store: rate take") {
			t.Fatalf("store down: error %v does not say what failed", err)
		}
	}
	if c := n.logs.Count(slog.LevelError, "state store unavailable"); c != 1 {
		t.Fatalf("outage logged %d times, want once", c)
	}
	proxy.Restore()
	if sr := n.run(step{op: "mail"}.pc(t)); sr.Results[0].Err != nil {
		t.Fatalf("after recovery: %v", sr.Results[0].Err)
	}
	if c := n.logs.Count(slog.LevelInfo, "state store recovered"); c != 1 {
		t.Fatalf("recovery logged %d times, want once", c)
	}
}

func TestDefaultsAndReplacement(t *testing.T) {
	n := newNode(t, "", t.TempDir(), storetest.NewClock(epoch))
	if got := n.plugin().cfg.Limits; len(got) != 2 || got[0].Name != "client-messages" || got[1].Name != "user-recipients" || got[0].Burst != 600 {
		t.Fatalf("default limits: %+v", got)
	}
	n = newNode(t, limit("only", `"ip"`, 5, "1m", ""), t.TempDir(), storetest.NewClock(epoch))
	if got := n.plugin().cfg.Limits; len(got) != 1 || got[0].Name != "only" || got[0].On != OnMail || got[0].Burst != 5 {
		t.Fatalf("configured limits replace the defaults: %+v", got)
	}
}

func TestConfigValidation(t *testing.T) {
	for _, tc := range []struct {
		settings string
		err      string
	}{
		{"", ""},
		{limit("x", `"ip"`, 0, "1m", ""), "count: 0"},
		{limit("x", `"ip"`, 1, "0s", ""), "window: must be positive"},
		{limit("x", `"ip"`, 1_000_000, "1s", ""), ""},
		{limit("x", `"ip"`, 1_000_001, "1s", ""), "more than one event per microsecond"},
		{limit("x", `"ip"`, 1, "1m", "burst = -1"), "burst"},
		{limit("x", ``, 1, "1m", ""), "key: empty"},
		{limit("x", `"mailbox"`, 1, "1m", ""), `unknown part "mailbox"`},
		{limit("x", `"rcpt"`, 1, "1m", `on = "mail"`), "only known at rcpt"},
		{limit("x", `"sender"`, 1, "1m", `on = "connect"`), "only known at mail"},
		{limit("x", `"ip"`, 1, "1m", `on = "data"`), `"data": want connect, mail or rcpt`},
		{limit("x", `"ip"`, 1, "1m", "") + limit("x", `"ip"`, 1, "1m", ""), "used by two limits"},
		{limit("", `"ip"`, 1, "1m", ""), "name: empty"},
		{"max_sessions_per_client = -1\n", "max_sessions_per_client"},
		{"session_key = \"user\"\n", "session_key"},
		{"session_lease = 0\n", "session_lease"},
		{"ipv4_prefix = 33\n", "ipv4_prefix"},
		{"ipv6_prefix = 15\n", "ipv6_prefix"},
		{"exempt_networks = [\"nope\"]\n", "exempt_networks"},
		{"store = \"sql\"\n", "store"},
		{"bolt_lock_timeout = 0\n", "bolt_lock_timeout"},
	} {
		t.Run(tc.settings, func(t *testing.T) {
			doc := "[plugins]\nplugins = [\"ratelimit\"]\n[plugins.ratelimit]\n" + tc.settings
			// Every invalid value is refused when the config is parsed
			// (`elemta config check`); a valid config also loads.
			_, err := pluginhost.ParseConfig("test.toml", []byte(doc))
			if tc.err == "" {
				if err != nil {
					t.Fatalf("ParseConfig: %v", err)
				}
				if err := storetest.LoadError(t, doc); err != nil {
					t.Fatalf("LoadPlugins: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("ParseConfig: %v, want error containing %q", err, tc.err)
			}
			if strings.Contains(err.Error(), "ratelimit: ") {
				t.Errorf("error %q names the plugin, which the registry does", err)
			}
		})
	}
}

func TestUnknownLimitKeyRejected(t *testing.T) {
	_, err := pluginhost.ParseConfig("test.toml", []byte("[[plugins.ratelimit.limits]]\nname = \"x\"\nper = \"1m\"\n"))
	if err == nil || !strings.Contains(err.Error(), "per") {
		t.Fatalf("unknown key in a limit: %v", err)
	}
}

// TestREADMEExamples: every ```toml block of the README parses and loads.
func TestREADMEExamples(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?s)```toml\n(.*?)```").FindAllSubmatch(readme, -1)
	if len(blocks) == 0 {
		t.Fatal("no toml examples in README.md")
	}
	for i, b := range blocks {
		doc := "[plugins]\nplugins = [\"ratelimit\"]\n" + string(b[1])
		cfg, err := pluginhost.ParseConfig(fmt.Sprintf("README.md example %d", i+1), []byte(doc))
		if err != nil {
			t.Fatalf("example %d:\n%s\n%v", i+1, doc, err)
		}
		settings, err := cfg.Settings("ratelimit")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := New(*settings.Value.(*Config), registry.Host{DataDir: t.TempDir(), Logger: slog.Default(), Clock: registry.SystemClock{}}); err != nil {
			t.Fatalf("example %d: %v", i+1, err)
		}
	}
}
