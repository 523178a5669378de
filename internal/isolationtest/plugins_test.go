package isolationtest

import (
	"context"
	"os"
	"runtime"
	"sync"
	"testing"

	"github.com/elemta/elemta/pluginhost"
	"github.com/elemta/elemta/registry"
)

// The worker of these tests is this test binary, re-executed.
func TestMain(m *testing.M) {
	pluginhost.RunWorker()
	if mode := os.Getenv(serverEnv); mode != "" {
		os.Exit(runServer(mode))
	}
	os.Exit(m.Run())
}

type handler func(ctx context.Context, stage registry.Stage, pc *registry.ProcessingContext) (*registry.Result, error)

type plugin struct{ h handler }

func (p plugin) HandleStage(ctx context.Context, stage registry.Stage, pc *registry.ProcessingContext) (*registry.Result, error) {
	return p.h(ctx, stage, pc)
}

func register(name string, h handler) {
	registry.Register(registry.Module[struct{}, plugin]{
		Name: name, Description: "isolation test plugin " + name,
		Types:    []registry.PluginType{registry.PluginTypeFilter},
		Stages:   []registry.Stage{registry.PostReception},
		Produces: []any{(*registry.ScanResult)(nil)},
		New:      func(struct{}, registry.Host) (plugin, error) { return plugin{h}, nil },
	})
}

var (
	retained   [][]byte
	retainedMu sync.Mutex
)

func init() {
	register("isotrivial", func(_ context.Context, _ registry.Stage, pc *registry.ProcessingContext) (*registry.Result, error) {
		return &registry.Result{Score: 1.5, Details: "ok " + pc.Message.Header.Get("Subject"),
			AddHeaders: []registry.Field{{Name: "X-Iso", Value: "seen"}},
			Data:       &registry.ScanResult{Status: registry.StatusClean, Threats: []string{"none"}}}, nil
	})
	// (a) a Go fatal error, which recover cannot catch.
	register("isofatal", func(ctx context.Context, _ registry.Stage, _ *registry.ProcessingContext) (*registry.Result, error) {
		m := map[int]int{}
		for range 2 {
			go func() {
				for i := 0; ; i++ {
					m[i%1024] = i
				}
			}()
		}
		<-ctx.Done()
		return nil, ctx.Err()
	})
	// (b) allocation without bound, every page touched.
	register("isooom", func(ctx context.Context, _ registry.Stage, _ *registry.ProcessingContext) (*registry.Result, error) {
		for {
			b := make([]byte, 16<<20)
			for i := 0; i < len(b); i += 4096 {
				b[i] = 1
			}
			retainedMu.Lock() // abandoned calls go on allocating side by side
			retained = append(retained, b)
			retainedMu.Unlock()
		}
	})
	// (c) os.Exit.
	register("isoexit", func(context.Context, registry.Stage, *registry.ProcessingContext) (*registry.Result, error) {
		os.Exit(7)
		return nil, nil
	})
	// (d) a panic in a goroutine of the plugin's own.
	register("isogopanic", func(ctx context.Context, _ registry.Stage, _ *registry.ProcessingContext) (*registry.Result, error) {
		go func() { panic("isogopanic: boom in the plugin's own goroutine") }()
		<-ctx.Done()
		return nil, ctx.Err()
	})
	// (e) a loop that never looks at its context.
	register("isospin", func(context.Context, registry.Stage, *registry.ProcessingContext) (*registry.Result, error) {
		for {
			runtime.Gosched()
		}
	})
	// garbage on the host's socket (only where there is one: in a worker).
	register("isogarbage", func(ctx context.Context, _ registry.Stage, _ *registry.ProcessingContext) (*registry.Result, error) {
		if os.Getenv("ELEMTA_PLUGIN_WORKER") == "1" {
			_, _ = os.NewFile(3, "host").Write([]byte("\x00\x00\x00\x10this is not gob!"))
		}
		<-ctx.Done()
		return nil, ctx.Err()
	})
	// an ordinary panic, which crosses as one.
	register("isopanic", func(context.Context, registry.Stage, *registry.ProcessingContext) (*registry.Result, error) {
		panic("isopanic: plain panic")
	})
}
