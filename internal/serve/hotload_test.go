package serve_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/smtp"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/elemta/elemta/internal/serve"
)

// daemon is a built elemta serving from dir, found by its pid file; after
// an upgrade the pid in it is another process.
type daemon struct {
	bin, dir, cfg, pidFile, addr, log string
	mail                              string
}

// hotConfig is the test config: contentfilter stamps every message with
// X-Gen: gen (the plugin setting a reload changes); invalid adds an
// unknown key at line 4.
func hotConfig(d *daemon, gen int, invalid bool) string {
	bad := ""
	if invalid {
		bad = "bogus = 1\n"
	}
	return fmt.Sprintf(`[plugins]
plugins = ["contentfilter"]
[plugins.contentfilter]
%s[[plugins.contentfilter.body_rules]]
name = "gen"
pattern = "."
action = "add_header"
add_header = "X-Gen: %d"

[server]
listen = "127.0.0.1:0"
hostname = "mx.hot.test"
spool_dir = %q
maildir_root = %q
pid_file = %q
shutdown_timeout = "10s"
upgrade_timeout = "30s"
retry_base = "1s"
`, bad, gen, filepath.Join(d.dir, "spool"), d.mail, d.pidFile)
}

var listeningAddr = regexp.MustCompile(`msg=listening addr=(\S+)`)

// startDaemon runs bin (copied to dir/elemta, the path upgrades replace)
// with its log in dir/log, and stops whatever process serves at the end.
func startDaemon(t *testing.T, bin string, env ...string) *daemon {
	t.Helper()
	dir := t.TempDir()
	d := &daemon{dir: dir, bin: filepath.Join(dir, "elemta"), cfg: filepath.Join(dir, "elemta.toml"),
		pidFile: filepath.Join(dir, "elemta.pid"), log: filepath.Join(dir, "log"), mail: filepath.Join(dir, "mail")}
	install(t, bin, d.bin)
	require.NoError(t, os.WriteFile(d.cfg, []byte(hotConfig(d, 0, false)), 0o600))
	logf, err := os.Create(d.log)
	require.NoError(t, err)
	defer logf.Close()
	cmd := exec.Command(d.bin, "-log-level", "info", "serve", "--config", d.cfg)
	cmd.Stdout, cmd.Stderr = logf, logf // inherited by the processes of upgrades
	cmd.Env = append(os.Environ(), env...)
	require.NoError(t, cmd.Start())
	go func() { _ = cmd.Wait() }()
	t.Cleanup(func() {
		pid, err := serve.ReadPID(d.pidFile)
		if err != nil {
			_ = cmd.Process.Kill()
			return
		}
		p, _ := os.FindProcess(pid)
		_ = p.Signal(syscall.SIGTERM)
		for range 200 { // 10 s
			if p.Signal(syscall.Signal(0)) != nil {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		_ = p.Kill()
		if t.Failed() {
			data, _ := os.ReadFile(d.log)
			t.Logf("server log:\n%s", tail(string(data), 8000))
		}
	})
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		data, _ := os.ReadFile(d.log)
		if m := listeningAddr.FindSubmatch(data); m != nil {
			if _, err := serve.ReadPID(d.pidFile); err == nil {
				d.addr = string(m[1])
				return d
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	data, _ := os.ReadFile(d.log)
	t.Fatalf("elemta serve did not start:\n%s", data)
	return nil
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// install puts a copy of bin at path, replacing what is there in one
// rename (the running process keeps its inode).
func install(t *testing.T, bin, path string) {
	t.Helper()
	data, err := os.ReadFile(bin)
	require.NoError(t, err)
	tmp := path + ".new"
	require.NoError(t, os.WriteFile(tmp, data, 0o755))
	require.NoError(t, os.Rename(tmp, path))
}

// control runs `elemta reload|upgrade` (with a binary that is not the one
// upgrades replace) and returns its exit status and output.
func (d *daemon) control(t *testing.T, ctl, action string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, ctl, action, "--pid-file", d.pidFile, "--timeout", "90s").CombinedOutput()
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode(), string(out)
	}
	require.NoError(t, err, "%s: %s", action, out)
	return 0, string(out)
}

// serverPlugins runs `elemta plugins list --server --json` and returns
// each compiled-in plugin of the serving binary with its enabled
// instances (non-nil for every plugin listed).
func (d *daemon) serverPlugins(t *testing.T, ctl string) map[string][]string {
	t.Helper()
	out, err := exec.Command(ctl, "plugins", "list", "--server", "--pid-file", d.pidFile, "--json").CombinedOutput()
	require.NoError(t, err, "plugins list --server: %s", out)
	var list []struct {
		Name      string   `json:"name"`
		Instances []string `json:"instances"`
	}
	require.NoError(t, json.Unmarshal(out, &list), "%s", out)
	names := map[string][]string{}
	for _, p := range list {
		names[p.Name] = append([]string{}, p.Instances...)
	}
	return names
}

// traffic is mail sent continuously by several clients, each message on a
// new connection with a unique Message-ID.
type traffic struct {
	mu       sync.Mutex
	accepted []string      // Message-IDs answered 250
	refused  []string      // connections refused or cut
	failed   []string      // transactions not answered 250
	maxWait  time.Duration // longest wait from connect to the greeting
	stop     chan struct{}
	wg       sync.WaitGroup
}

func sendMessage(addr, id string) (dialErr, txErr error) {
	_, dialErr, txErr = sendTimed(addr, id)
	return dialErr, txErr
}

func sendTimed(addr, id string) (greeting time.Duration, dialErr, txErr error) {
	start := time.Now()
	dialErr, txErr = sendOne(addr, id, func() { greeting = time.Since(start) })
	return greeting, dialErr, txErr
}

func sendOne(addr, id string, greeted func()) (dialErr, txErr error) {
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return err, nil
	}
	defer c.Close()
	// An upgrade holds new connections in the listen backlog while the
	// old process drains: the greeting may take the drain's time.
	_ = c.SetDeadline(time.Now().Add(90 * time.Second))
	cl, err := smtp.NewClient(c, "mx.hot.test")
	if err != nil {
		return nil, fmt.Errorf("greeting: %w", err)
	}
	greeted()
	defer cl.Close()
	if err := cl.Mail("sender@client.test"); err != nil {
		return nil, err
	}
	if err := cl.Rcpt("user@hot.test"); err != nil {
		return nil, err
	}
	w, err := cl.Data()
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(w, "From: sender@client.test\r\nTo: user@hot.test\r\nMessage-ID: <%s>\r\nSubject: hot\r\n\r\nbody of %s\r\n", id, id)
	if err := w.Close(); err != nil {
		return nil, err
	}
	return nil, cl.Quit()
}

func startTraffic(addr string, clients int) *traffic {
	tr := &traffic{stop: make(chan struct{})}
	for c := range clients {
		tr.wg.Add(1)
		go func() {
			defer tr.wg.Done()
			for i := 0; ; i++ {
				select {
				case <-tr.stop:
					return
				default:
				}
				id := fmt.Sprintf("c%d-%d@hot.test", c, i)
				wait, dialErr, txErr := sendTimed(addr, id)
				tr.mu.Lock()
				tr.maxWait = max(tr.maxWait, wait)
				switch {
				case dialErr != nil:
					tr.refused = append(tr.refused, id+": "+dialErr.Error())
				case txErr != nil:
					tr.failed = append(tr.failed, id+": "+txErr.Error())
				default:
					tr.accepted = append(tr.accepted, id)
				}
				tr.mu.Unlock()
			}
		}()
	}
	return tr
}

func (tr *traffic) end() {
	close(tr.stop)
	tr.wg.Wait()
}

// delivered maps Message-ID to the X-Gen value of each delivered copy.
func (d *daemon) delivered(t *testing.T) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	files, _ := filepath.Glob(filepath.Join(d.mail, "hot.test", "user", "new", "*"))
	for _, f := range files {
		data, err := os.ReadFile(f)
		require.NoError(t, err)
		msg := string(data)
		out[hotHeader(msg, "Message-ID")] = append(out[hotHeader(msg, "Message-ID")], hotHeader(msg, "X-Gen"))
	}
	return out
}

// waitDelivered waits until every id is delivered (bounded).
func (d *daemon) waitDelivered(t *testing.T, ids []string) map[string][]string {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		got := d.delivered(t)
		missing := 0
		for _, id := range ids {
			if len(got["<"+id+">"]) == 0 {
				missing++
			}
		}
		if missing == 0 || time.Now().After(deadline) {
			return got
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// checkExactlyOnce: zero refused, zero failed, each 250 delivered once.
func (d *daemon) checkExactlyOnce(t *testing.T, tr *traffic, probes []string) {
	t.Helper()
	assert.Empty(t, tr.refused, "refused connections")
	assert.Empty(t, tr.failed, "failed transactions")
	all := append(append([]string(nil), tr.accepted...), probes...)
	got := d.waitDelivered(t, all)
	for _, id := range all {
		assert.Len(t, got["<"+id+">"], 1, "copies of %s", id)
	}
	assert.Len(t, got, len(all), "delivered messages")
	t.Logf("%d messages from the clients and %d probes, each delivered once; longest wait for a greeting %s",
		len(tr.accepted), len(probes), tr.maxWait.Round(time.Millisecond))
}

// probe sends one message and returns the X-Gen of its delivered copy.
func (d *daemon) probe(t *testing.T, id string) string {
	t.Helper()
	dialErr, txErr := sendMessage(d.addr, id)
	require.NoError(t, dialErr)
	require.NoError(t, txErr)
	got := d.waitDelivered(t, []string{id})
	require.Len(t, got["<"+id+">"], 1, "probe %s delivered", id)
	return got["<"+id+">"][0]
}

// TestReloadUnderLoad reloads the config 20 times, alternating valid and
// invalid files, while four clients send mail: nothing is refused or
// fails, every 250 is delivered once, each invalid file is refused with its
// line and leaves the previous settings serving, and each valid one's
// setting shows in the next message.
func TestReloadUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := buildElemta(t)
	d := startDaemon(t, bin)
	tr := startTraffic(d.addr, 4)
	var probes []string
	gen := 0
	for i := range 20 {
		invalid := i%2 == 1
		if !invalid {
			gen++
		}
		require.NoError(t, os.WriteFile(d.cfg, []byte(hotConfig(d, gen, invalid)), 0o600))
		code, out := d.control(t, bin, "reload")
		if invalid {
			assert.Equal(t, 1, code, "invalid config: %s", out)
			assert.Contains(t, out, d.cfg+":4:1:", "the error names the file and line")
			assert.Contains(t, out, `unknown key "bogus"`)
		} else {
			require.Equal(t, 0, code, "valid config: %s", out)
			assert.Contains(t, out, "plugins contentfilter")
		}
		id := fmt.Sprintf("probe-%d@hot.test", i)
		probes = append(probes, id)
		assert.Equal(t, fmt.Sprint(gen), d.probe(t, id), "X-Gen of the message after reload %d (invalid: %v)", i+1, invalid)
	}
	// A [server] key that only an upgrade applies is reported, not ignored.
	changed := strings.Replace(hotConfig(d, gen, false), `hostname = "mx.hot.test"`, `hostname = "mx2.hot.test"`, 1)
	require.NoError(t, os.WriteFile(d.cfg, []byte(changed), 0o600))
	code, out := d.control(t, bin, "reload")
	require.Equal(t, 0, code, out)
	assert.Contains(t, out, "not applied until `elemta upgrade` or a restart: [server] hostname")
	tr.end()
	d.checkExactlyOnce(t, tr, probes)
	st, err := serve.ReadStatus(d.pidFile, "reload")
	require.NoError(t, err)
	var rep serve.Report
	require.NoError(t, json.Unmarshal(st.Report, &rep))
	assert.True(t, rep.OK)
}

// TestUpgradeUnderLoad upgrades 5 times between two builds (the default
// plugin set and the minimal variant, without most plugins) while four
// clients send mail, then to a binary that fails at start: nothing is
// refused, every 250 is delivered once, each upgrade reports the new
// binary's plugins, and the failed one leaves the old process serving.
func TestUpgradeUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs two binaries")
	}
	full := buildElemta(t)
	minimal := buildVariant(t, "minimal")
	d := startDaemon(t, full)
	tr := startTraffic(d.addr, 4)
	var probes []string
	builds := []string{minimal, full, minimal, full, minimal}
	for i, next := range builds {
		before, err := serve.ReadPID(d.pidFile)
		require.NoError(t, err)
		install(t, next, d.bin)
		start := time.Now()
		code, out := d.control(t, full, "upgrade")
		require.Equal(t, 0, code, "upgrade %d: %s", i+1, out)
		t.Logf("upgrade %d: %s (elemta upgrade, signal to outcome)", i+1, time.Since(start).Round(time.Millisecond))
		after, err := serve.ReadPID(d.pidFile)
		require.NoError(t, err)
		assert.NotEqual(t, before, after, "upgrade %d: a new process serves", i+1)
		if next == minimal {
			assert.NotContains(t, out, "spf@", "upgrade %d: the minimal build serves", i+1)
		} else {
			assert.Contains(t, out, "spf@", "upgrade %d: the full build serves", i+1)
		}
		assert.Contains(t, out, "compiled in: ")
		names := d.serverPlugins(t, full)
		assert.Equal(t, next == full, names["spf"] != nil, "upgrade %d: plugins list --server shows the new binary's set: %v", i+1, names)
		assert.Equal(t, []string{"contentfilter"}, names["contentfilter"], "upgrade %d: the enabled instance", i+1)
		id := fmt.Sprintf("probe-up-%d@hot.test", i)
		probes = append(probes, id)
		d.probe(t, id)
	}
	// A binary that fails at start: the old process serves on and says why.
	before, err := serve.ReadPID(d.pidFile)
	require.NoError(t, err)
	broken := filepath.Join(t.TempDir(), "broken")
	require.NoError(t, os.WriteFile(broken, []byte("#!/bin/sh\necho 'broken build' >&2\nexit 3\n"), 0o755))
	install(t, broken, d.bin)
	code, out := d.control(t, full, "upgrade")
	assert.Equal(t, 1, code, out)
	assert.Contains(t, out, "upgrade failed")
	assert.Contains(t, out, "did not start")
	after, err := serve.ReadPID(d.pidFile)
	require.NoError(t, err)
	assert.Equal(t, before, after, "the old process serves on")
	probes = append(probes, "probe-after-broken@hot.test")
	d.probe(t, "probe-after-broken@hot.test")
	tr.end()
	d.checkExactlyOnce(t, tr, probes)
}

// TestUpgradeRollbackAfterHandover: the new process takes the handover
// (the old one has drained and released the spool) and dies before it is
// ready; the old process takes the spool back and serves on, and a later
// upgrade works.
func TestUpgradeRollbackAfterHandover(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	full := buildElemta(t)
	self, err := os.Executable()
	require.NoError(t, err)
	d := startDaemon(t, full, serve.DieAfterHandoverEnv+"=1")
	tr := startTraffic(d.addr, 4)
	before, err := serve.ReadPID(d.pidFile)
	require.NoError(t, err)
	install(t, self, d.bin)
	code, out := d.control(t, full, "upgrade")
	assert.Equal(t, 1, code, out)
	assert.Contains(t, out, "failed after the handover (this process serves again)")
	after, err := serve.ReadPID(d.pidFile)
	require.NoError(t, err)
	assert.Equal(t, before, after)
	probes := []string{"probe-rollback@hot.test"}
	d.probe(t, probes[0])
	install(t, full, d.bin)
	code, out = d.control(t, full, "upgrade")
	require.Equal(t, 0, code, out)
	probes = append(probes, "probe-rollback-then-upgrade@hot.test")
	d.probe(t, probes[1])
	tr.end()
	d.checkExactlyOnce(t, tr, probes)
}

// buildVariant builds a plugins.yaml variant with tools/elemta-build.
func buildVariant(t *testing.T, variant string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "elemta-"+variant)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "run", "./tools/elemta-build", "-config", "plugins.yaml", "-variant", variant, "-o", bin)
	cmd.Dir = "../.."
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "elemta-build: %s", out)
	return bin
}

func hotHeader(msg, name string) string {
	hdr, _, _ := strings.Cut(msg, "\r\n\r\n")
	for _, line := range strings.Split(hdr, "\r\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.EqualFold(k, name) {
			return strings.TrimSpace(v)
		}
	}
	return ""
}
