package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/elemta/elemta/internal/buildinfo"
	"github.com/elemta/elemta/internal/serve"
	"github.com/elemta/elemta/pluginhost"
	"github.com/elemta/elemta/registry"
)

type pluginJSON struct {
	Name          string   `json:"name"`
	Version       string   `json:"version,omitempty"`
	Description   string   `json:"description,omitempty"`
	Types         []string `json:"types"`
	Stages        []string `json:"stages"`
	Produces      []string `json:"produces,omitempty"`
	Consumes      []string `json:"consumes,omitempty"`
	Package       string   `json:"package"`
	Module        string   `json:"module,omitempty"`
	ModuleVersion string   `json:"module_version,omitempty"`
	Enabled       bool     `json:"enabled"`
	// Instances are the enabled instances of the plugin, in config order:
	// "contentfilter", "contentfilter/strict".
	Instances []string `json:"instances,omitempty"`
}

func (a *app) pluginsList(args []string) int {
	fs := a.flagSet("plugins list", "plugins list [--config F] [--json] [--server [--pid-file P]]")
	cfgPath := fs.String("config", "", "config file (default ./elemta.toml, else the embedded default)")
	asJSON := fs.Bool("json", false, "print JSON")
	server := fs.Bool("server", false, "list what the running server (found by its pid file) serves: its binary's plugins and the instances of its config now")
	pidFile := fs.String("pid-file", "", "with --server: the server's pid file (default: from the config)")
	rest, err := parse(fs, args)
	if err != nil {
		return usageError(err)
	}
	if len(rest) > 0 {
		fs.Usage()
		return ExitError
	}
	var list []pluginJSON
	var source string
	if *server {
		if list, source, err = a.serverPlugins(*cfgPath, *pidFile); err != nil {
			return a.errorf("plugins list --server: %v", err)
		}
	} else {
		cfg, err := a.loadConfig(*cfgPath)
		if err != nil {
			return a.errorf("plugins list: %v", err)
		}
		list, source = describePlugins(cfg.Plugins.Instances), "config: "+cfg.File
	}
	if *asJSON {
		enc := json.NewEncoder(a.stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(list)
		return ExitAccept
	}
	fmt.Fprintln(a.stdout, source)
	tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tENABLED\tTYPES\tSTAGES\tVERSION\tPACKAGE\tMODULE\tINSTANCES")
	for _, p := range list {
		enabled := "no"
		if p.Enabled {
			enabled = "yes"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", p.Name, enabled, strings.Join(p.Types, ","),
			strings.Join(p.Stages, ","), orDash(p.Version), p.Package, orDash(strings.TrimSpace(p.Module+" "+p.ModuleVersion)),
			orDash(strings.Join(p.Instances, ",")))
	}
	_ = tw.Flush()
	return ExitAccept
}

// describePlugins lists the compiled-in plugins with their enabled
// instances (instances(name): in config order).
func describePlugins(instances func(name string) []string) []pluginJSON {
	info, haveInfo := buildinfo.Read()
	list := []pluginJSON{}
	for _, m := range pluginhost.Modules() {
		p := pluginJSON{Name: m.Name, Version: m.Version, Description: m.Description, Package: m.Package,
			Produces: m.Produces, Consumes: m.Consumes, Instances: instances(m.Name)}
		p.Enabled = len(p.Instances) > 0
		for _, t := range m.Types {
			p.Types = append(p.Types, string(t))
		}
		for _, s := range m.Stages {
			p.Stages = append(p.Stages, s.String())
		}
		if haveInfo {
			if mod, ok := info.ModuleOf(m.Package); ok {
				p.Module, p.ModuleVersion = mod.Path, mod.EffectiveVersion()
			}
		}
		list = append(list, p)
	}
	return list
}

// describeServer is what the serving process writes to its "serving"
// status file (serve.DaemonOptions.Describe): this binary's plugins and
// the instances of the manager serving now.
func describeServer(srv *serve.Server) any {
	loaded := srv.Plugins().Loaded()
	return describePlugins(func(name string) []string {
		var out []string
		for _, id := range loaded {
			if typ, _, _ := strings.Cut(id, "/"); typ == name {
				out = append(out, id)
			}
		}
		return out
	})
}

// serverPlugins reads what the running server wrote with describeServer.
func (a *app) serverPlugins(cfgPath, pidFile string) ([]pluginJSON, string, error) {
	if pidFile == "" {
		cfg, err := a.loadConfig(cfgPath)
		if err != nil {
			return nil, "", err
		}
		pidFile = cfg.Server.PIDPath()
	}
	pid, err := serve.ReadPID(pidFile)
	if err != nil {
		return nil, "", fmt.Errorf("is the server running? %w", err)
	}
	if err := syscall.Kill(pid, 0); err != nil {
		return nil, "", fmt.Errorf("pid %d (from %s) is not running: %w", pid, pidFile, err)
	}
	st, err := serve.ReadStatus(pidFile, "serving")
	if err != nil {
		return nil, "", err
	}
	if st.PID != pid {
		return nil, "", fmt.Errorf("%s describes pid %d, the pid file names %d (an upgrade in progress?)", serve.StatusPath(pidFile, "serving"), st.PID, pid)
	}
	var list []pluginJSON
	if err := json.Unmarshal(st.Report, &list); err != nil {
		return nil, "", fmt.Errorf("%s: %w", serve.StatusPath(pidFile, "serving"), err)
	}
	return list, fmt.Sprintf("server: pid %d", pid), nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// selfTestMessage is the message `elemta plugins test` runs through a plugin.
const selfTestMessage = "Return-Path: <sender@example.com>\r\n" +
	"From: Sender <sender@example.com>\r\n" +
	"To: Recipient <recipient@example.net>\r\n" +
	"Subject: Elemta plugin self-test\r\n" +
	"Date: Mon, 02 Jan 2006 15:04:05 +0000\r\n" +
	"Message-ID: <self-test@elemta.invalid>\r\n" +
	"MIME-Version: 1.0\r\n" +
	"Content-Type: text/plain; charset=utf-8\r\n" +
	"\r\n" +
	"This is a harmless message sent by `elemta plugins test`.\r\n"

func (a *app) pluginsTest(ctx context.Context, args []string) int {
	fs := a.flagSet("plugins test", "plugins test [--config F] NAME")
	cfgPath := fs.String("config", "", "config file (default ./elemta.toml, else the embedded default)")
	rest, err := parse(fs, args)
	if err != nil {
		return usageError(err)
	}
	if len(rest) != 1 {
		fs.Usage()
		return ExitError
	}
	name := rest[0]
	typ, _, _ := strings.Cut(name, "/") // an instance ID: "contentfilter/strict"
	if _, ok := pluginhost.Lookup(typ); !ok {
		var names []string
		for _, m := range pluginhost.Modules() {
			names = append(names, m.Name)
		}
		return a.errorf("plugins test: no plugin %q is compiled into this binary (compiled in: %s)", typ, strings.Join(names, ", "))
	}
	cfg, err := a.loadConfig(*cfgPath)
	if err != nil {
		return a.errorf("plugins test: %v", err)
	}
	settings, err := cfg.Plugins.Settings(name)
	if err != nil {
		return a.errorf("plugins test: %v", err)
	}
	host, err := a.host(cfg)
	if err != nil {
		return a.errorf("%s: %v", "plugins test", err)
	}
	defer a.closeHost(host)
	mgr := pluginhost.NewManager(cfg.Plugins, pluginhost.WithHost(host))
	defer func() {
		if err := mgr.Close(); err != nil {
			a.log.Error("close plugins", "err", err)
		}
	}()

	failed := false
	step := func(what string, err error, detail string) {
		status := "ok"
		if err != nil {
			status, failed = "FAIL", true
			detail = err.Error()
		}
		fmt.Fprintf(a.stdout, "%-28s %-4s %s\n", what, status, detail)
	}
	fmt.Fprintf(a.stdout, "plugin %s (config: %s)\n", name, cfg.File)
	start := time.Now()
	err = mgr.LoadPlugin(ctx, name)
	step("build and start", err, time.Since(start).Round(time.Microsecond).String())
	if err != nil {
		return ExitError
	}
	if iso := settings.Isolation; iso.Isolated() {
		for _, ws := range mgr.WorkerStats() {
			if ws.Name == name {
				fmt.Fprintf(a.stdout, "%-28s %-4s %d of %d workers, pids %v, memory_limit %s, max_requests %d\n",
					"isolation = process", "ok", ws.Live, iso.Workers, ws.PIDs, pluginhost.ByteSize(iso.MemoryLimit), iso.MaxRequests)
			}
		}
	}
	start = time.Now()
	err = mgr.HealthCheck(ctx, name)
	step("health check", err, time.Since(start).Round(time.Microsecond).String())

	env := registry.Envelope{HELO: "mail.example.com", MailFrom: "sender@example.com", RcptTo: []string{"recipient@example.net"}}
	env.ClientIP, _ = parseAddr("192.0.2.1")
	msg, err := registry.ParseMessage([]byte(selfTestMessage), env)
	if err != nil {
		return a.errorf("plugins test: built-in self-test message: %v", err)
	}
	pc := registry.NewProcessingContext(msg, session())
	for _, stage := range settings.Stages {
		sr, err := mgr.ExecuteStage(ctx, stage, pc)
		if err != nil {
			step("self-test at "+stage.String(), err, "")
			continue
		}
		for _, r := range sr.Results {
			var rerr error
			if r.Err != nil {
				rerr = r.Err
			}
			step("self-test at "+stage.String(), rerr, fmt.Sprintf("%s in %v: %s", r.Verdict, r.Duration.Round(time.Microsecond), r.Details))
		}
	}
	if len(settings.Stages) == 0 {
		fmt.Fprintf(a.stdout, "%-28s %-4s %s\n", "self-test", "-", "the plugin runs in no stage")
	}
	if failed {
		fmt.Fprintf(a.stdout, "FAIL\n")
		return ExitError
	}
	fmt.Fprintf(a.stdout, "PASS\n")
	return ExitAccept
}

func (a *app) printMetrics(stats []pluginhost.PluginStats, asJSON bool) {
	if asJSON {
		type statJSON struct {
			Plugin   string  `json:"plugin"`
			Calls    int64   `json:"calls"`
			Errors   int64   `json:"errors"`
			Timeouts int64   `json:"timeouts"`
			Panics   int64   `json:"panics"`
			Rejects  int64   `json:"rejects"`
			TotalMS  float64 `json:"total_ms"`
		}
		out := []statJSON{}
		for _, s := range stats {
			out = append(out, statJSON{s.Name, s.Calls, s.Errors, s.Timeouts, s.Panics, s.Rejects, float64(s.Total) / float64(time.Millisecond)})
		}
		enc := json.NewEncoder(a.stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(out)
		return
	}
	tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "PLUGIN\tCALLS\tERRORS\tTIMEOUTS\tPANICS\tREJECTS\tTOTAL\tMEAN\t")
	for _, s := range stats {
		mean := time.Duration(0)
		if s.Calls > 0 {
			mean = s.Total / time.Duration(s.Calls)
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%v\t%v\t\n", s.Name, s.Calls, s.Errors, s.Timeouts, s.Panics, s.Rejects,
			s.Total.Round(time.Microsecond), mean.Round(time.Microsecond))
	}
	_ = tw.Flush()
}
