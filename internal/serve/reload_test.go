package serve

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/smtp"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/elemta/elemta/pluginhost"
	"github.com/elemta/elemta/registry"
)

// reloadgen stamps each message with X-Gen: its configured generation and
// reports its Close on a channel, so a test sees which manager ran a
// message and when a replaced one was closed.
type reloadgenConfig struct {
	Gen int `toml:"gen"`
}

type reloadgen struct{ gen int }

var reloadgenClosed = make(chan int, 64)

func (p *reloadgen) HandleStage(_ context.Context, _ registry.Stage, _ *registry.ProcessingContext) (*registry.Result, error) {
	return &registry.Result{AddHeaders: []registry.Field{{Name: "X-Gen", Value: fmt.Sprint(p.gen)}}}, nil
}

func (p *reloadgen) Close() error {
	reloadgenClosed <- p.gen
	return nil
}

func init() {
	registry.Register(registry.Module[reloadgenConfig, *reloadgen]{
		Name:   "reloadgen",
		Types:  []registry.PluginType{registry.PluginTypeCustom},
		Stages: []registry.Stage{registry.PreQueue},
		New:    func(c reloadgenConfig, _ registry.Host) (*reloadgen, error) { return &reloadgen{gen: c.Gen}, nil },
	})
}

// genLoader reads a [plugins] file; the [server] table is base, with
// Listen replaced when the file's first line is "# listen ADDR".
func genLoader(base Config) Loader {
	return func(ctx context.Context, path string) (Config, *pluginhost.Manager, error) {
		data, err := os.ReadFile(path)
		if err != nil {
			return Config{}, nil, err
		}
		cfg := base
		if l, ok := strings.CutPrefix(strings.SplitN(string(data), "\n", 2)[0], "# listen "); ok {
			cfg.Listen = l
		}
		pcfg, err := pluginhost.ParseConfig(path, data)
		if err != nil {
			return Config{}, nil, err
		}
		mgr := pluginhost.NewManager(pcfg)
		if err := mgr.LoadPlugins(ctx); err != nil {
			return Config{}, nil, err
		}
		return cfg, mgr, nil
	}
}

func writeGen(t *testing.T, path string, gen string) {
	t.Helper()
	require.NoError(t, os.WriteFile(path, []byte("[plugins]\nplugins = [\"reloadgen\"]\n[plugins.reloadgen]\ngen = "+gen+"\n"), 0o600))
}

func openTx(t *testing.T, addr string) *smtp.Client {
	t.Helper()
	c, err := smtp.Dial(addr)
	require.NoError(t, err)
	require.NoError(t, c.Mail("a@client.test"))
	require.NoError(t, c.Rcpt("user@example.test"))
	return c
}

func finishTx(t *testing.T, c *smtp.Client, id string) {
	t.Helper()
	w, err := c.Data()
	require.NoError(t, err)
	fmt.Fprintf(w, "From: a@client.test\r\nMessage-ID: <%s>\r\nSubject: x\r\n\r\nbody\r\n", id)
	require.NoError(t, w.Close())
	require.NoError(t, c.Quit())
}

// genOf waits for the message id in the Maildir and returns its X-Gen.
func genOf(t *testing.T, root, id string) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for _, msg := range maildir(t, root, "user@example.test") {
			if strings.Contains(msg, "<"+id+">") {
				hdr, _, _ := strings.Cut(msg, "\r\n\r\n")
				for _, line := range strings.Split(hdr, "\r\n") {
					if v, ok := strings.CutPrefix(line, "X-Gen: "); ok {
						return v
					}
				}
				return ""
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("message %s not delivered", id)
	return ""
}

func TestReloadSwapsPluginsAndKeepsTransactions(t *testing.T) {
	cfg := testConfig(t)
	cfg.LocalDomains = []string{"example.test"}
	file := filepath.Join(t.TempDir(), "plugins.toml")
	writeGen(t, file, "1")
	load := genLoader(cfg)
	_, mgr, err := load(context.Background(), file)
	require.NoError(t, err)
	s, err := StartWith(context.Background(), cfg, mgr, slog.New(slog.NewTextHandler(io.Discard, nil)), Options{Load: load, ConfigPath: file})
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		assert.NoError(t, s.Shutdown(ctx))
	})
	addr := s.Addr().String()
	for len(reloadgenClosed) > 0 {
		<-reloadgenClosed
	}

	// A transaction open across the reload finishes on the old plugins,
	// which are closed only after it.
	inFlight := openTx(t, addr)
	writeGen(t, file, "2")
	rep, err := s.Reload(context.Background(), "")
	require.NoError(t, err)
	assert.True(t, rep.OK)
	assert.Equal(t, []string{"reloadgen"}, rep.Plugins)
	assert.Empty(t, rep.NeedsUpgrade)
	select {
	case g := <-reloadgenClosed:
		t.Fatalf("plugin of generation %d closed while a transaction holds it", g)
	default:
	}
	finishTx(t, inFlight, "in-flight@x")
	assert.Equal(t, "1", genOf(t, cfg.MaildirRoot, "in-flight@x"), "the transaction ran on the manager it started with")
	select {
	case g := <-reloadgenClosed:
		assert.Equal(t, 1, g)
	case <-time.After(10 * time.Second):
		t.Fatal("the replaced plugins were not closed after their last transaction")
	}
	finishTx(t, openTx(t, addr), "after@x")
	assert.Equal(t, "2", genOf(t, cfg.MaildirRoot, "after@x"), "the next message runs on the new settings")
	st := s.ReloadStats()
	assert.Equal(t, int64(1), st.Reloads)
	assert.False(t, st.LastSuccess.IsZero())

	// An invalid file: refused with its line, counted, the old one serves.
	writeGen(t, file, `"two"`)
	rep, err = s.Reload(context.Background(), "")
	require.Error(t, err)
	assert.False(t, rep.OK)
	assert.Contains(t, err.Error(), file+":4:")
	assert.Equal(t, []string{"reloadgen"}, rep.Plugins)
	st2 := s.ReloadStats()
	assert.Equal(t, int64(1), st2.Failed)
	assert.Equal(t, st.LastSuccess, st2.LastSuccess)
	assert.Equal(t, err.Error(), st2.LastError)
	finishTx(t, openTx(t, addr), "after-bad@x")
	assert.Equal(t, "2", genOf(t, cfg.MaildirRoot, "after-bad@x"))

	// A [server] key that cannot change live is reported.
	require.NoError(t, os.WriteFile(file, []byte("# listen 127.0.0.1:1\n[plugins]\nplugins = [\"reloadgen\"]\n[plugins.reloadgen]\ngen = 3\n"), 0o600))
	rep, err = s.Reload(context.Background(), "")
	require.NoError(t, err)
	assert.Equal(t, []string{"listen"}, rep.NeedsUpgrade)
	assert.Equal(t, "", s.ReloadStats().LastError)
}

func TestReloadWithoutLoader(t *testing.T) {
	s := startServer(t, testConfig(t))
	_, err := s.Reload(context.Background(), "x.toml")
	assert.ErrorIs(t, err, ErrNoLoader)
	assert.Equal(t, int64(1), s.ReloadStats().Failed)
}

func TestChangedKeys(t *testing.T) {
	a := DefaultConfig()
	b := a
	assert.Empty(t, ChangedKeys(a, b))
	b.SpoolDir, b.MaxConnections, b.LocalDomains = "other", a.MaxConnections+1, []string{"x.test"}
	assert.Equal(t, []string{"spool_dir", "max_connections", "local_domains"}, ChangedKeys(a, b))
}
