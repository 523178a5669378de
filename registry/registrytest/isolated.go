package registrytest

import (
	"context"
	"fmt"
	"math"
	"os"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/elemta/elemta/pluginhost"
	"github.com/elemta/elemta/registry"
)

// workerMain is set by Main: this test binary can serve as a plugin
// worker, so Run also checks the plugin with isolation = "process".
var workerMain bool

// Main is a test package's TestMain for plugins: it lets the test binary
// serve as the worker process of an isolated plugin (the host re-executes
// its own executable), then runs the tests. With it, Run checks the
// plugin both in-process and with isolation = "process":
//
//	func TestMain(m *testing.M) { registrytest.Main(m) }
func Main(m *testing.M) {
	pluginhost.RunWorker()
	workerMain = true
	os.Exit(m.Run())
}

const isolatedKey = "isolation = \"process\"\n"

// isolated runs the checks that start the plugin again with isolation =
// "process", then compares its results on the sample messages with the
// in-process ones.
func (k *kit[C, P]) isolated(t *testing.T) {
	if !workerMain {
		t.Skip("registrytest: isolated checks need func TestMain(m *testing.M) { registrytest.Main(m) }")
	}
	iso := &kit[C, P]{name: k.name, newFn: k.newFn, opts: k.opts}
	iso.opts.Config = isolatedKey + k.opts.Config
	if k.opts.SlowConfig != "" {
		iso.opts.SlowConfig = isolatedKey + k.opts.SlowConfig
	}
	t.Run("lifecycle", iso.lifecycle)
	t.Run("concurrent-messages", iso.concurrentMessages)
	t.Run("cancellation", iso.cancellation)
	t.Run("same-results", k.sameResults)
}

// fixedClock is the clock of both runs of same-results: a plugin that
// writes the time (a DKIM t= tag) writes the same in both.
type fixedClock struct{}

func (fixedClock) Now() time.Time { return time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC) }

// run runs every sample message through the plugin's stages in a fresh
// manager (its own data directory) and returns the results.
func (k *kit[C, P]) run(t *testing.T, body string) [][]*registry.Result {
	h := k.host(t)
	h.DataDir = t.TempDir()
	if h.Clock == nil {
		h.Clock = fixedClock{}
	}
	m := pluginhost.NewManager(k.config(t, body), pluginhost.WithHost(h))
	require.NoError(t, m.LoadPlugins(context.Background()))
	defer func() { assert.NoError(t, m.Close()) }()
	info, _ := pluginhost.Lookup(k.name)
	var out [][]*registry.Result
	for i, raw := range k.opts.Messages {
		msg, err := registry.ParseMessage(raw, *k.opts.Envelope)
		require.NoError(t, err)
		pc := registry.NewProcessingContext(msg, &registry.Session{ID: fmt.Sprintf("same-%d", i), Hostname: "mx.example.net"})
		var rs []*registry.Result
		for _, stage := range info.Stages {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			sr, err := m.ExecuteStage(ctx, stage, pc)
			cancel()
			require.NoError(t, err)
			rs = append(rs, sr.Results...)
		}
		out = append(out, rs)
	}
	return out
}

func (k *kit[C, P]) sameResults(t *testing.T) {
	in := k.run(t, k.opts.Config)
	iso := k.run(t, isolatedKey+k.opts.Config)
	require.Len(t, iso, len(in))
	for i := range in {
		require.Lenf(t, iso[i], len(in[i]), "message %d: results", i)
		for j, a := range in[i] {
			b := iso[i][j]
			if k.opts.Normalize != nil {
				a, b = normalized(a, k.opts.Normalize), normalized(b, k.opts.Normalize)
			}
			where := fmt.Sprintf("message %d, %s at %s", i, a.Plugin, a.Stage)
			assert.Equal(t, a.Verdict, b.Verdict, where)
			assert.InDelta(t, a.Score, b.Score, 1e-4, where)
			assert.Equal(t, a.AddHeaders, b.AddHeaders, where)
			assert.Equal(t, a.RemoveHeaders, b.RemoveHeaders, where)
			assert.Equal(t, canonical(a.Data), canonical(b.Data), where)
			assert.Equal(t, a.Details, b.Details, where)
			assert.Equal(t, a.Err != nil, b.Err != nil, "%s: in-process error %v, isolated %v", where, a.Err, b.Err)
			assert.Equal(t, a.TimedOut, b.TimedOut, where)
			assert.Equal(t, a.Panicked, b.Panicked, where)
		}
	}
}

// canonical returns a copy of v in which every empty slice and map is nil
// and every float is rounded to 4 decimals. Across the isolation boundary
// gob sends an empty slice as nothing, so a plugin's []T{} arrives as nil;
// the two mean the same to a consumer (len, range). A daemon's own scores
// wobble between calls in the last digits (rspamd: 10.799999, then 10.8),
// which is not the boundary's doing either.
func canonical(v any) any {
	if v == nil {
		return nil
	}
	return normalize(reflect.ValueOf(v)).Interface()
}

func normalize(v reflect.Value) reflect.Value {
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			return v
		}
		p := reflect.New(v.Elem().Type())
		p.Elem().Set(normalize(v.Elem()))
		return p
	case reflect.Struct:
		out := reflect.New(v.Type()).Elem()
		out.Set(v)
		for i := range v.NumField() {
			if out.Field(i).CanSet() {
				out.Field(i).Set(normalize(v.Field(i)))
			}
		}
		return out
	case reflect.Slice:
		if v.Len() == 0 {
			return reflect.Zero(v.Type())
		}
		out := reflect.MakeSlice(v.Type(), v.Len(), v.Len())
		for i := range v.Len() {
			out.Index(i).Set(normalize(v.Index(i)))
		}
		return out
	case reflect.Map:
		if v.Len() == 0 {
			return reflect.Zero(v.Type())
		}
		return v
	case reflect.Float32, reflect.Float64:
		out := reflect.New(v.Type()).Elem()
		out.SetFloat(math.Round(v.Float()*1e4) / 1e4)
		return out
	}
	return v
}

// normalized is f applied to a copy of r.
func normalized(r *registry.Result, f func(*registry.Result)) *registry.Result {
	c := *r
	c.AddHeaders = slices.Clone(r.AddHeaders)
	f(&c)
	return &c
}
