package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/elemta/elemta/internal/admin"
	"github.com/elemta/elemta/pluginhost"
)

// TokenEnv names the environment variable holding the admin bearer token
// (instead of --token-file).
const TokenEnv = "ELEMTA_ADMIN_TOKEN"

// takeServer removes --server ADDR and --token-file F (or their =forms)
// from args and returns them.
func takeServer(args []string) (server, tokenFile string, rest []string) {
	for i := 0; i < len(args); i++ {
		a := args[i]
		name, val, hasVal := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !strings.HasPrefix(a, "-") || (name != "server" && name != "token-file") {
			rest = append(rest, a)
			continue
		}
		if a == "--" {
			rest = append(rest, args[i:]...)
			break
		}
		if !hasVal && i+1 < len(args) {
			i++
			val = args[i]
		}
		if name == "server" {
			server = val
		} else {
			tokenFile = val
		}
	}
	return server, tokenFile, rest
}

// client connects to the admin listener: server, else the [admin] listen
// of the config file; the token from tokenFile, $ELEMTA_ADMIN_TOKEN or the
// config's token_file.
func (a *app) client(server, tokenFile, cfgPath string) (*admin.Client, error) {
	token := os.Getenv(TokenEnv)
	if server == "" || (tokenFile == "" && token == "") {
		cfg, err := a.loadConfig(cfgPath)
		if err != nil {
			return nil, err
		}
		if server == "" {
			if !cfg.Admin.Enabled {
				return nil, fmt.Errorf("%s: [admin] is disabled: pass --server ADDR", cfg.File)
			}
			server = cfg.Admin.Listen
		}
		if tokenFile == "" && token == "" {
			tokenFile = cfg.Admin.TokenFile
		}
	}
	if tokenFile != "" {
		b, err := os.ReadFile(tokenFile)
		if err != nil {
			return nil, fmt.Errorf("token file: %w", err)
		}
		token, _, _ = strings.Cut(string(b), "\n")
		token = strings.TrimSpace(token)
	}
	return admin.NewClient(server, token)
}

func (a *app) printJSON(v any) {
	enc := json.NewEncoder(a.stdout)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// remotePlugins is `elemta plugins list|metrics --server ADDR`: the
// running server's instances with their live counters and last error.
func (a *app) remotePlugins(ctx context.Context, cmd, server, tokenFile string, args []string) int {
	fs := a.flagSet("plugins "+cmd, "plugins "+cmd+" --server ADDR [--token-file F] [--json]")
	asJSON := fs.Bool("json", false, "print JSON")
	rest, err := parse(fs, args)
	if err != nil {
		return usageError(err)
	}
	if len(rest) > 0 {
		return a.errorf("plugins %s --server: no files: the server's counters are shown", cmd)
	}
	c, err := a.client(server, tokenFile, "")
	if err != nil {
		return a.errorf("plugins %s: %v", cmd, err)
	}
	var ps []admin.PluginStatus
	if err := c.Do(ctx, "GET", "/api/v1/plugins", &ps); err != nil {
		return a.errorf("plugins %s: %v", cmd, err)
	}
	if *asJSON {
		a.printJSON(ps)
		return ExitAccept
	}
	stats := make([]pluginhost.PluginStats, len(ps))
	for i, p := range ps {
		stats[i] = pluginhost.PluginStats{Name: p.Name, Calls: p.Calls, Errors: p.Errors, Timeouts: p.Timeouts, Panics: p.Panics,
			Rejects: p.Rejects, Total: time.Duration(p.TotalMS * float64(time.Millisecond))}
	}
	fmt.Fprintf(a.stdout, "server: %s\n", server)
	a.printMetrics(stats, false)
	for _, p := range ps {
		if p.LastError != nil {
			fmt.Fprintf(a.stdout, "last error of %s at %s (%s): %s\n", p.Name, p.LastError.At.Format(time.RFC3339), p.LastError.Stage, p.LastError.Error)
		}
	}
	return ExitAccept
}

// remoteTest is `elemta plugins test --server ADDR NAME`: the instance's
// health check in the running server.
func (a *app) remoteTest(ctx context.Context, server, tokenFile string, args []string) int {
	fs := a.flagSet("plugins test", "plugins test --server ADDR [--token-file F] NAME")
	rest, err := parse(fs, args)
	if err != nil {
		return usageError(err)
	}
	if len(rest) != 1 {
		fs.Usage()
		return ExitError
	}
	c, err := a.client(server, tokenFile, "")
	if err != nil {
		return a.errorf("plugins test: %v", err)
	}
	var tr admin.TestResult
	if err := c.Do(ctx, "POST", "/api/v1/test/"+rest[0], &tr); err != nil {
		return a.errorf("plugins test: %v", err)
	}
	status, detail := "ok", fmt.Sprintf("%.3fms", tr.DurationMS)
	if !tr.OK {
		status, detail = "FAIL", tr.Error
	}
	fmt.Fprintf(a.stdout, "plugin %s (server: %s)\n%-28s %-4s %s\n", tr.Name, server, "health check", status, detail)
	if !tr.OK {
		fmt.Fprintln(a.stdout, "FAIL")
		return ExitError
	}
	fmt.Fprintln(a.stdout, "PASS")
	return ExitAccept
}

const queueUsage = "queue list|show ID|hold ID...|release ID...|retry ID...|flush|delete ID... --yes [--server ADDR] [--token-file F] [--config F] [--json]"

// queue is `elemta queue ...` against a running server (--server, else
// the config's [admin] listen).
func (a *app) queue(ctx context.Context, args []string) int {
	server, tokenFile, args := takeServer(args)
	fs := a.flagSet("queue", queueUsage)
	cfgPath := fs.String("config", "", "config file whose [admin] listen and token_file to use without --server")
	asJSON := fs.Bool("json", false, "print JSON")
	yes := fs.Bool("yes", false, "confirm delete: the messages are lost for good")
	rest, err := parse(fs, args)
	if err != nil {
		return usageError(err)
	}
	if len(rest) == 0 {
		fs.Usage()
		return ExitError
	}
	op, ids := rest[0], rest[1:]
	wantIDs := map[string]bool{"list": false, "flush": false, "show": true, "hold": true, "release": true, "retry": true, "delete": true}
	need, known := wantIDs[op]
	switch {
	case !known:
		return a.errorf("queue: unknown command %q (usage: elemta %s)", op, queueUsage)
	case need && len(ids) == 0:
		return a.errorf("queue %s: name the queue ids", op)
	case !need && len(ids) > 0:
		return a.errorf("queue %s: takes no ids", op)
	case op == "show" && len(ids) != 1:
		return a.errorf("queue show: one id")
	case op == "delete" && !*yes:
		return a.errorf("queue delete: the messages are lost for good (no delivery, no DSN): add --yes")
	}
	c, err := a.client(server, tokenFile, *cfgPath)
	if err != nil {
		return a.errorf("queue %s: %v", op, err)
	}
	switch op {
	case "list":
		var l admin.QueueList
		if err := c.Do(ctx, "GET", "/api/v1/queue", &l); err != nil {
			return a.errorf("queue list: %v", err)
		}
		if *asJSON {
			a.printJSON(l)
			return ExitAccept
		}
		tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tSTATE\tRECEIVED\tFROM\tRCPTS\tPENDING\tATTEMPTS\tSIZE\tNEXT\tLAST ERROR")
		for _, it := range l.Items {
			last := it.LastError
			if it.Error != "" {
				last = "unreadable: " + it.Error
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t%s\t%s\n", it.ID, it.State, it.ReceivedAt.Format(time.RFC3339),
				orDash(it.From), it.Recipients, it.Pending, it.Attempts, it.Size, it.NextAttempt.Format(time.RFC3339), orDash(last))
		}
		_ = tw.Flush()
		fmt.Fprintf(a.stdout, "%d entries", l.Total)
		if l.Truncated {
			fmt.Fprintf(a.stdout, " (%d shown)", len(l.Items))
		}
		fmt.Fprintln(a.stdout)
		return ExitAccept
	case "show":
		var body []byte
		if err := c.Do(ctx, "GET", "/api/v1/queue/"+url.PathEscape(ids[0]), &body); err != nil {
			return a.errorf("queue show: %v", err)
		}
		_, _ = a.stdout.Write(body)
		return ExitAccept
	case "flush":
		var r admin.OpResult
		if err := c.Do(ctx, "POST", "/api/v1/queue/flush", &r); err != nil {
			return a.errorf("queue flush: %v", err)
		}
		fmt.Fprintf(a.stdout, "%d entries due now\n", r.Count)
		return ExitAccept
	}
	failed := false
	for _, id := range ids {
		method, path := "POST", "/api/v1/queue/"+url.PathEscape(id)+"/"+op
		if op == "delete" {
			method, path = "DELETE", "/api/v1/queue/"+url.PathEscape(id)+"?confirm="+url.QueryEscape(id)
		}
		if err := c.Do(ctx, method, path, nil); err != nil {
			fmt.Fprintf(a.stderr, "elemta: queue %s %s: %v\n", op, id, err)
			failed = true
			continue
		}
		fmt.Fprintf(a.stdout, "%s: %s\n", id, map[string]string{"hold": "held", "release": "released", "retry": "due now", "delete": "deleted"}[op])
	}
	if failed {
		return ExitError
	}
	return ExitAccept
}
