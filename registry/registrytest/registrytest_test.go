package registrytest_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/elemta/elemta/registry"
	"github.com/elemta/elemta/registry/registrytest"
)

// Config is the config of every fixture plugin.
type Config struct {
	Word string `toml:"word"`
}

// fixture is a plugin whose flaws are switched on by its fields.
type fixture struct {
	cfg       Config
	leak      bool // Start runs a goroutine that Close does not stop
	panicIdle bool // Close panics when Start never ran
	deaf      bool // HandleStage ignores ctx
	racy      bool // HandleStage writes shared state without a lock
	fail      bool // HandleStage returns an error
	strict    bool // Validate rejects the default config

	stop     chan struct{}
	once     sync.Once
	wg       sync.WaitGroup
	counts   map[string]int
	released chan struct{}
}

func (f *fixture) Validate() error {
	if f.strict && f.cfg.Word == "" {
		return errors.New("word is required")
	}
	return nil
}

func (f *fixture) Start(ctx context.Context) error {
	f.stop = make(chan struct{})
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		if f.leak {
			select {} // never ends
		}
		<-f.stop
	}()
	return nil
}

func (f *fixture) HandleStage(ctx context.Context, stage registry.Stage, pc *registry.ProcessingContext) (*registry.Result, error) {
	if f.racy {
		f.counts[pc.Session.ID]++
	}
	if f.fail {
		return nil, errors.New("refused")
	}
	if f.deaf {
		<-f.released
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return &registry.Result{Verdict: registry.AcceptVerdict(), Details: f.cfg.Word}, nil
}

func (f *fixture) Close() error {
	if f.stop == nil && f.panicIdle {
		close(f.stop) // closing a nil channel: the bug under test
	}
	f.once.Do(func() {
		if f.stop != nil {
			close(f.stop)
		}
		if f.released != nil {
			close(f.released)
		}
	})
	if !f.leak {
		f.wg.Wait()
	}
	return nil
}

// constructors by fixture name.
var fixtures = map[string]func(Config, registry.Host) (*fixture, error){
	"good":       func(c Config, _ registry.Host) (*fixture, error) { return &fixture{cfg: c}, nil },
	"leaky":      func(c Config, _ registry.Host) (*fixture, error) { return &fixture{cfg: c, leak: true}, nil },
	"idlepanics": func(c Config, _ registry.Host) (*fixture, error) { return &fixture{cfg: c, panicIdle: true}, nil },
	"deaf": func(c Config, _ registry.Host) (*fixture, error) {
		return &fixture{cfg: c, deaf: true, released: make(chan struct{})}, nil
	},
	"racy": func(c Config, _ registry.Host) (*fixture, error) {
		return &fixture{cfg: c, racy: true, counts: map[string]int{}}, nil
	},
	"failing": func(c Config, _ registry.Host) (*fixture, error) { return &fixture{cfg: c, fail: true}, nil },
	"strict":  func(c Config, _ registry.Host) (*fixture, error) { return &fixture{cfg: c, strict: true}, nil },
	"nodesc":  func(c Config, _ registry.Host) (*fixture, error) { return &fixture{cfg: c}, nil },
	// newrejects checks its config in New, which `config check` never runs.
	"newrejects": func(c Config, _ registry.Host) (*fixture, error) {
		if c.Word == "forbidden" {
			return nil, errors.New("word must not be forbidden")
		}
		return &fixture{cfg: c}, nil
	},
}

func init() {
	for name, newFn := range fixtures {
		desc := "registrytest fixture " + name
		if name == "nodesc" {
			desc = ""
		}
		registry.Register(registry.Module[Config, *fixture]{
			Name:        "kit-" + name,
			Version:     "1.0.0",
			Description: desc,
			Types:       []registry.PluginType{registry.PluginTypeFilter},
			Stages:      []registry.Stage{registry.PostReception, registry.PreQueue},
			Config:      func() Config { return Config{} },
			New:         newFn,
		})
	}
}

const fixtureEnv = "REGISTRYTEST_FIXTURE"

// TestFixture runs the kit on the fixture named by $REGISTRYTEST_FIXTURE;
// TestKit runs it in a child process, so that a failing kit can be
// observed without failing this test binary.
func TestFixture(t *testing.T) {
	name := os.Getenv(fixtureEnv)
	if name == "" {
		t.Skip("run by TestKit")
	}
	registrytest.Run(t, "kit-"+name, fixtures[name], registrytest.Options{
		Config: "word = \"hello\"\ntimeout = \"300ms\"",
		// The second is rejected at parse time (a string is wanted), which is fine.
		Configs:      []string{`word = "forbidden"`, `word = 5`},
		CancelWithin: time.Second,
		LeakWait:     time.Second,
	})
}

func TestKit(t *testing.T) {
	if testing.Short() {
		t.Skip("runs child test processes")
	}
	tests := []struct {
		fixture string
		pass    bool
		want    []string
		race    bool // only meaningful under -race
	}{
		{fixture: "good", pass: true},
		{fixture: "leaky", want: []string{"--- FAIL: TestFixture/lifecycle", "goroutine(s) still running", "after Close"}},
		{fixture: "idlepanics", want: []string{"--- FAIL: TestFixture/close-without-start", "Close without Start", "panic: close of nil channel"}},
		{fixture: "deaf", want: []string{"--- FAIL: TestFixture/concurrent-messages", "timed out after", "--- FAIL: TestFixture/cancellation/cancelled-before", "still working", "after its context was cancelled"}},
		{fixture: "failing", want: []string{"--- FAIL: TestFixture/concurrent-messages", "refused (set Options.AllowErrors"}},
		{fixture: "strict", want: []string{"--- FAIL: TestFixture/default-config", "Validate rejects the plugin's own default config", "word is required"}},
		{fixture: "nodesc", want: []string{"--- FAIL: TestFixture/metadata", "Module.Description"}},
		{fixture: "newrejects", want: []string{"--- FAIL: TestFixture/parse-then-new", "New rejects a config that parsing", `word = "forbidden"`, "word must not be forbidden"}},
		{fixture: "racy", race: true, want: []string{"WARNING: DATA RACE"}},
	}
	for _, tt := range tests {
		t.Run(tt.fixture, func(t *testing.T) {
			if tt.race && !raceEnabled {
				t.Skip("needs -race")
			}
			cmd := exec.Command(os.Args[0], "-test.run", "^TestFixture$", "-test.v", "-test.count=1")
			cmd.Env = append(os.Environ(), fixtureEnv+"="+tt.fixture)
			out, err := cmd.CombinedOutput()
			if tt.pass {
				require.NoError(t, err, "%s", out)
				for _, sub := range []string{"metadata", "default-config", "unknown-key", "parse-then-new", "close-without-start", "lifecycle", "concurrent-messages", "cancellation"} {
					assert.Contains(t, string(out), "--- PASS: TestFixture/"+sub)
				}
				return
			}
			require.Error(t, err, "the kit passed a flawed plugin:\n%s", out)
			for _, w := range tt.want {
				assert.Contains(t, string(out), w)
			}
		})
	}
}

func TestOfflineSkipsStart(t *testing.T) {
	// A plugin whose Start would fail still gets the offline checks.
	registrytest.Run(t, "kit-good", fixtures["good"], registrytest.Options{Offline: true})
}

func TestSampleMessagesParse(t *testing.T) {
	for i, raw := range registrytest.SampleMessages() {
		msg, err := registry.ParseMessage(raw, registrytest.SampleEnvelope())
		require.NoError(t, err, "sample %d", i)
		assert.NotEmpty(t, msg.Header.Get("From"), "sample %d", i)
		assert.NotEmpty(t, msg.Body(), "sample %d", i)
	}
}
