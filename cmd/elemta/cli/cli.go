// Package cli is the elemta command line: `elemta scan`, `elemta plugins
// list|test|metrics`, `elemta config check`, `elemta serve`, `elemta send`,
// `elemta version`. It holds no
// plugin imports: the binary's main package links the plugins (gen/, or
// the package tools/elemta-build generates) and passes their manifest.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/elemta/elemta/internal/config"
	"github.com/elemta/elemta/internal/resolver"
	"github.com/elemta/elemta/pluginhost"
	"github.com/elemta/elemta/registry"
)

// Exit statuses. A scan exits with the status of its most severe verdict;
// a file that cannot be read or parsed makes it exit with ExitError.
const (
	ExitAccept     = 0
	ExitError      = 1 // usage, config or input error; a failed plugin test
	ExitReject     = 2
	ExitTempFail   = 3
	ExitQuarantine = 4
)

const usage = `usage: elemta [-log-level LEVEL] COMMAND [ARGS]

Commands:
  scan [--config F] [--ip IP] [--helo NAME] [--from ADDR] [--rcpt ADDR]... [--json] [--out DIR] FILE...
        run pre-reception, post-reception and pre-queue on each message
  plugins list [--config F] [--json]
        list the compiled-in plugins and whether the config enables them
  plugins test [--config F] NAME
        build a plugin from config, run its health check and a self-test message
  plugins metrics [--config F] [--json] FILE...
        scan the files and print each plugin's counters
  config check [F]
        validate a config file (default: ./elemta.toml, else the embedded default)
  config default
        print the embedded default config
  serve [--config F]
        run the SMTP server ([server] table): receive, run the stages, spool, deliver
  send [--server HOST:PORT] [--helo NAME] [--from ADDR] --rcpt ADDR... FILE...
        submit each file over SMTP and print the server's reply
        (exit 0 accepted, 2 refused with 5xx, 3 refused with 4xx)
  version
        print the versions of Elemta, Go and the compiled-in plugins

Config: --config F, else ./elemta.toml, else the embedded default config.
Exit status of scan: 0 accept, 2 reject, 3 tempfail, 4 quarantine (the most
severe verdict of all files); 1 for usage, config or input errors.
`

// Main runs the elemta command with args (without the program name) and
// returns the exit status. manifest lists the plugins the binary must
// have registered (gen.Manifest).
func Main(ctx context.Context, args []string, manifest []string) int {
	return MainIO(ctx, args, manifest, os.Stdout, os.Stderr)
}

// MainIO is Main writing to stdout and stderr, for tests and embedders.
func MainIO(ctx context.Context, args []string, manifest []string, stdout, stderr io.Writer) int {
	a := &app{stdout: stdout, stderr: stderr}
	fs := flag.NewFlagSet("elemta", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage) }
	level := fs.String("log-level", "warn", "log level: debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return usageError(err)
	}
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(*level)); err != nil {
		fmt.Fprintf(stderr, "elemta: -log-level: %v\n", err)
		return ExitError
	}
	a.log = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: lv}))

	if err := pluginhost.CheckManifest(manifest); err != nil {
		fmt.Fprintf(stderr, "elemta: %v\n", err)
		return ExitError
	}
	rest := fs.Args()
	if len(rest) == 0 {
		fmt.Fprint(stderr, usage)
		return ExitError
	}
	cmd, rest := rest[0], rest[1:]
	sub := ""
	if len(rest) > 0 {
		sub = rest[0]
	}
	switch {
	case cmd == "scan":
		return a.scan(ctx, rest, false)
	case cmd == "plugins" && sub == "list":
		return a.pluginsList(rest[1:])
	case cmd == "plugins" && sub == "test":
		return a.pluginsTest(ctx, rest[1:])
	case cmd == "plugins" && sub == "metrics":
		return a.scan(ctx, rest[1:], true)
	case cmd == "config" && sub == "check":
		return a.configCheck(rest[1:])
	case cmd == "config" && sub == "default":
		_, _ = stdout.Write(config.DefaultTOML())
		return ExitAccept
	case cmd == "serve":
		return a.serve(ctx, rest)
	case cmd == "send":
		return a.send(ctx, rest)
	case cmd == "version":
		return a.version()
	case cmd == "help" || cmd == "-h" || cmd == "--help":
		fmt.Fprint(stdout, usage)
		return ExitAccept
	}
	fmt.Fprintf(stderr, "elemta: unknown command %q\n\n%s", strings.TrimSpace(cmd+" "+sub), usage)
	return ExitError
}

type app struct {
	stdout, stderr io.Writer
	log            *slog.Logger
}

func (a *app) errorf(format string, args ...any) int {
	fmt.Fprintf(a.stderr, "elemta: "+format+"\n", args...)
	return ExitError
}

func usageError(err error) int {
	if errors.Is(err, flag.ErrHelp) {
		return ExitAccept
	}
	return ExitError
}

// flagSet returns a flag set for a subcommand that reports to stderr.
func (a *app) flagSet(name, synopsis string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(a.stderr)
	fs.Usage = func() {
		fmt.Fprintf(a.stderr, "usage: elemta %s\n", synopsis)
		fs.PrintDefaults()
	}
	return fs
}

// parse parses args allowing flags after positional arguments
// (`elemta scan a.eml --json`); "--" ends the flags.
func parse(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		if args[0] == "--" {
			return append(pos, args[1:]...), nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// loadConfig finds and parses the config, logging its warnings.
func (a *app) loadConfig(path string) (*config.Config, error) {
	cfg, err := config.Find(path)
	if err != nil {
		return nil, err
	}
	for _, w := range cfg.Warnings {
		a.log.Warn(w)
	}
	a.log.Debug("config loaded", "file", cfg.File, "plugins", cfg.Plugins.Plugins)
	return cfg, nil
}

// host is what the plugins get from this process: one resolver, built
// from the [dns] table, shared by every plugin.
func (a *app) host(cfg *config.Config) (registry.Host, error) {
	name, err := os.Hostname()
	if err != nil {
		name = "localhost"
	}
	res, err := resolver.New(cfg.DNS, resolver.Options{})
	if err != nil {
		return registry.Host{}, fmt.Errorf("%s: [dns]: %w", cfg.File, err)
	}
	h := registry.Host{Logger: a.log, Hostname: name, DataDir: "var", Resolver: res}
	if cfg.Store.Enabled() {
		// One pool for the process ([store]); it does not connect yet, so
		// an unreachable Redis does not stop start-up (the plugins' on_error
		// applies until it answers).
		if h.Redis, err = cfg.Store.NewClient(); err != nil {
			return registry.Host{}, fmt.Errorf("%s: [store]: %w", cfg.File, err)
		}
		a.log.Debug("shared redis pool", "store", cfg.Store.String())
	}
	return h, nil
}

// closeHost closes what host opened (the [store] pool), after the plugins.
func (a *app) closeHost(h registry.Host) {
	if h.Redis == nil {
		return
	}
	if err := h.Redis.Close(); err != nil {
		a.log.Error("close the [store] redis pool", "err", err)
	}
}
