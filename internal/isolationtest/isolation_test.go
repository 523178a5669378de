package isolationtest

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/elemta/elemta/pluginhost"
	"github.com/elemta/elemta/registry"
)

// server runs this test binary as a test server for mode.
func server(t *testing.T, mode string) (string, string, error) {
	t.Helper()
	exe, err := os.Executable()
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), serverEnv+"="+mode)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err = cmd.Run()
	return out.String(), errb.String(), err
}

// In-process, each of these kills the whole server: no message is answered
// after it ran.
func TestInProcessKillsTheServer(t *testing.T) {
	for _, tc := range []struct {
		plugin, stderr string
		// answered is how many messages the server may answer before it
		// dies: the allocating plugin is abandoned at its timeout and
		// kills the server while a later message runs, or (-1), on a
		// loaded machine, only after the last: it must die all the same.
		answered int
	}{
		{"isofatal", "concurrent map", 0},
		// The Go runtime says "out of memory"; under -race, ThreadSanitizer's
		// allocator fails first.
		{"isooom", "out of memory|ThreadSanitizer failed to allocate|address space", -1},
		{"isoexit", "", 0},
		{"isogopanic", "isogopanic: boom", 0},
	} {
		t.Run(tc.plugin, func(t *testing.T) {
			out, stderr, err := server(t, tc.plugin+" none")
			require.Error(t, err, "the server survived:\n%s", out)
			if tc.answered >= 0 {
				assert.NotContains(t, out, "served")
				assert.NotContains(t, out, fmt.Sprintf("message %d:", tc.answered))
			}
			assert.Regexp(t, tc.stderr, stderr)
			head, _, _ := strings.Cut(stderr, "\n\n")
			t.Logf("in-process %s: server died (%v); stderr begins: %.300s", tc.plugin, err, head)
		})
	}
}

// Isolated, the same plugins cost their worker and the message gets
// on_error; the server and the other plugin carry on.
func TestIsolatedServerKeepsServing(t *testing.T) {
	for _, plugin := range []string{"isofatal", "isooom", "isoexit", "isogopanic", "isospin", "isogarbage", "isopanic"} {
		t.Run(plugin, func(t *testing.T) {
			mode := plugin + " process crash" // the server waits for the death to be counted
			if plugin == "isopanic" {
				mode = plugin + " process"
			}
			out, stderr, err := server(t, mode)
			require.NoError(t, err, "stdout:\n%s\nstderr:\n%s", out, stderr)
			for i := range 3 {
				assert.Contains(t, out, "message "+string(rune('0'+i))+": tempfail by "+plugin+", score 1.5")
			}
			assert.Contains(t, out, "served")
			if plugin != "isopanic" { // a plain panic is recovered in the worker, which lives on
				assert.Regexp(t, "stats "+plugin+": crashes [1-9]", out, "the worker's death is counted")
			} else {
				assert.Contains(t, out, "stats isopanic: crashes 0")
			}
			assert.Contains(t, out, "stats isotrivial: crashes 0, restarts 0")
			t.Logf("isolated %s:\n%s", plugin, out)
		})
	}
}

// The results of an isolated plugin are those it gives in-process.
func TestIsolatedResultsAsInProcess(t *testing.T) {
	run := func(isolation string) *pluginhost.StageResult {
		cfg, err := pluginhost.ParseConfig("t.toml", []byte(config("isotrivial", isolation)[:0]+
			"[plugins]\nplugins = [\"isotrivial\"]\n[plugins.isotrivial]\n"+isoKeys(isolation)))
		require.NoError(t, err)
		m := pluginhost.NewManager(cfg)
		require.NoError(t, m.LoadPlugins(context.Background()))
		defer func() { assert.NoError(t, m.Close()) }()
		sr, err := m.ExecuteStage(context.Background(), registry.PostReception, message(1))
		require.NoError(t, err)
		return sr
	}
	in, iso := run("none"), run("process")
	require.Len(t, iso.Results, 1)
	a, b := in.Results[0], iso.Results[0]
	assert.Equal(t, a.Verdict, b.Verdict)
	assert.Equal(t, a.Score, b.Score)
	assert.Equal(t, a.AddHeaders, b.AddHeaders)
	assert.Equal(t, a.Details, b.Details)
	assert.Equal(t, a.Data, b.Data)
	assert.NoError(t, b.Err)
}

func isoKeys(isolation string) string {
	if isolation == "process" {
		return "isolation = \"process\"\n"
	}
	return ""
}
