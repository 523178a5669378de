package rspamd

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/elemta/elemta/pkg/headerfold"
	"github.com/elemta/elemta/registry"
)

// Scanner is the rspamd plugin: a registry.AntispamPlugin and a
// registry.StageHandler.
type Scanner struct {
	cfg        Config
	host       registry.Host
	http       *httpClient
	actions    map[string]registry.Action
	sizeAction registry.Action
	sizeIsErr  bool
	// actionsSeen counts rspamd's answers by action
	// (elemta_plugin_rspamd_actions_total).
	actionsSeen registry.Counter
}

// New builds the plugin from its config. It does no I/O.
func New(cfg Config, host registry.Host) (*Scanner, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	a, ok, _ := cfg.sizeLimitAction()
	if host.Metrics == nil {
		host.Metrics = registry.NopMetrics{}
	}
	seen, err := host.Metrics.Counter("actions_total", "Messages rspamd checked in a stage, by the action it answered (\"no action\", \"add header\", \"reject\", ...).", "action")
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	return &Scanner{cfg: cfg, host: host, http: newHTTPClient(cfg), actions: cfg.actions(), sizeAction: a, sizeIsErr: !ok, actionsSeen: seen}, nil
}

// Check sends msg and its envelope to rspamd and returns the full reply.
func (s *Scanner) Check(ctx context.Context, msg *registry.Message, session *registry.Session) (*Reply, error) {
	if msg == nil {
		return nil, errors.New("check: no message")
	}
	if int64(len(msg.Raw)) > s.cfg.MaxSize {
		return nil, fmt.Errorf("check %d-byte message: %w: max_size is %d bytes", len(msg.Raw), ErrSizeLimit, s.cfg.MaxSize)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.cfg.Timeout.D())
		defer cancel()
	}
	env := msg.Envelope
	req := &Request{Message: msg.Raw, Helo: env.HELO, From: env.MailFrom, Rcpt: env.RcptTo,
		User: env.AuthUser, MTAName: s.host.Hostname}
	if env.ClientIP.IsValid() {
		req.IP = env.ClientIP.Unmap().String()
		if s.cfg.ResolveHostname && s.host.Resolver != nil {
			if names, err := s.host.Resolver.LookupAddr(ctx, req.IP); err == nil && len(names) > 0 {
				req.Hostname = strings.TrimSuffix(names[0], ".")
			}
		}
	}
	if session != nil {
		req.QueueID = session.ID
	}
	rep, err := s.http.Check(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("check %d-byte message: %w", len(msg.Raw), err)
	}
	return rep, nil
}

// ScanMessage classifies msg: infected (spam) when rspamd's action is
// reject, add header or rewrite subject. Threats lists the matched symbols.
func (s *Scanner) ScanMessage(ctx context.Context, msg *registry.Message) (*registry.ScanResult, error) {
	rep, err := s.Check(ctx, msg, nil)
	if err != nil {
		return nil, err
	}
	return scanResult(rep), nil
}

// GetScore returns rspamd's score for msg.
func (s *Scanner) GetScore(ctx context.Context, msg *registry.Message) (float64, error) {
	rep, err := s.Check(ctx, msg, nil)
	if err != nil {
		return 0, err
	}
	return rep.Score, nil
}

func scanResult(rep *Reply) *registry.ScanResult {
	sr := &registry.ScanResult{Status: registry.StatusClean, Score: rep.Score, Threats: rep.SymbolNames(),
		Details: fmt.Sprintf("%s, score %.2f/%.2f", rep.Action, rep.Score, rep.RequiredScore)}
	switch rep.Action {
	case ActionReject, ActionAddHeader, ActionRewriteSubject:
		sr.Status = registry.StatusInfected
	}
	return sr
}

// HandleStage checks the message and maps rspamd's action to a verdict,
// with header changes.
func (s *Scanner) HandleStage(ctx context.Context, _ registry.Stage, pc *registry.ProcessingContext) (*registry.Result, error) {
	rep, err := s.Check(ctx, pc.Message, pc.Session)
	if errors.Is(err, ErrSizeLimit) && !s.sizeIsErr {
		return &registry.Result{
			Verdict: verdict(s.sizeAction, "Message too large to be checked for spam"),
			Data:    &registry.ScanResult{Status: registry.StatusError, Details: err.Error()},
			Details: "not checked: " + err.Error(),
		}, nil
	}
	if err != nil {
		return nil, err
	}
	s.actionsSeen.Add(1, rep.Action) // one of DefaultActions: the client refuses any other
	sr := scanResult(rep)
	res := &registry.Result{Score: rep.Score, Data: sr, Details: sr.Details}
	if s.cfg.SpamHeaders {
		// Whatever the action: a sender's X-Spam-Score must never pass for ours.
		for _, name := range spamHeaders {
			res.RemoveHeaders = append(res.RemoveHeaders, registry.Removal{Name: name, Index: -1})
		}
	}
	text := rep.SMTPMessage()
	switch rep.Action {
	case ActionReject:
		if text == "" {
			text = "Spam message rejected"
		}
	case ActionSoftReject, ActionGreylist:
		if text == "" {
			text = "Try again later"
		}
	case ActionAddHeader:
		if s.cfg.SpamHeaders {
			res.AddHeaders = append(res.AddHeaders,
				registry.Field{Name: "X-Spam", Value: "Yes"},
				registry.Field{Name: "X-Spam-Score", Value: fmt.Sprintf("%.2f / %.2f", rep.Score, rep.RequiredScore)},
				registry.Field{Name: "X-Spam-Action", Value: rep.Action})
		}
	case ActionRewriteSubject:
		if s.cfg.RewriteSubject {
			subject := oneLine(rep.Subject)
			if subject == "" {
				subject = s.cfg.SubjectPrefix + pc.Message.Header.Get("Subject")
			}
			res.RemoveHeaders = append(res.RemoveHeaders, registry.Removal{Name: "Subject", Index: -1})
			res.AddHeaders = append(res.AddHeaders, registry.Field{Name: "Subject", Value: subject})
		}
	}
	if s.cfg.MilterHeaders {
		if err := s.milter(res, rep, pc.Message); err != nil {
			return nil, err
		}
	}
	res.Verdict = verdict(s.actions[rep.Action], text)
	eol := headerfold.EOL(pc.Message.Raw)
	for i, f := range res.AddHeaders { // rspamd's milter headers, a rewritten Subject
		res.AddHeaders[i].Value = headerfold.Value(f.Name, f.Value, eol)
	}
	return res, nil
}

// spamHeaders are the fields spam_headers adds for "add header" and
// removes from every message checked (and, through Config.OwnedHeaders,
// from every message whose check failed).
var spamHeaders = []string{"X-Spam", "X-Spam-Score", "X-Spam-Action"}

// milter applies milter.remove_headers (0: every field of that name; n > 0:
// the n-th; n < 0: the n-th from the end) and milter.add_headers.
func (s *Scanner) milter(res *registry.Result, rep *Reply, msg *registry.Message) error {
	if rep.Milter == nil {
		return nil
	}
	for _, name := range slices.Sorted(maps.Keys(rep.Milter.RemoveHeaders)) {
		n := rep.Milter.RemoveHeaders[name]
		switch {
		case n == 0:
			res.RemoveHeaders = append(res.RemoveHeaders, registry.Removal{Name: name, Index: -1})
		case n > 0:
			res.RemoveHeaders = append(res.RemoveHeaders, registry.Removal{Name: name, Index: n - 1})
		default:
			if i := len(msg.Header.Values(name)) + n; i >= 0 {
				res.RemoveHeaders = append(res.RemoveHeaders, registry.Removal{Name: name, Index: i})
			}
		}
	}
	add, err := rep.Milter.addHeaders()
	if err != nil {
		return err
	}
	for _, h := range add {
		if !validFieldName(h.Name) {
			continue // would not be one field; nothing to add
		}
		res.AddHeaders = append(res.AddHeaders, registry.Field{Name: h.Name, Value: oneLine(h.Value)})
	}
	return nil
}

// oneLine turns a value from rspamd's reply into one header line: line
// breaks (rspamd folds long values; anything may answer on its port) become
// spaces, so the value cannot end the field and start others.
func oneLine(v string) string {
	return strings.Map(func(r rune) rune {
		if r == '\r' || r == '\n' || r == 0 {
			return ' '
		}
		return r
	}, v)
}

// validFieldName reports whether name is an RFC 5322 field-name: printable
// US-ASCII except ':'.
func validFieldName(name string) bool {
	if name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; c < 33 || c > 126 || c == ':' {
			return false
		}
	}
	return true
}

func verdict(a registry.Action, text string) registry.Verdict {
	switch a {
	case registry.Reject:
		return registry.RejectVerdict(554, "5.7.1", text)
	case registry.TempFail:
		return registry.TempFailVerdict(451, "4.7.1", text)
	case registry.Quarantine:
		return registry.QuarantineVerdict(text)
	}
	return registry.AcceptVerdict()
}

// HealthCheck asks rspamd's /ping.
func (s *Scanner) HealthCheck(ctx context.Context) error {
	if err := s.http.Ping(ctx); err != nil {
		return fmt.Errorf("health check: %w", err)
	}
	return nil
}

// Close closes kept-alive connections. Safe without Start and more than once.
func (s *Scanner) Close() error {
	s.http.Close()
	return nil
}
