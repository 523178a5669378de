// Package testenv connects integration tests to the loopback services started
// by tools/testenv/start.sh (unbound, redis, clamd, rspamd, postfix).
//
// A test asks for a service by the name of the environment variable that
// carries its address:
//
//	dns := testenv.Require(t, "ELEMTA_TEST_DNS") // "127.0.0.1:5353"
//
// The value comes from the process environment, or else from the env file that
// start.sh writes ($ELEMTA_TESTENV_DIR/env.sh, default <repo>/.testenv/env.sh,
// removed again by stop.sh), so a plain `go test ./...` after `make testenv`
// finds the services. When the variable is set nowhere the test is skipped
// with a message that says how to start the services; under CI=true it fails
// instead, because CI must never pass by skipping.
//
// Built-in plugins' integration tests use it, and so can a third-party
// plugin's: run tools/testenv/start.sh from an Elemta checkout and point
// ELEMTA_TESTENV_DIR at its state directory (or export the variables of its
// env.sh), and the test finds the same services.
//
// # Stability
//
// This package is part of Elemta's plugin SDK (the packages under pkg/ and
// registry/): it follows the core module's semantic version. The variable
// names are those tools/testenv/start.sh exports; new services add names.
package testenv

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// Variables set by tools/testenv/start.sh.
const (
	DNS         = "ELEMTA_TEST_DNS"               // host:port of the authoritative test DNS (udp+tcp)
	DNS6        = "ELEMTA_TEST_DNS6"              // the same DNS over IPv6: [::1]:port
	Clamd       = "ELEMTA_TEST_CLAMD"             // host:port of clamd
	ClamdSocket = "ELEMTA_TEST_CLAMD_SOCKET"      // path of clamd's unix socket
	Rspamd      = "ELEMTA_TEST_RSPAMD"            // base URL of rspamd's normal worker
	RspamdCtl   = "ELEMTA_TEST_RSPAMD_CONTROLLER" // base URL of rspamd's controller worker
	RspamdProxy = "ELEMTA_TEST_RSPAMD_PROXY"      // host:port of rspamd's proxy (milter) worker
	Redis       = "ELEMTA_TEST_REDIS"             // host:port of redis
	Keys        = "ELEMTA_TEST_KEYS"              // directory holding the DKIM test keys

	// The highly available Redis setups of tools/testenv/redis-ha.sh
	// (`make testenv-redis-ha`), in its own env file.
	RedisSentinel         = "ELEMTA_TEST_REDIS_SENTINEL"               // comma-separated sentinel addresses
	RedisSentinelMaster   = "ELEMTA_TEST_REDIS_SENTINEL_MASTER"        // the master's name
	RedisSentinelPassword = "ELEMTA_TEST_REDIS_SENTINEL_PASSWORD"      // the sentinels' requirepass
	RedisSentinelDataPass = "ELEMTA_TEST_REDIS_SENTINEL_DATA_PASSWORD" // the data nodes' requirepass
	RedisCluster          = "ELEMTA_TEST_REDIS_CLUSTER"                // comma-separated cluster masters
	RedisTLS              = "ELEMTA_TEST_REDIS_TLS"                    // host:port of the TLS-only server
	RedisTLSDir           = "ELEMTA_TEST_REDIS_TLS_DIR"                // ca.crt, client.crt, client.key
	RedisTLSUser          = "ELEMTA_TEST_REDIS_TLS_USER"               // its ACL user
	RedisTLSPassword      = "ELEMTA_TEST_REDIS_TLS_PASSWORD"           // and password
	RedisHAScript         = "ELEMTA_TEST_REDIS_HA_SCRIPT"              // redis-ha.sh (start revives a killed node)
	RedisHADir            = "ELEMTA_TEST_REDIS_HA_DIR"                 // its state directory (ELEMTA_TESTENV_HA_DIR)
	haEnvFile             = "redis-ha/env.sh"

	// Postfix (tools/testenv/postfix.sh): a private instance as a real SMTP peer.
	Postfix        = "ELEMTA_TEST_POSTFIX"         // host:port of its smtpd (8BITMIME, SMTPUTF8)
	Postfix7Bit    = "ELEMTA_TEST_POSTFIX_7BIT"    // host:port of its smtpd without 8BITMIME
	PostfixNextHop = "ELEMTA_TEST_POSTFIX_NEXTHOP" // host:port it relays mail for elemta.test to
	PostfixMaildir = "ELEMTA_TEST_POSTFIX_MAILDIR" // the Maildir it delivers example.test to
	StateDir       = "ELEMTA_TESTENV_DIR"          // state directory of the test environment
	envFileName    = "env.sh"
	defaultState   = ".testenv"
)

// Require returns the value of the environment variable name. When it is not
// set, the test is skipped, or failed when CI=true.
func Require(t testing.TB, name string) string {
	t.Helper()
	if v := Lookup(name); v != "" {
		return v
	}
	msg := fmt.Sprintf("%s is not set: run `make testenv` (tools/testenv/start.sh) to start the loopback test services", name)
	if strings.HasPrefix(name, "ELEMTA_TEST_REDIS_") {
		msg = fmt.Sprintf("%s is not set: run `make testenv-redis-ha` (tools/testenv/redis-ha.sh start) to start the Sentinel, Cluster and TLS Redis setups", name)
	}
	if InCI() {
		t.Fatalf("%s; CI=true, so a missing service is a failure", msg)
	}
	t.Skip(msg)
	return ""
}

// InCI reports whether the tests run under CI (CI=true or CI=1), where a
// missing service must fail the test instead of skipping it.
func InCI() bool {
	v := strings.ToLower(strings.TrimSpace(os.Getenv("CI")))
	return v == "true" || v == "1"
}

// Lookup returns the value of name from the environment or, when it is not
// set there, from the env file written by tools/testenv/start.sh. It returns
// "" when neither has it.
func Lookup(name string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	fileOnce.Do(func() {
		path := envFilePath()
		fileVars = readEnvFile(path)
		if path != "" {
			for k, v := range readEnvFile(filepath.Join(filepath.Dir(path), haEnvFile)) {
				if _, ok := fileVars[k]; !ok {
					fileVars[k] = v
				}
			}
		}
	})
	return fileVars[name]
}

var (
	fileOnce sync.Once
	fileVars map[string]string
)

// envFilePath returns where start.sh writes its env file: in
// $ELEMTA_TESTENV_DIR, or in .testenv at the root of the module that contains
// the working directory.
func envFilePath() string {
	if dir := os.Getenv(StateDir); dir != "" {
		return filepath.Join(dir, envFileName)
	}
	dir, err := os.Getwd()
	if err != nil {
		return ""
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return filepath.Join(dir, defaultState, envFileName)
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return ""
		}
		dir = parent
	}
}

// readEnvFile parses the lines `export NAME=VALUE` (VALUE optionally in single
// or double quotes) of the env file. A missing or unreadable file gives an
// empty map: the variables are then simply not set.
func readEnvFile(path string) map[string]string {
	vars := map[string]string{}
	if path == "" {
		return vars
	}
	f, err := os.Open(path)
	if err != nil {
		return vars
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		line, ok := strings.CutPrefix(line, "export ")
		if !ok {
			continue
		}
		name, value, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		if len(value) >= 2 && (value[0] == '\'' || value[0] == '"') && value[len(value)-1] == value[0] {
			value = value[1 : len(value)-1]
		}
		vars[strings.TrimSpace(name)] = value
	}
	return vars
}

// Python is Debian's interpreter: the one python3-dkim and python3-spf are
// installed for (tools/testenv/start.sh installs them).
const Python = "/usr/bin/python3"

// RequireTool checks that a tool the tests drive is installed: the program
// (a path, or a name looked up in PATH) and, for Python, the modules it
// must import. It returns the program's path. When the tool is missing the
// test is skipped, or failed when CI=true.
func RequireTool(t testing.TB, program string, pythonModules ...string) string {
	t.Helper()
	path, err := exec.LookPath(program)
	if err == nil && len(pythonModules) > 0 {
		err = toolCheck(path, pythonModules)
	}
	if err == nil {
		return path
	}
	msg := fmt.Sprintf("%s %s is not available (%v): run `make testenv` (tools/testenv/start.sh) to install it from Debian's packages",
		program, strings.Join(pythonModules, ", "), err)
	if InCI() {
		t.Fatalf("%s; CI=true, so a missing tool is a failure", msg)
	}
	t.Skip(msg)
	return ""
}

var (
	toolMu     sync.Mutex
	toolChecks = map[string]error{}
)

// toolCheck imports the modules with the interpreter at path, once per
// process for each combination.
func toolCheck(path string, modules []string) error {
	key := path + " " + strings.Join(modules, ",")
	toolMu.Lock()
	defer toolMu.Unlock()
	if err, ok := toolChecks[key]; ok {
		return err
	}
	out, err := exec.Command(path, "-c", "import "+strings.Join(modules, ", ")).CombinedOutput()
	if err != nil {
		err = fmt.Errorf("%w: %s", err, strings.TrimSpace(string(out)))
	}
	toolChecks[key] = err
	return err
}
