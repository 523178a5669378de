package greylist

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/elemta/elemta/pkg/store/storetest"
	"github.com/elemta/elemta/pluginhost"
	"github.com/elemta/elemta/registry"
	"github.com/stretchr/testify/require"
)

const (
	accept   = "250 2.0.0 OK"
	greyFull = "451 4.7.1 Greylisted, please try again in 300 seconds"
)

// scan marks a step run as an offline scan (PhaseMessage).
const scan = registry.Phase(-1)

// step is one SMTP event at a time since the start of a case.
type step struct {
	at    time.Duration
	phase registry.Phase // zero: PhaseRcpt; scan: PhaseMessage
	ip    string         // "" = 192.0.2.10
	from  string         // "" = alice@sender.example
	rcpts []string       // nil = bob@rcpt.example
	auth  string
	want  string // the stage's reply
}

// TestGreylistTable runs the same cases against bbolt and a real Redis.
func TestGreylistTable(t *testing.T) {
	cases := []struct {
		name     string
		settings string
		steps    []step
	}{
		{"first sight, delay boundary, pass, renewed", "", []step{
			{at: 0, want: greyFull},
			{at: 299 * time.Second, want: "451 4.7.1 Greylisted, please try again in 1 seconds"},
			{at: 300 * time.Second, want: accept},
			{at: 300*time.Second + 30*24*time.Hour, want: accept},
		}},
		{"retry window boundary", `retry_window = "1h"`, []step{
			{at: 0, want: greyFull},
			{at: time.Hour + time.Second, want: greyFull}, // too late: starts over
			{at: time.Hour + 301*time.Second, want: accept},
		}},
		{"expire boundary", `expire = "1h"` + "\n" + `auto_allow_after = 0`, []step{
			{at: 0, want: greyFull},
			{at: 5 * time.Minute, want: accept},
			{at: 5*time.Minute + time.Hour, want: accept}, // renewed at use
			{at: 5*time.Minute + 2*time.Hour + time.Second, want: greyFull},
		}},
		{"per recipient: one passes, the next is greylisted", "", []step{
			{at: 0, rcpts: []string{"bob@rcpt.example"}, want: greyFull},
			{at: 5 * time.Minute, rcpts: []string{"bob@rcpt.example"}, want: accept},
			{at: 5 * time.Minute, rcpts: []string{"bob@rcpt.example", "carol@rcpt.example"}, want: greyFull},
		}},
		{"recipient case does not matter", "", []step{
			{at: 0, rcpts: []string{"Bob@Rcpt.Example"}, want: greyFull},
			{at: 5 * time.Minute, rcpts: []string{"<bob@rcpt.example>"}, want: accept},
		}},
		{"network /24: a sibling address retries", "", []step{
			{at: 0, ip: "192.0.2.10", want: greyFull},
			{at: 5 * time.Minute, ip: "192.0.2.200", want: accept},
			{at: 5 * time.Minute, ip: "192.0.3.10", want: greyFull},
		}},
		{"ipv4_prefix = 32 keeps addresses apart", "ipv4_prefix = 32", []step{
			{at: 0, ip: "192.0.2.10", want: greyFull},
			{at: 5 * time.Minute, ip: "192.0.2.11", want: greyFull},
		}},
		{"ipv6 /64", "", []step{
			{at: 0, ip: "2001:db8:1:2::1", want: greyFull},
			{at: 5 * time.Minute, ip: "2001:db8:1:2:ffff::9", want: accept},
			{at: 5 * time.Minute, ip: "2001:db8:1:3::1", want: greyFull},
		}},
		{"sub-address stripped by default", "", []step{
			{at: 0, from: "alice+1234@sender.example", want: greyFull},
			{at: 5 * time.Minute, from: "alice+5678@sender.example", want: accept},
		}},
		{"sub-address kept when asked", "strip_subaddress = false", []step{
			{at: 0, from: "alice+1234@sender.example", want: greyFull},
			{at: 5 * time.Minute, from: "alice+5678@sender.example", want: greyFull},
		}},
		{"BATV and SRS tags undone", "", []step{
			{at: 0, from: "prvs=1234abcd=alice@sender.example", want: greyFull},
			{at: 5 * time.Minute, from: "prvs=9999ffff=alice@sender.example", want: accept},
			{at: 5 * time.Minute, from: "SRS0=HHH=TT=sender.example=alice@forwarder.example", want: accept},
		}},
		{"null sender", "", []step{
			{at: 0, from: "<>", want: greyFull},
			{at: 5 * time.Minute, from: "<>", want: accept},
		}},
		{"auto-allow after 2 passed triplets, not 1", "auto_allow_after = 2", []step{
			{at: 0, rcpts: []string{"a@rcpt.example"}, want: greyFull},
			{at: 0, rcpts: []string{"b@rcpt.example"}, want: greyFull},
			{at: 5 * time.Minute, rcpts: []string{"a@rcpt.example"}, want: accept},
			{at: 5 * time.Minute, rcpts: []string{"c@rcpt.example"}, want: greyFull},
			{at: 5 * time.Minute, rcpts: []string{"b@rcpt.example"}, want: accept},
			{at: 5 * time.Minute, rcpts: []string{"d@rcpt.example"}, want: accept},
			{at: 5 * time.Minute, ip: "198.51.100.1", rcpts: []string{"d@rcpt.example"}, want: greyFull},
		}},
		{"exempt: authenticated, CIDR, recipient domain", `exempt_networks = ["198.51.100.0/24", "203.0.113.7"]` + "\n" +
			`exempt_recipient_domains = ["partner.example", ".sub.example"]`, []step{
			{at: 0, auth: "alice", want: accept},
			{at: 0, ip: "198.51.100.77", want: accept},
			{at: 0, ip: "203.0.113.7", want: accept},
			{at: 0, ip: "203.0.113.8", want: greyFull},
			{at: 0, rcpts: []string{"x@partner.example"}, want: accept},
			{at: 0, rcpts: []string{"x@a.sub.example"}, want: accept},
			{at: 0, rcpts: []string{"x@sub.example"}, want: greyFull},
			{at: 0, ip: "127.0.0.1", want: greyFull}, // the list replaced the loopback default
		}},
		{"exempt recipient domain, internationalized", `exempt_recipient_domains = ["bücher.example", ".xn--r8jz45g.xn--zckzah"]`, []step{
			{at: 0, rcpts: []string{"x@xn--bcher-kva.example"}, want: accept}, // the A-label of the listed UTF-8 name
			{at: 0, rcpts: []string{"x@BÜCHER.example"}, want: accept},
			{at: 0, rcpts: []string{"x@mail.例え.テスト"}, want: accept}, // a subdomain, written in UTF-8
			{at: 0, rcpts: []string{"x@buecher.example"}, want: greyFull},
		}},
		{"authenticated not exempt when asked", "exempt_authenticated = false", []step{
			{at: 0, auth: "alice", want: greyFull},
		}},
		{"loopback exempt by default", "", []step{
			{at: 0, ip: "127.0.0.1", want: accept},
			{at: 0, ip: "::1", want: accept},
		}},
		{"phases before RCPT pass without a check", "", []step{
			{at: 0, phase: registry.PhaseConnect, want: accept},
			{at: 0, phase: registry.PhaseHelo, want: accept},
			{at: 0, phase: registry.PhaseMail, want: accept},
			{at: 0, want: greyFull}, // so nothing was recorded above
		}},
		{"offline scan checks every recipient", "", []step{
			{at: 0, phase: scan, rcpts: []string{"a@rcpt.example", "b@rcpt.example"}, want: greyFull},
			{at: 5 * time.Minute, rcpts: []string{"a@rcpt.example"}, want: accept},
			{at: 5 * time.Minute, rcpts: []string{"a@rcpt.example", "b@rcpt.example"}, want: accept},
		}},
		{"the hint counts down to the latest recipient", "", []step{
			{at: 0, rcpts: []string{"a@rcpt.example"}, want: greyFull},
			{at: time.Minute, phase: scan, rcpts: []string{"a@rcpt.example", "b@rcpt.example"}, want: greyFull},
		}},
	}
	for _, be := range storetest.Backends() {
		t.Run(be.Name, func(t *testing.T) {
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					clock := storetest.NewClock(epoch)
					n := newNode(t, be.TOML(t)+tc.settings+"\n", t.TempDir(), clock)
					at := time.Duration(0)
					for i, st := range tc.steps {
						clock.Advance(st.at - at)
						at = st.at
						env := registry.Envelope{ClientIP: netip.MustParseAddr(or(st.ip, "192.0.2.10")),
							MailFrom: or(st.from, "alice@sender.example"), RcptTo: st.rcpts, AuthUser: st.auth}
						if env.MailFrom == "<>" {
							env.MailFrom = ""
						}
						if env.RcptTo == nil {
							env.RcptTo = []string{"bob@rcpt.example"}
						}
						phase := st.phase
						switch phase {
						case registry.PhaseMessage:
							phase = registry.PhaseRcpt
						case scan:
							phase = registry.PhaseMessage
						}
						sr := n.run(phase, env)
						if got := reply(sr); got != st.want {
							t.Fatalf("step %d (+%v %s %s -> %v): %q, want %q (%s)", i, st.at, env.ClientIP, env.MailFrom,
								env.RcptTo, got, st.want, sr.Results[0].Details)
						}
					}
				})
			}
		})
	}
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// TestSPFPassExemption: with exempt_spf_pass, the SPF plugin's result (read
// with registry.Find from an earlier plugin) exempts the sender.
func TestSPFPassExemption(t *testing.T) {
	for _, tc := range []struct {
		name     string
		settings string
		spf      *registry.SPFResult
		want     string
	}{
		{"pass exempts", "exempt_spf_pass = true", &registry.SPFResult{Result: registry.AuthPass, Identity: "mailfrom", Domain: "sender.example"}, accept},
		{"off by default", "", &registry.SPFResult{Result: registry.AuthPass, Identity: "mailfrom"}, greyFull},
		{"softfail does not", "exempt_spf_pass = true", &registry.SPFResult{Result: registry.AuthSoftFail, Identity: "mailfrom"}, greyFull},
		{"a HELO pass does not", "exempt_spf_pass = true", &registry.SPFResult{Result: registry.AuthPass, Identity: "helo"}, greyFull},
		{"no SPF result", "exempt_spf_pass = true", nil, greyFull},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := newNodeWith(t, []string{"greylist", "spf"}, tc.settings+"\n", t.TempDir(), storetest.NewClock(epoch))
			pc := newPC(t, registry.PhaseRcpt, registry.Envelope{ClientIP: netip.MustParseAddr("192.0.2.1"),
				MailFrom: "alice@sender.example", RcptTo: []string{"bob@rcpt.example"}})
			spfResult.Store(tc.spf)
			defer spfResult.Store(nil)
			if got := reply(n.runPC(pc)); got != tc.want {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
}

// TestTwoNodesShareRedis: two managers on one Redis see one greylist: the
// first sight on node A and the retry on node B passes.
func TestTwoNodesShareRedis(t *testing.T) {
	be := storetest.Backends()[1]
	settings := be.TOML(t)
	clock := storetest.NewClock(epoch)
	a := newNode(t, settings, t.TempDir(), clock)
	b := newNode(t, settings, t.TempDir(), clock)
	if got := reply(a.rcpt("192.0.2.1", "alice@sender.example", "bob@rcpt.example")); got != greyFull {
		t.Fatalf("node A, first sight: %q", got)
	}
	clock.Advance(5 * time.Minute)
	if got := reply(b.rcpt("192.0.2.1", "alice@sender.example", "bob@rcpt.example")); got != accept {
		t.Fatalf("node B, retry after the delay: %q, want accept (state shared through Redis)", got)
	}
	// And B's first sight is A's too.
	b.rcpt("192.0.2.1", "alice@sender.example", "carol@rcpt.example")
	clock.Advance(time.Minute)
	if got := reply(a.rcpt("192.0.2.1", "alice@sender.example", "carol@rcpt.example")); got != "451 4.7.1 Greylisted, please try again in 240 seconds" {
		t.Fatalf("node A after B's first sight: %q", got)
	}
}

// TestBoltRestartKeepsPasses: a restarted node remembers passed triplets.
func TestBoltRestartKeepsPasses(t *testing.T) {
	dir := t.TempDir()
	clock := storetest.NewClock(epoch)
	a := newNode(t, "", dir, clock)
	a.rcpt("192.0.2.1", "alice@sender.example", "bob@rcpt.example")
	clock.Advance(5 * time.Minute)
	if got := reply(a.rcpt("192.0.2.1", "alice@sender.example", "bob@rcpt.example")); got != accept {
		t.Fatalf("before restart: %q", got)
	}
	if err := a.m.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir + "/greylist/greylist.db"); err != nil {
		t.Fatalf("default bolt_path: %v", err)
	}
	clock.Advance(24 * time.Hour)
	b := newNode(t, "", dir, clock)
	if got := reply(b.rcpt("192.0.2.1", "alice@sender.example", "bob@rcpt.example")); got != accept {
		t.Fatalf("after restart: %q, want the pass remembered", got)
	}
}

// TestStoreOutage: with Redis unreachable, on_error applies (accept by
// default, tempfail when configured), the outage is logged once however
// many messages come, and the recovery once.
func TestStoreOutage(t *testing.T) {
	addr, prefix := storetest.Redis(t)
	for _, tc := range []struct {
		onError string
		want    string
	}{
		{"", accept},
		{`on_error = "tempfail"`, "451 4.3.0 Message checks temporarily unavailable, try again later"},
	} {
		t.Run(or(tc.onError, "default"), func(t *testing.T) {
			proxy := storetest.NewCutProxy(t, addr)
			settings := fmt.Sprintf("store = \"redis\"\nredis_addr = %q\nredis_prefix = %q\nredis_timeout = \"500ms\"\n%s\n", proxy.Addr, prefix+t.Name(), tc.onError)
			n := newNode(t, settings, t.TempDir(), storetest.NewClock(epoch))
			if got := reply(n.rcpt("192.0.2.1", "a@s.example", "b@r.example")); got != greyFull {
				t.Fatalf("with the store up: %q", got)
			}
			proxy.Cut()
			for i := range 3 {
				sr := n.rcpt("192.0.2.1", "a@s.example", fmt.Sprintf("r%d@r.example", i))
				if got := reply(sr); got != tc.want {
					t.Fatalf("store down, message %d: %q, want %q", i, got, tc.want)
				}
				if sr.Results[0].Err == nil || !strings.Contains(sr.Results[0].Err.Error(), "redis store: greylist check") {
					t.Fatalf("store down: error %v does not say what failed", sr.Results[0].Err)
				}
			}
			if c := n.logs.Count(slog.LevelError, "state store unavailable"); c != 1 {
				t.Fatalf("outage logged %d times, want once", c)
			}
			proxy.Restore()
			if got := reply(n.rcpt("192.0.2.1", "a@s.example", "b@r.example")); got != "451 4.7.1 Greylisted, please try again in 300 seconds" {
				t.Fatalf("after recovery: %q", got)
			}
			if c := n.logs.Count(slog.LevelInfo, "state store recovered"); c != 1 {
				t.Fatalf("recovery logged %d times, want once", c)
			}
		})
	}
}

// TestRedisDownAtStart: an unreachable Redis does not stop Elemta starting.
func TestRedisDownAtStart(t *testing.T) {
	n := newNode(t, "store = \"redis\"\nredis_addr = \"127.0.0.1:1\"\nredis_timeout = \"200ms\"\n", t.TempDir(), storetest.NewClock(epoch))
	if c := n.logs.Count(slog.LevelError, "state store unavailable"); c != 1 {
		t.Fatalf("outage at start logged %d times, want once", c)
	}
	if err := n.m.HealthCheck(context.Background(), "greylist"); err == nil {
		t.Fatal("health check with Redis down: no error")
	}
	if got := reply(n.rcpt("192.0.2.1", "a@s.example", "b@r.example")); got != accept {
		t.Fatalf("check with Redis down: %q, want on_error's default accept", got)
	}
}

func TestConfigValidation(t *testing.T) {
	for _, tc := range []struct {
		settings string
		err      string // "" = valid
	}{
		{"", ""},
		{`delay = 0`, "delay: must be positive"},
		{`delay = "1h"` + "\n" + `retry_window = "59m"`, "retry_window"},
		{`delay = "1h"` + "\n" + `retry_window = "1h"`, ""},
		{`expire = 0`, "expire: must be positive"},
		{"ipv4_prefix = 7", "ipv4_prefix: 7"},
		{"ipv4_prefix = 8", ""},
		{"ipv4_prefix = 32", ""},
		{"ipv4_prefix = 33", "ipv4_prefix: 33"},
		{"ipv6_prefix = 15", "ipv6_prefix: 15"},
		{"ipv6_prefix = 128", ""},
		{"ipv6_prefix = 129", "ipv6_prefix: 129"},
		{"auto_allow_after = -1", "auto_allow_after"},
		{"auto_allow_after = 0", ""},
		{`exempt_networks = ["10.0.0.0/33"]`, "exempt_networks"},
		{`exempt_recipient_domains = ["a@b"]`, "exempt_recipient_domains"},
		{`exempt_recipient_domains = [".a\u200db.example"]`, "is not a valid internationalized domain name"},
		{`subaddress_separators = ""`, "subaddress_separators"},
		{`store = "memcached"`, `store: "memcached"`},
		{`store = "redis"` + "\n" + `redis_addr = "127.0.0.1:0"`, "redis_addr"},
		{`bolt_sweep_interval = 0`, "bolt_sweep_interval"},
		{`bolt_lock_timeout = 0`, "bolt_lock_timeout"},
	} {
		t.Run(tc.settings, func(t *testing.T) {
			doc := "[plugins]\nplugins = [\"greylist\"]\n[plugins.greylist]\n" + tc.settings + "\n"
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
			if strings.Contains(err.Error(), "greylist: ") {
				t.Errorf("error %q names the plugin, which the registry does", err)
			}
		})
	}
}

func TestUnknownKeyRejected(t *testing.T) {
	_, err := pluginhost.ParseConfig("test.toml", []byte("[plugins.greylist]\ndelay_seconds = 3\n"))
	if err == nil || !strings.Contains(err.Error(), "delay_seconds") {
		t.Fatalf("unknown key: %v", err)
	}
}

func TestNormalizeSender(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		strip    bool
		seps     string
		tags     bool
	}{
		{"", "<>", true, "+", true},
		{"<Alice@Example.COM>", "alice@example.com", true, "+", true},
		{"alice+tag@example.com", "alice@example.com", true, "+", true},
		{"alice+tag@example.com", "alice+tag@example.com", false, "+", true},
		{"alice-tag@example.com", "alice@example.com", true, "+-", true},
		{"+alice@example.com", "+alice@example.com", true, "+", true}, // a separator first is part of the name
		{"prvs=0123abcdef=alice@example.com", "alice@example.com", true, "+", true},
		{"prvs=0123abcdef=alice@example.com", "prvs=0123abcdef=alice@example.com", true, "+", false},
		{"msprvs1=18113abcd=alice@example.com", "alice@example.com", true, "+", true},
		{"btv1==123abcd==alice@example.com", "alice@example.com", true, "+", true},
		{"SRS0=HHH=TT=orig.example=alice@fwd.example", "alice@orig.example", true, "+", true},
		{"SRS0+HHH=TT=orig.example=al=ice@fwd.example", "al=ice@orig.example", true, "+", true},
		{"SRS1=HHH=fwd1.example==HHH=TT=orig.example=alice@fwd2.example", "alice@orig.example", true, "+", true},
		{"srs0=broken@fwd.example", "srs0=broken@fwd.example", true, "+", true},
		{"no-at-sign", "no-at-sign", true, "+", true},
	} {
		if got := NormalizeSender(tc.in, tc.strip, tc.seps, tc.tags); got != tc.want {
			t.Errorf("NormalizeSender(%q, %v, %q, %v) = %q, want %q", tc.in, tc.strip, tc.seps, tc.tags, got, tc.want)
		}
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
		doc := string(b[1])
		if !strings.Contains(doc, "[plugins]") {
			doc = "[plugins]\nplugins = [\"greylist\"]\n" + doc
		}
		cfg, err := pluginhost.ParseConfig(fmt.Sprintf("README.md example %d", i+1), []byte(doc))
		if err != nil {
			t.Fatalf("example %d:\n%s\n%v", i+1, doc, err)
		}
		settings, err := cfg.Settings("greylist")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := New(*settings.Value.(*Config), registry.Host{DataDir: t.TempDir(), Logger: slog.Default(), Clock: registry.SystemClock{}}); err != nil {
			t.Fatalf("example %d: %v", i+1, err)
		}
	}
}

// TestBoltLockTimeout: a node whose bbolt file another process holds fails
// to start after bolt_lock_timeout, naming the file. (A second manager in
// the same process, a config reload, shares the open file: pkg/store.)
func TestBoltLockTimeout(t *testing.T) {
	dir := t.TempDir()
	clock := storetest.NewClock(epoch)
	path := filepath.Join(dir, "greylist", "greylist.db")
	require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o750))
	other, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	require.NoError(t, err)
	defer other.Close()
	// bbolt's lock is an flock of its open file description: ours is the
	// other process's.
	require.NoError(t, syscall.Flock(int(other.Fd()), syscall.LOCK_EX|syscall.LOCK_NB))
	cfg, err := pluginhost.ParseConfig("test.toml", []byte("[plugins]\nplugins = [\"greylist\"]\n[plugins.greylist]\nbolt_lock_timeout = \"100ms\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	m := pluginhost.NewManager(cfg, pluginhost.WithHost(registry.Host{DataDir: dir, Clock: clock}))
	err = m.LoadPlugins(context.Background())
	m.Close()
	if err == nil || !strings.Contains(err.Error(), "greylist.db") || !strings.Contains(err.Error(), "timeout") {
		t.Fatalf("node on a locked file: %v, want a lock timeout naming the file", err)
	}
	require.NoError(t, syscall.Flock(int(other.Fd()), syscall.LOCK_UN))
	a := newNode(t, "bolt_lock_timeout = \"100ms\"\n", dir, clock)
	if got := reply(a.rcpt("192.0.2.1", "a@s.example", "b@r.example")); got != greyFull {
		t.Fatalf("node started once the lock was released: %q", got)
	}
}
