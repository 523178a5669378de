package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/elemta/elemta/pluginhost"
	"github.com/elemta/elemta/registry"
)

// stringList is a repeatable string flag.
type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(s string) error { *l = append(*l, s); return nil }

// scanStages are the stages `elemta scan` runs, in order.
var scanStages = []registry.Stage{registry.PreReception, registry.PostReception, registry.PreQueue}

// verdictJSON is a verdict with its reply filled in.
type verdictJSON struct {
	Action       string `json:"action"`
	Code         int    `json:"code"`
	EnhancedCode string `json:"enhanced_code"`
	Text         string `json:"text"`
}

func toVerdictJSON(v registry.Verdict) verdictJSON {
	code, enh, text := v.Reply()
	return verdictJSON{Action: v.Action.String(), Code: code, EnhancedCode: enh, Text: text}
}

type pluginResultJSON struct {
	Plugin     string           `json:"plugin"`
	Verdict    verdictJSON      `json:"verdict"`
	Score      float64          `json:"score,omitempty"`
	DurationMS float64          `json:"duration_ms"`
	Error      string           `json:"error,omitempty"`
	TimedOut   bool             `json:"timed_out,omitempty"`
	Panicked   bool             `json:"panicked,omitempty"`
	Details    string           `json:"details,omitempty"`
	AddHeaders []registry.Field `json:"add_headers,omitempty"`
}

type stageJSON struct {
	Stage     string             `json:"stage"`
	Verdict   verdictJSON        `json:"verdict"`
	DecidedBy string             `json:"decided_by,omitempty"`
	Score     float64            `json:"score,omitempty"`
	Results   []pluginResultJSON `json:"results"`
	Skipped   []string           `json:"skipped,omitempty"`
}

// fileReport is what `elemta scan --json` prints for each file.
type fileReport struct {
	File          string             `json:"file"`
	Error         string             `json:"error,omitempty"`
	Stages        []stageJSON        `json:"stages,omitempty"`
	NotRun        []string           `json:"not_run,omitempty"`
	Verdict       *verdictJSON       `json:"verdict,omitempty"`
	DecidedBy     string             `json:"decided_by,omitempty"`
	AddHeaders    []registry.Field   `json:"add_headers,omitempty"`
	RemoveHeaders []registry.Removal `json:"remove_headers,omitempty"`
	Written       string             `json:"written,omitempty"`

	action registry.Action
	msg    *registry.Message
}

func (a *app) scan(ctx context.Context, args []string, metrics bool) int {
	name, synopsis := "scan", "scan [flags] FILE..."
	if metrics {
		name, synopsis = "plugins metrics", "plugins metrics [flags] FILE..."
	}
	fs := a.flagSet(name, synopsis)
	cfgPath := fs.String("config", "", "config file (default ./elemta.toml, else the embedded default)")
	ipFlag := fs.String("ip", "", "client IP address of the envelope")
	helo := fs.String("helo", "", "HELO/EHLO name of the envelope")
	from := fs.String("from", "", "MAIL FROM address (empty: the null sender)")
	var rcpts stringList
	fs.Var(&rcpts, "rcpt", "RCPT TO address (repeatable)")
	asJSON := fs.Bool("json", false, "print JSON")
	outDir := ""
	if !metrics {
		fs.StringVar(&outDir, "out", "", "write each accepted or quarantined message, as it would be queued, to this directory")
	}
	files, err := parse(fs, args)
	if err != nil {
		return usageError(err)
	}
	if len(files) == 0 {
		fs.Usage()
		return ExitError
	}
	env := registry.Envelope{HELO: *helo, MailFrom: strings.Trim(*from, "<>"), RcptTo: rcpts}
	if *ipFlag != "" {
		if env.ClientIP, err = netip.ParseAddr(*ipFlag); err != nil {
			return a.errorf("%s: --ip: %v", name, err)
		}
	}
	if outDir != "" {
		if err := os.MkdirAll(outDir, 0o755); err != nil {
			return a.errorf("%s: --out: %v", name, err)
		}
	}
	cfg, err := a.loadConfig(*cfgPath)
	if err != nil {
		return a.errorf("%s: %v", name, err)
	}
	host, err := a.host(cfg)
	if err != nil {
		return a.errorf("%s: %v", "scan", err)
	}
	defer a.closeHost(host)
	mgr := pluginhost.NewManager(cfg.Plugins, pluginhost.WithHost(host))
	if err := mgr.LoadPlugins(ctx); err != nil {
		return a.errorf("%s: load plugins from %s: %v", name, cfg.File, err)
	}
	defer func() {
		if err := mgr.Close(); err != nil {
			a.log.Error("close plugins", "err", err)
		}
	}()

	var reports []*fileReport
	written := map[string]string{} // output path -> input file
	worst, failed := registry.Accept, false
	for _, f := range files {
		if ctx.Err() != nil {
			return a.errorf("%s: %v", name, ctx.Err())
		}
		rep := a.scanFile(ctx, mgr, f, env, session())
		if rep.Error == "" && outDir != "" {
			rep.Error = writeOut(rep, outDir, written)
		}
		if rep.Error != "" {
			failed = true
			fmt.Fprintf(a.stderr, "elemta: %s: %s\n", name, rep.Error)
		} else {
			worst = max(worst, rep.action)
		}
		reports = append(reports, rep)
	}
	switch {
	case metrics:
		a.printMetrics(mgr.Stats(), *asJSON)
	case *asJSON:
		enc := json.NewEncoder(a.stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(reports)
	default:
		for _, r := range reports {
			printReport(a.stdout, r)
		}
	}
	if failed {
		return ExitError
	}
	return exitStatus(worst)
}

func session() *registry.Session {
	name, _ := os.Hostname()
	return &registry.Session{ID: "scan", Hostname: name}
}

func exitStatus(a registry.Action) int {
	switch a {
	case registry.Reject:
		return ExitReject
	case registry.TempFail:
		return ExitTempFail
	case registry.Quarantine:
		return ExitQuarantine
	}
	return ExitAccept
}

// scanFile runs the scan stages on one file. A reject or tempfail ends the
// scan as it would end the SMTP transaction.
func (a *app) scanFile(ctx context.Context, mgr *pluginhost.Manager, file string, env registry.Envelope, s *registry.Session) *fileReport {
	rep := &fileReport{File: file}
	raw, err := os.ReadFile(file)
	if err != nil {
		rep.Error = fmt.Sprintf("read message: %v", err)
		return rep
	}
	msg, err := registry.ParseMessage(raw, env)
	if err != nil {
		rep.Error = fmt.Sprintf("%s: %v", file, err)
		return rep
	}
	pc := registry.NewProcessingContext(msg, s)
	final, decidedBy := registry.AcceptVerdict(), ""
	for i, stage := range scanStages {
		sr, err := mgr.ExecuteStage(ctx, stage, pc)
		if err != nil {
			rep.Error = fmt.Sprintf("%s: %v", file, err)
			return rep
		}
		rep.Stages = append(rep.Stages, stageToJSON(sr))
		rep.AddHeaders = append(rep.AddHeaders, sr.AddHeaders...)
		rep.RemoveHeaders = append(rep.RemoveHeaders, sr.RemoveHeaders...)
		if sr.Verdict.Action > final.Action {
			final, decidedBy = sr.Verdict, sr.DecidedBy
		}
		if sr.Verdict.Action >= registry.TempFail {
			for _, later := range scanStages[i+1:] {
				rep.NotRun = append(rep.NotRun, later.String())
			}
			break
		}
	}
	rep.AddHeaders = append(msg.AddedHeaders(), rep.AddHeaders...)
	v := toVerdictJSON(final)
	rep.Verdict, rep.DecidedBy, rep.action = &v, decidedBy, final.Action
	rep.msg = msg
	return rep
}

func stageToJSON(sr *pluginhost.StageResult) stageJSON {
	st := stageJSON{Stage: sr.Stage.String(), Verdict: toVerdictJSON(sr.Verdict), DecidedBy: sr.DecidedBy,
		Score: sr.Score, Skipped: sr.Skipped, Results: []pluginResultJSON{}}
	for _, r := range sr.Results {
		pr := pluginResultJSON{Plugin: r.Plugin, Verdict: toVerdictJSON(r.Verdict), Score: r.Score,
			DurationMS: float64(r.Duration) / float64(time.Millisecond), TimedOut: r.TimedOut,
			Panicked: r.Panicked, Details: r.Details, AddHeaders: r.AddHeaders}
		if r.Err != nil {
			pr.Error = r.Err.Error()
		}
		st.Results = append(st.Results, pr)
	}
	return st
}

// writeOut writes an accepted or quarantined message as it would be
// queued: header changes applied, every other byte as received. It
// returns an error text, or "".
func writeOut(rep *fileReport, dir string, written map[string]string) string {
	msg := rep.msg
	if rep.action >= registry.TempFail {
		return "" // not queued: nothing to write
	}
	out := filepath.Join(dir, filepath.Base(rep.File))
	if prev, ok := written[out]; ok {
		return fmt.Sprintf("--out: %s and %s would both be written to %s", prev, rep.File, out)
	}
	written[out] = rep.File
	// Fields recorded with AddHeader are prepended by Rewrite itself.
	add := rep.AddHeaders[len(msg.AddedHeaders()):]
	if err := os.WriteFile(out, msg.Rewrite(add, rep.RemoveHeaders), 0o644); err != nil {
		return fmt.Sprintf("--out: write %s: %v", rep.File, err)
	}
	rep.Written = out
	return ""
}

func printReport(w io.Writer, r *fileReport) {
	if r.Error != "" {
		fmt.Fprintf(w, "%s: error: %s\n\n", r.File, r.Error)
		return
	}
	fmt.Fprintf(w, "%s\n", r.File)
	for _, st := range r.Stages {
		if len(st.Results) == 0 && len(st.Skipped) == 0 {
			fmt.Fprintf(w, "  %-15s (no plugins)\n", st.Stage)
			continue
		}
		fmt.Fprintf(w, "  %s\n", st.Stage)
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		for _, p := range st.Results {
			flags := ""
			if p.TimedOut {
				flags += " TIMED OUT"
			}
			if p.Panicked {
				flags += " PANICKED"
			}
			fmt.Fprintf(tw, "    %s\t%s %d %s\t%.2fms%s\t%s\n", p.Plugin, p.Verdict.Action, p.Verdict.Code, p.Verdict.EnhancedCode, p.DurationMS, flags, p.Details)
			if p.Error != "" {
				fmt.Fprintf(tw, "    \terror: %s\n", p.Error)
			}
		}
		for _, s := range st.Skipped {
			fmt.Fprintf(tw, "    %s\tskipped (an earlier plugin rejected)\n", s)
		}
		_ = tw.Flush()
	}
	for _, s := range r.NotRun {
		fmt.Fprintf(w, "  %-15s not run (message refused)\n", s)
	}
	decided := ""
	if r.DecidedBy != "" {
		decided = " by " + r.DecidedBy
	}
	fmt.Fprintf(w, "  verdict: %s (%d %s %s)%s\n", r.Verdict.Action, r.Verdict.Code, r.Verdict.EnhancedCode, r.Verdict.Text, decided)
	for _, f := range r.AddHeaders {
		fmt.Fprintf(w, "  add header: %s: %s\n", f.Name, f.Value)
	}
	for _, rm := range r.RemoveHeaders {
		which := "every"
		if rm.Index >= 0 {
			which = fmt.Sprintf("#%d", rm.Index+1)
		}
		fmt.Fprintf(w, "  remove header: %s (%s)\n", rm.Name, which)
	}
	if r.Written != "" {
		fmt.Fprintf(w, "  written: %s\n", r.Written)
	}
	fmt.Fprintln(w)
}
