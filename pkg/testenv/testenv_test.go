package testenv

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestReadEnvFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "env.sh")
	content := "# written by start.sh\n" +
		"export ELEMTA_TEST_DNS=127.0.0.1:5353\n" +
		"export ELEMTA_TEST_KEYS='/tmp/state dir/keys'\n" +
		"export ELEMTA_TEST_RSPAMD=\"http://127.0.0.1:11333\"\n" +
		"NOT_EXPORTED=1\n" +
		"export BROKEN\n"
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	got := readEnvFile(path)
	want := map[string]string{
		"ELEMTA_TEST_DNS":    "127.0.0.1:5353",
		"ELEMTA_TEST_KEYS":   "/tmp/state dir/keys",
		"ELEMTA_TEST_RSPAMD": "http://127.0.0.1:11333",
	}
	if len(got) != len(want) {
		t.Fatalf("readEnvFile = %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
	if m := readEnvFile(filepath.Join(t.TempDir(), "missing.sh")); len(m) != 0 {
		t.Errorf("missing file gave %v, want empty", m)
	}
}

func TestInCI(t *testing.T) {
	for _, tc := range []struct {
		value string
		want  bool
	}{{"true", true}, {"TRUE", true}, {"1", true}, {"", false}, {"false", false}, {"0", false}} {
		t.Setenv("CI", tc.value)
		if got := InCI(); got != tc.want {
			t.Errorf("CI=%q: InCI() = %v, want %v", tc.value, got, tc.want)
		}
	}
}

// fakeTB records whether Require skipped or failed; Skip and Fatal stop the
// calling goroutine like the real ones do.
type fakeTB struct {
	testing.TB
	skipped, failed bool
	msg             string
}

func (f *fakeTB) Helper() {}
func (f *fakeTB) Skip(args ...any) {
	f.skipped = true
	f.msg = args[0].(string)
	panic(f)
}
func (f *fakeTB) Fatalf(format string, args ...any) {
	f.failed = true
	f.msg = format
	panic(f)
}

func runRequire(name string) (tb *fakeTB, value string) {
	tb = &fakeTB{}
	defer func() {
		if r := recover(); r != nil && r != any(tb) {
			panic(r)
		}
	}()
	return tb, Require(tb, name)
}

func TestRequire(t *testing.T) {
	const name = "ELEMTA_TEST_TESTENV_UNSET_FOR_TEST"
	t.Setenv(StateDir, t.TempDir()) // no env file there

	t.Setenv("CI", "")
	tb, _ := runRequire(name)
	if !tb.skipped || tb.failed {
		t.Fatalf("without CI: skipped=%v failed=%v, want a skip", tb.skipped, tb.failed)
	}
	if want := "run `make testenv`"; !strings.Contains(tb.msg, want) {
		t.Errorf("skip message %q does not say %q", tb.msg, want)
	}

	t.Setenv("CI", "true")
	tb, _ = runRequire(name)
	if !tb.failed || tb.skipped {
		t.Fatalf("with CI=true: skipped=%v failed=%v, want a failure", tb.skipped, tb.failed)
	}

	t.Setenv(name, "127.0.0.1:1")
	tb, v := runRequire(name)
	if tb.failed || tb.skipped || v != "127.0.0.1:1" {
		t.Fatalf("set variable: skipped=%v failed=%v value=%q", tb.skipped, tb.failed, v)
	}
}

func runRequireTool(program string, modules ...string) (tb *fakeTB, path string) {
	tb = &fakeTB{}
	defer func() {
		if r := recover(); r != nil && r != any(tb) {
			panic(r)
		}
	}()
	return tb, RequireTool(tb, program, modules...)
}

func TestRequireTool(t *testing.T) {
	t.Setenv("CI", "")
	if tb, path := runRequireTool("sh"); tb.skipped || tb.failed || path == "" {
		t.Fatalf("sh: skipped=%v failed=%v path=%q", tb.skipped, tb.failed, path)
	}
	tb, _ := runRequireTool("elemta-no-such-tool")
	if !tb.skipped || !strings.Contains(tb.msg, "make testenv") {
		t.Fatalf("missing tool without CI: skipped=%v msg=%q, want a skip naming make testenv", tb.skipped, tb.msg)
	}
	t.Setenv("CI", "true")
	if tb, _ := runRequireTool("elemta-no-such-tool"); !tb.failed {
		t.Fatal("missing tool under CI=true must fail")
	}
	if _, err := exec.LookPath(Python); err == nil {
		if tb, _ := runRequireTool(Python, "elemta_no_such_module"); !tb.failed {
			t.Fatal("missing python module under CI=true must fail")
		}
	}
}
