// Package registrytest checks a plugin against the registry's contract. A
// plugin's tests make one call:
//
//	func TestContract(t *testing.T) {
//		registrytest.Run(t, "clamav", clamav.New, registrytest.Options{
//			Config: `servers = ["` + fakeClamd(t) + `"]`,
//		})
//	}
//
// Run checks, each as a subtest:
//
//   - metadata: the plugin registered under that name with a description,
//     at least one type, valid stages and a semantic version (if any);
//   - default-config: New succeeds on the registered default config and
//     Validate (if implemented) accepts it;
//   - unknown-key: a [plugins.<name>] table with an unknown key is rejected
//     with an error naming the key;
//   - parse-then-new: every config parsing accepts, New builds: the
//     defaults, Options.Config, Options.SlowConfig and each of
//     Options.Configs is parsed as `elemta config check` does, and when
//     parsing accepts it New (and the plugin's Validate, if any) must too.
//     A check of the config belongs in the config type's Validate, which
//     runs at parse time, so that `config check` is the whole truth;
//   - close-without-start: Close (if implemented) is safe on a plugin that
//     was built but never started, and safe to call twice;
//   - lifecycle: loaded through a Manager (New, Validate, Start), its health
//     check passes, then Close twice, and no goroutine it started is left;
//   - concurrent-messages: Options.Concurrency goroutines run every stage
//     of the plugin over the sample messages at once (run the tests with
//     -race for this to mean anything); no result may panic or time out;
//   - cancellation: with a cancelled context the plugin returns within
//     Options.CancelWithin, also when the context is cancelled while it
//     works (point Options.SlowConfig at Blackhole to make it wait);
//   - isolated: lifecycle, concurrent-messages and cancellation again with
//     isolation = "process" (the plugin in a worker process), and
//     same-results: every sample message through every stage gives the
//     same verdict, score, header changes, Data, details and error
//     in-process and isolated (each run with its own data directory and a
//     fixed clock). It needs the test binary to serve as the worker:
//     func TestMain(m *testing.M) { registrytest.Main(m) }.
//
// Plugins that need a service set Options.Config to a test double; with
// Options.Offline only the checks that never call Start run. Do not call
// t.Parallel in a test that calls Run: the goroutine check counts the
// whole process.
//
// The package also holds what a plugin's own tests keep needing: Settings
// decodes a config document as Elemta does, Server stands in for a daemon
// (Blackhole for one that never answers, ClosedAddr for one that is down),
// CheckLeaks fails a test that leaves goroutines running, and Resolver
// answers DNS from a zone text with the production resolver's errors
// (Fail injects SERVFAIL, timeouts and hangs; EachDNSFailure and
// RequireDNSError test a plugin's handling of them).
package registrytest

import (
	"context"
	"fmt"
	"net/netip"
	"reflect"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/mod/semver"
	"golang.org/x/sync/errgroup"

	"github.com/elemta/elemta/pluginhost"
	"github.com/elemta/elemta/registry"
)

// Options tune Run. The zero value suits a plugin that needs no service.
type Options struct {
	// Config is the body of the [plugins.<name>] table (TOML) used for
	// every check that builds the plugin through a Manager, e.g.
	// `socket = "/tmp/x.sock"`. Empty means the defaults.
	Config string
	// SlowConfig, when set, is a config under which the plugin's work
	// blocks (its server accepts and never answers; see Blackhole). The
	// cancellation check then proves the plugin gives up when its context
	// is cancelled instead of waiting for its own timeouts.
	SlowConfig string
	// Host is handed to the plugin; unset fields get the registry's
	// defaults, except that the logger writes to t.Log and the resolver
	// is an empty Resolver (every name NXDOMAIN): a plugin under test
	// never asks the system's DNS. Set it to NewResolver(t, zone) to
	// give the plugin records.
	Host registry.Host
	// Messages are raw RFC 5322 messages for the concurrency check;
	// default: SampleMessages.
	Messages [][]byte
	// Envelope of every message; default: SampleEnvelope.
	Envelope *registry.Envelope
	// Concurrency is how many goroutines run messages at once (default 8).
	Concurrency int
	// CancelWithin is how soon after cancellation the plugin must return
	// (default 2s).
	CancelWithin time.Duration
	// AllowErrors accepts plugin errors on the sample messages (a plugin
	// whose test double refuses them on purpose). Panics and timeouts are
	// never accepted.
	AllowErrors bool
	// LeakWait is how long goroutines get to end after Close before the
	// plugin is said to leak them (default 5s).
	LeakWait time.Duration
	// Configs are more bodies of the [plugins.<name>] table for the
	// parse-then-new check: the plugin's documented examples and the
	// invalid values its README lists. Each must be rejected by parsing
	// or built by New; a config that parses and then fails in New is a
	// check `elemta config check` misses.
	Configs []string
	// Offline skips the checks that start the plugin (lifecycle,
	// concurrent-messages, cancellation): for plugins whose service is not
	// available to this test.
	Offline bool
	// Normalize, if set, is applied to a copy of every result (its
	// AddHeaders copied too) before the isolated same-results check
	// compares the in-process and isolated runs: for what a plugin writes
	// that neither the host's clock nor its config decides (go-msgauth's
	// DKIM signer stamps t= from the system clock, and the signature
	// covers it).
	Normalize func(*registry.Result)
}

func (o *Options) defaults() {
	if len(o.Messages) == 0 {
		o.Messages = SampleMessages()
	}
	if o.Envelope == nil {
		env := SampleEnvelope()
		o.Envelope = &env
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 8
	}
	if o.CancelWithin <= 0 {
		o.CancelWithin = 2 * time.Second
	}
	if o.LeakWait <= 0 {
		o.LeakWait = 5 * time.Second
	}
}

// Run checks the plugin registered as name, whose constructor is newFn (the
// New of its registry.Module), against the registry's contract. See the
// package documentation for the checks.
func Run[C any, P any](t *testing.T, name string, newFn func(C, registry.Host) (P, error), opts Options) {
	t.Helper()
	opts.defaults()
	k := &kit[C, P]{name: name, newFn: newFn, opts: opts}
	t.Run("metadata", k.metadata)
	t.Run("default-config", k.defaultConfig)
	t.Run("unknown-key", k.unknownKey)
	t.Run("parse-then-new", k.parseThenNew)
	t.Run("close-without-start", k.closeWithoutStart)
	if opts.Offline {
		t.Log("registrytest: Offline: lifecycle, concurrent-messages and cancellation skipped")
		return
	}
	t.Run("lifecycle", k.lifecycle)
	t.Run("concurrent-messages", k.concurrentMessages)
	t.Run("cancellation", k.cancellation)
	t.Run("isolated", k.isolated)
}

type kit[C any, P any] struct {
	name  string
	newFn func(C, registry.Host) (P, error)
	opts  Options
}

func (k *kit[C, P]) metadata(t *testing.T) {
	info, ok := pluginhost.Lookup(k.name)
	require.True(t, ok, "no plugin %q registered: does the package's init call registry.Register with that name? registered: %v", k.name, names())
	assert.Equal(t, k.name, info.Name)
	assert.NotEmpty(t, info.Description, "Module.Description: say in one line what the plugin does")
	assert.NotEmpty(t, info.Types, "Module.Types")
	for _, s := range info.Stages {
		assert.Falsef(t, strings.HasPrefix(s.String(), "stage("), "Module.Stages holds unknown stage %d", int(s))
	}
	if info.Version != "" {
		v := info.Version
		if !strings.HasPrefix(v, "v") {
			v = "v" + v
		}
		assert.Truef(t, semver.IsValid(v), "Module.Version %q is not a semantic version (e.g. 1.2.0)", info.Version)
	}
	assert.NotEmpty(t, info.Package)
	if pkg := funcPackage(k.newFn); pkg != "" && info.Package != "" {
		assert.Equalf(t, info.Package, pkg, "plugin %q was registered by %s, but the constructor under test is from %s", k.name, info.Package, pkg)
	}
}

// funcPackage returns the import path of the package that defines fn.
func funcPackage(fn any) string {
	f := runtime.FuncForPC(reflect.ValueOf(fn).Pointer())
	if f == nil {
		return ""
	}
	full := f.Name() // example.com/x/plugins/foo.New or ...foo.(*T).New-fm
	slash := strings.LastIndexByte(full, '/')
	if dot := strings.IndexByte(full[slash+1:], '.'); dot >= 0 {
		return full[:slash+1+dot]
	}
	return ""
}

// defaults returns a fresh copy of the registered default config.
func (k *kit[C, P]) defaults(t *testing.T) C {
	t.Helper()
	v, ok := pluginhost.DefaultConfig(k.name)
	require.True(t, ok, "no plugin %q registered", k.name)
	c, ok := v.(*C)
	require.Truef(t, ok, "the registered config type is %T, but the constructor under test takes %T", v, new(C))
	return *c
}

func (k *kit[C, P]) host(t *testing.T) registry.Host {
	h := k.opts.Host
	if h.Instance == "" {
		h.Instance = k.name
	}
	if h.Logger == nil {
		h.Logger = testLogger(t)
	}
	if h.Resolver == nil {
		h.Resolver = NewResolver(t, "") // never the system's DNS
	}
	if h.Metrics == nil {
		h.Metrics = registry.NopMetrics{}
	}
	return h
}

// build constructs the plugin from cfg without starting it.
func (k *kit[C, P]) build(t *testing.T, cfg C) P {
	t.Helper()
	p, err := k.newFn(cfg, k.host(t))
	require.NoError(t, err, "New on the default config")
	require.False(t, isNil(p), "New returned nil without an error")
	return p
}

func (k *kit[C, P]) defaultConfig(t *testing.T) {
	p := k.build(t, k.defaults(t))
	defer closeChecked(t, p, "Close without Start")
	if v, ok := any(p).(registry.Validator); ok {
		assert.NoError(t, v.Validate(), "Validate rejects the plugin's own default config")
	}
}

func (k *kit[C, P]) unknownKey(t *testing.T) {
	const key = "no_such_key_registrytest"
	// The key goes first: Options.Config may end inside a sub-table
	// ([[plugins.<name>.rules]]) where it would land otherwise.
	doc := fmt.Sprintf("[plugins]\nplugins = [%q]\n\n[plugins.%s]\n%s = 1\n%s\n", k.name, k.name, key, k.opts.Config)
	_, err := pluginhost.ParseConfig("registrytest.toml", []byte(doc))
	require.Error(t, err, "an unknown key in [plugins.%s] must be an error (is the config type a map, or has it an inline catch-all?)", k.name)
	assert.Contains(t, err.Error(), key, "the error must name the unknown key")
	assert.Contains(t, err.Error(), "registrytest.toml:", "the error must name the file and line")
}

func (k *kit[C, P]) parseThenNew(t *testing.T) {
	bodies := append([]string{"", k.opts.Config, k.opts.SlowConfig}, k.opts.Configs...)
	for i, body := range bodies {
		if i > 0 && i < 3 && body == "" {
			continue // Config or SlowConfig unset
		}
		doc := fmt.Sprintf("[plugins]\nplugins = [%q]\n\n[plugins.%s]\n%s\n", k.name, k.name, body)
		cfg, err := pluginhost.ParseConfig("registrytest.toml", []byte(doc))
		if err != nil {
			t.Logf("config %d rejected at parse time (fine): %v", i, err)
			continue
		}
		pc, err := cfg.Settings(k.name)
		require.NoError(t, err)
		c, ok := pc.Value.(*C)
		require.Truef(t, ok, "the registered config type is %T, but the constructor under test takes %T", pc.Value, new(C))
		p, err := k.newFn(*c, k.host(t))
		if err != nil {
			t.Errorf("New rejects a config that parsing (and so `elemta config check`) accepts; move the check into the config type's Validate:\n[plugins.%s]\n%s\nerror: %v", k.name, body, err)
			continue
		}
		if v, ok := any(p).(registry.Validator); ok {
			if err := v.Validate(); err != nil {
				t.Errorf("the plugin's Validate rejects a config that parsing accepts; move the check into the config type's Validate:\n[plugins.%s]\n%s\nerror: %v", k.name, body, err)
			}
		}
		closeChecked(t, p, "Close without Start")
	}
}

func (k *kit[C, P]) closeWithoutStart(t *testing.T) {
	before := goroutines()
	p := k.build(t, k.defaults(t))
	c, ok := any(p).(registry.Closer)
	if !ok {
		t.Log("no Close method: nothing to check")
		return
	}
	closeChecked(t, c, "Close without Start")
	closeChecked(t, c, "second Close without Start")
	requireNoLeak(t, before, k.opts.LeakWait)
}

// config parses the [plugins] document for the plugin with table body.
func (k *kit[C, P]) config(t *testing.T, body string) *pluginhost.Config {
	t.Helper()
	doc := fmt.Sprintf("[plugins]\nplugins = [%q]\n\n[plugins.%s]\n%s\n", k.name, k.name, body)
	cfg, err := pluginhost.ParseConfig("registrytest.toml", []byte(doc))
	require.NoError(t, err, "config:\n%s", doc)
	return cfg
}

// load builds, validates and starts the plugin through a Manager.
func (k *kit[C, P]) load(t *testing.T, body string) *pluginhost.Manager {
	t.Helper()
	m := pluginhost.NewManager(k.config(t, body), pluginhost.WithHost(k.host(t)))
	require.NoError(t, m.LoadPlugins(context.Background()), "load %s (a plugin that needs a service gets a test double through Options.Config, or Options.Offline)", k.name)
	return m
}

func (k *kit[C, P]) lifecycle(t *testing.T) {
	before := goroutines()
	m := k.load(t, k.opts.Config)
	impl, ok := m.Plugin(k.name)
	require.True(t, ok)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	assert.NoError(t, m.HealthCheck(ctx, k.name), "health check")
	assert.NoError(t, m.Close(), "Close after Start")
	if c, ok := impl.(registry.Closer); ok {
		closeChecked(t, c, "second Close after Start")
	}
	requireNoLeak(t, before, k.opts.LeakWait)
}

func (k *kit[C, P]) concurrentMessages(t *testing.T) {
	info, _ := pluginhost.Lookup(k.name)
	if len(info.Stages) == 0 {
		t.Skip("the plugin runs in no stage")
	}
	if !raceEnabled {
		t.Log("registrytest: run with -race to check for data races")
	}
	before := goroutines()
	m := k.load(t, k.opts.Config)
	defer func() {
		assert.NoError(t, m.Close())
		requireNoLeak(t, before, k.opts.LeakWait)
	}()

	msgs := k.opts.Messages
	var g errgroup.Group
	// All goroutines start their first message together.
	start := make(chan struct{})
	var mu sync.Mutex
	var problems []string
	for w := range k.opts.Concurrency {
		g.Go(func() error {
			<-start
			for i := range msgs {
				raw := msgs[(i+w)%len(msgs)]
				msg, err := registry.ParseMessage(raw, *k.opts.Envelope)
				if err != nil {
					return fmt.Errorf("sample message %d: %w", (i+w)%len(msgs), err)
				}
				pc := registry.NewProcessingContext(msg, &registry.Session{ID: fmt.Sprintf("kit-%d-%d", w, i), Hostname: "mx.example.net"})
				for _, stage := range info.Stages {
					sr, err := m.ExecuteStage(context.Background(), stage, pc)
					if err != nil {
						return fmt.Errorf("stage %s: %w", stage, err)
					}
					for _, r := range sr.Results {
						if p := k.problem(r); p != "" {
							mu.Lock()
							problems = append(problems, fmt.Sprintf("message %d, stage %s: %s", (i+w)%len(msgs), stage, p))
							mu.Unlock()
						}
					}
				}
			}
			return nil
		})
	}
	close(start)
	require.NoError(t, g.Wait())
	slices.Sort(problems)
	assert.Empty(t, slices.Compact(problems))
}

func (k *kit[C, P]) problem(r *registry.Result) string {
	switch {
	case r.Panicked:
		return fmt.Sprintf("panicked: %v", r.Err)
	case r.TimedOut:
		return fmt.Sprintf("timed out after %v", r.Duration)
	case r.Err != nil && !k.opts.AllowErrors:
		return fmt.Sprintf("error: %v (set Options.AllowErrors if the test double refuses on purpose)", r.Err)
	}
	return ""
}

// call runs the plugin's work on one message: HandleStage for a stage
// handler, ScanMessage for antivirus and antispam plugins.
func call(impl any, ctx context.Context, stage registry.Stage, pc *registry.ProcessingContext) (func() error, bool) {
	switch p := impl.(type) {
	case registry.StageHandler:
		return func() error { _, err := p.HandleStage(ctx, stage, pc); return err }, true
	case registry.AntivirusPlugin:
		return func() error { _, err := p.ScanMessage(ctx, pc.Message); return err }, true
	case registry.AntispamPlugin:
		return func() error { _, err := p.ScanMessage(ctx, pc.Message); return err }, true
	}
	return nil, false
}

func (k *kit[C, P]) cancellation(t *testing.T) {
	info, _ := pluginhost.Lookup(k.name)
	stage := registry.PostReception
	if len(info.Stages) > 0 {
		stage = info.Stages[0]
	}
	body := k.opts.Config
	if k.opts.SlowConfig != "" {
		body = k.opts.SlowConfig
	}
	before := goroutines()
	m := k.load(t, body)
	defer func() {
		assert.NoError(t, m.Close())
		requireNoLeak(t, before, k.opts.LeakWait)
	}()
	impl, _ := m.Plugin(k.name)
	msg, err := registry.ParseMessage(k.opts.Messages[0], *k.opts.Envelope)
	require.NoError(t, err)

	for _, tc := range []struct {
		name        string
		cancelFirst bool
	}{{"cancelled-before", true}, {"cancelled-during", false}} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			pc := registry.NewProcessingContext(msg, nil)
			fn, ok := call(impl, ctx, stage, pc)
			if !ok {
				t.Skip("the plugin has no stage handler or scan method to cancel")
			}
			if tc.cancelFirst {
				cancel()
			}
			done := make(chan error, 1)
			started := make(chan struct{})
			go func() {
				close(started)
				done <- fn()
			}()
			<-started
			cancel()
			cancelled := time.Now()
			timer := time.NewTimer(k.opts.CancelWithin)
			defer timer.Stop()
			select {
			case <-done:
			case <-timer.C:
				t.Fatalf("the plugin was still working %v after its context was cancelled; pass ctx to every blocking call", k.opts.CancelWithin)
			}
			t.Logf("returned %v after cancellation", time.Since(cancelled).Round(time.Microsecond))
		})
	}
}

// closeChecked calls p.Close, if p has one, and reports an error or a
// panic as a test failure naming what was being done.
func closeChecked(t *testing.T, p any, what string) {
	t.Helper()
	c, ok := p.(registry.Closer)
	if !ok {
		return
	}
	err := func() (err error) {
		defer func() {
			if r := recover(); r != nil {
				err = fmt.Errorf("panic: %v\n%s", r, debug.Stack())
			}
		}()
		return c.Close()
	}()
	assert.NoError(t, err, what)
}

func isNil(p any) bool {
	v := reflect.ValueOf(p)
	if !v.IsValid() {
		return true
	}
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface, reflect.Map, reflect.Slice, reflect.Func, reflect.Chan:
		return v.IsNil()
	}
	return false
}

func names() []string {
	var out []string
	for _, m := range pluginhost.Modules() {
		out = append(out, m.Name)
	}
	return out
}

// Load parses the config document doc as Elemta does, builds and starts its
// plugins through a Manager with host, and closes them when the test ends
// (a Close error fails the test). An unset host.Resolver is an empty
// Resolver (every name NXDOMAIN), never the system's DNS.
func Load(tb testing.TB, doc string, host registry.Host) *pluginhost.Manager {
	tb.Helper()
	cfg, err := pluginhost.ParseConfig("elemta.toml", []byte(doc))
	require.NoError(tb, err, "config:\n%s", doc)
	if host.Resolver == nil {
		host.Resolver = NewResolver(tb, "") // never the system's DNS
	}
	m := pluginhost.NewManager(cfg, pluginhost.WithHost(host))
	require.NoError(tb, m.LoadPlugins(context.Background()))
	tb.Cleanup(func() { assert.NoError(tb, m.Close(), "Close") })
	return m
}

// Settings parses the config document doc as Elemta does and returns the
// settings of plugin name with its own table decoded into C (the Config
// type it registered).
func Settings[C any](t testing.TB, doc, name string) (*C, *pluginhost.PluginConfig) {
	t.Helper()
	cfg, err := pluginhost.ParseConfig("elemta.toml", []byte(doc))
	require.NoError(t, err)
	pc, err := cfg.Settings(name)
	require.NoError(t, err)
	c, ok := pc.Value.(*C)
	require.Truef(t, ok, "plugin %s's config is a %T, not a *%T", name, pc.Value, *new(C))
	return c, pc
}

// SampleEnvelope is the envelope Run gives messages by default.
func SampleEnvelope() registry.Envelope {
	return registry.Envelope{
		ClientIP: netip.MustParseAddr("192.0.2.10"),
		HELO:     "mail.example.org",
		MailFrom: "alice@example.org",
		RcptTo:   []string{"bob@example.net", "carol@example.net"},
	}
}

// SampleMessages returns fresh copies of the messages Run uses by default:
// a plain text message, a multipart message with an attachment, and one
// with folded and repeated header fields and bare LF line ends.
func SampleMessages() [][]byte {
	return [][]byte{
		[]byte("From: Alice <alice@example.org>\r\nTo: Bob <bob@example.net>\r\nSubject: Lunch\r\nDate: Mon, 2 Mar 2026 10:00:00 +0000\r\nMessage-ID: <1@example.org>\r\n\r\nNoon at the usual place?\r\n"),
		[]byte("From: alice@example.org\r\nTo: bob@example.net\r\nSubject: Report\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nThe report is attached.\r\n--b1\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename=\"report.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQKJcfsj6IKMSAwIG9iago8PD4+CmVuZG9iagp0cmFpbGVyCjw8Pj4KJSVFT0YK\r\n--b1--\r\n"),
		[]byte("Received: from a.example.org\n\tby mx.example.net; Mon, 2 Mar 2026 10:00:00 +0000\nReceived: from b.example.org by a.example.org\nFrom: carol@example.net\nTo: bob@example.net\nSubject: a folded\n subject line\n\nline one\nline two\n"),
	}
}
