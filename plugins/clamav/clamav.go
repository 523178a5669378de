package clamav

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/elemta/elemta/pkg/headerfold"
	"github.com/elemta/elemta/pkg/resultcache"
	"github.com/elemta/elemta/registry"
)

// Scanner is the clamav plugin: a registry.AntivirusPlugin and a
// registry.StageHandler.
type Scanner struct {
	cfg        Config
	host       registry.Host
	client     *client
	cache      *cache
	sizeAction registry.Action
	sizeIsErr  bool
	// infections counts infected messages by signature
	// (elemta_plugin_clamav_infections_total).
	infections registry.Counter
}

// New builds the plugin from its config. It does no I/O.
func New(cfg Config, host registry.Host) (*Scanner, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	servers, _ := cfg.servers()
	action, ok, _ := cfg.sizeLimitAction()
	if host.Clock == nil {
		host.Clock = registry.SystemClock{}
	}
	if host.Metrics == nil {
		host.Metrics = registry.NopMetrics{}
	}
	infections, err := host.Metrics.Counter("infections_total", "Messages found infected, by signature (clamd's name of the threat).", "signature")
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	s := &Scanner{cfg: cfg, host: host, sizeAction: action, sizeIsErr: !ok, infections: infections}
	s.client = newClient(servers, clientOptions{
		ConnectTimeout: cfg.ConnectTimeout.D(),
		IOTimeout:      cfg.Timeout.D(),
		ChunkSize:      cfg.ChunkSize,
		MaxReply:       cfg.MaxReplySize,
		MaxIdle:        cfg.MaxIdleConns,
		IdleTimeout:    cfg.IdleTimeout.D(),
		RetryAfter:     cfg.RetryAfter.D(),
		Now:            host.Clock.Now,
	})
	cache, err := newCache(cfg, host)
	if err != nil {
		return nil, err
	}
	s.cache = cache
	return s, nil
}

// GetInfo describes the plugin.
func (s *Scanner) GetInfo() *registry.PluginInfo {
	return &registry.PluginInfo{Name: "clamav", Version: "1.0.0", Type: registry.PluginTypeAntivirus,
		Description: "ClamAV (clamd) malware scanner", Author: "Elemta"}
}

// ScanMessage scans the whole message with clamd. A message larger than
// max_size, or refused by clamd as too large, gives an error wrapping
// ErrSizeLimit; one that clamd scanned only in part (a
// "Heuristics.Limits.Exceeded.*" reply) an error wrapping ErrLimitsExceeded.
// Neither is ever reported as clean.
func (s *Scanner) ScanMessage(ctx context.Context, msg *registry.Message) (*registry.ScanResult, error) {
	sr, _, err := s.scan(ctx, msg)
	return sr, err
}

// scan returns the result and whether it came from the cache.
func (s *Scanner) scan(ctx context.Context, msg *registry.Message) (*registry.ScanResult, bool, error) {
	if msg == nil {
		return nil, false, errors.New("scan: no message")
	}
	if int64(len(msg.Raw)) > s.cfg.MaxSize {
		return nil, false, fmt.Errorf("scan %d-byte message: %w: max_size is %d bytes", len(msg.Raw), ErrSizeLimit, s.cfg.MaxSize)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.cfg.Timeout.D())
		defer cancel()
	}
	var key string
	if s.cache != nil {
		if key = s.cache.key(msg); key != "" {
			if sr, ok := s.cache.get(ctx, key); ok {
				return sr, true, nil
			}
		}
	}
	rep, err := s.client.Scan(ctx, msg.Raw)
	if err != nil {
		return nil, false, fmt.Errorf("scan %d-byte message: %w", len(msg.Raw), err)
	}
	if rep.Exceeded {
		// Not cached: clamd does not cache such results either, and a raised
		// limit must take effect at once.
		return nil, false, fmt.Errorf("scan %d-byte message: %w", len(msg.Raw), &LimitError{Name: rep.Viruses[0], Server: rep.Server})
	}
	sr := &registry.ScanResult{Status: registry.StatusClean, Details: "clean (" + rep.Server + ")"}
	if rep.Infected {
		sr.Status = registry.StatusInfected
		sr.Threats = rep.Viruses
		sr.Details = "infected: " + strings.Join(rep.Viruses, ", ") + " (" + rep.Server + ")"
	}
	if key != "" {
		s.cache.put(ctx, key, sr)
	}
	return sr, false, nil
}

// HandleStage scans the message and turns the result into a verdict.
func (s *Scanner) HandleStage(ctx context.Context, _ registry.Stage, pc *registry.ProcessingContext) (*registry.Result, error) {
	res, err := s.handle(ctx, pc)
	if res != nil {
		eol := headerfold.EOL(pc.Message.Raw)
		for i, f := range res.AddHeaders { // a list of virus names can be long
			res.AddHeaders[i].Value = headerfold.Value(f.Name, f.Value, eol)
		}
	}
	return res, err
}

func (s *Scanner) handle(ctx context.Context, pc *registry.ProcessingContext) (*registry.Result, error) {
	sr, cached, err := s.scan(ctx, pc.Message)
	var limit *LimitError
	switch {
	case errors.Is(err, ErrSizeLimit) && !s.sizeIsErr:
		res := &registry.Result{
			Verdict: s.verdict(s.sizeAction, 552, "5.3.4", "Message too large to be scanned for viruses"),
			Data:    &registry.ScanResult{Status: registry.StatusError, Details: err.Error()},
			Details: "not scanned: " + err.Error(),
		}
		s.headers(res, "Unscanned (too large)")
		return res, nil
	case errors.As(err, &limit):
		res := &registry.Result{
			Verdict: s.verdict(s.cfg.OnLimitsExceeded, 554, "5.7.0", "Message could not be fully scanned for viruses ("+limit.Limit()+" exceeded)"),
			Data:    &registry.ScanResult{Status: registry.StatusError, Details: err.Error()},
			Details: "not completely scanned: " + err.Error(),
		}
		s.headers(res, "Unscanned ("+limit.Limit()+" exceeded)")
		return res, nil
	case err != nil:
		return nil, err
	}
	res := &registry.Result{Data: sr, Details: sr.Details}
	if cached {
		res.Details += " [cached]"
	}
	switch sr.Status {
	case registry.StatusClean:
		s.headers(res, "Clean")
	case registry.StatusInfected:
		names := strings.Join(sr.Threats, ", ")
		for _, t := range sr.Threats {
			s.infections.Add(1, t)
		}
		res.Verdict = s.verdict(s.cfg.InfectedAction, 554, "5.7.1", "Virus found: "+names)
		s.headers(res, "Infected ("+names+")")
	default:
		return nil, fmt.Errorf("unexpected scan status %q", sr.Status)
	}
	return res, nil
}

func (s *Scanner) verdict(a registry.Action, code int, enh, text string) registry.Verdict {
	switch a {
	case registry.Reject:
		return registry.RejectVerdict(code, enh, text)
	case registry.TempFail:
		return registry.TempFailVerdict(451, "4.7.1", text+", try again later")
	case registry.Quarantine:
		return registry.QuarantineVerdict(text)
	}
	return registry.AcceptVerdict()
}

// headers adds X-Virus-Scanned and X-Virus-Status when add_headers is on,
// removing any the message arrived with so a sender cannot forge them.
func (s *Scanner) headers(res *registry.Result, status string) {
	if !s.cfg.AddHeaders {
		return
	}
	res.RemoveHeaders = append(res.RemoveHeaders,
		registry.Removal{Name: "X-Virus-Scanned", Index: -1},
		registry.Removal{Name: "X-Virus-Status", Index: -1})
	res.AddHeaders = append(res.AddHeaders,
		registry.Field{Name: "X-Virus-Scanned", Value: "ClamAV on " + s.host.Hostname},
		registry.Field{Name: "X-Virus-Status", Value: status})
}

// HealthCheck sends PING and VERSION to every server. It fails when no
// server answers; servers that do not are logged.
func (s *Scanner) HealthCheck(ctx context.Context) error {
	var errs []error
	ok := 0
	for _, srv := range s.client.servers {
		v, err := s.Version(ctx, srv.srv)
		if err != nil {
			errs = append(errs, err)
			if s.host.Logger != nil {
				s.host.Logger.Warn("clamd does not answer", "server", srv.srv.String(), "err", err)
			}
			continue
		}
		ok++
		if s.host.Logger != nil {
			s.host.Logger.Info("clamd answers", "server", srv.srv.String(), "version", v)
		}
	}
	if ok == 0 {
		return fmt.Errorf("health check: %w", errors.Join(errs...))
	}
	return nil
}

// Version pings srv and returns its VERSION reply
// ("ClamAV 1.4.6/27834/Tue Nov 25 09:00:00 2026").
func (s *Scanner) Version(ctx context.Context, srv server) (string, error) {
	pong, err := s.client.command(ctx, srv, "PING")
	if err != nil {
		return "", err
	}
	if pong != "PONG" {
		return "", fmt.Errorf("PING on %s: %w: %.80q", srv, ErrReply, pong)
	}
	v, err := s.client.command(ctx, srv, "VERSION")
	if err != nil {
		return "", err
	}
	if !strings.HasPrefix(v, "ClamAV ") {
		return "", fmt.Errorf("VERSION on %s: %w: %.80q", srv, ErrReply, v)
	}
	return v, nil
}

// Start starts asking clamd for its signature database version, which
// every cache key names; until it is known nothing is cached.
func (s *Scanner) Start(context.Context) error {
	s.cache.start(s)
	return nil
}

// Close closes pooled connections. Safe without Start and more than once.
func (s *Scanner) Close() error {
	s.cache.close() // first: its probe uses the client
	s.client.Close()
	return nil
}

// CacheCounters implements resultcache.Reporter (all zero when the cache
// is off), for a metrics exporter.
func (s *Scanner) CacheCounters() resultcache.Counters {
	if s.cache == nil {
		return resultcache.Counters{}
	}
	return s.cache.c.CacheCounters()
}

var _ resultcache.Reporter = (*Scanner)(nil)
