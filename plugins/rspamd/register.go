// Package rspamd classifies and scores messages with rspamd's /checkv2
// HTTP endpoint. See README.md.
package rspamd

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/elemta/elemta/registry"
)

func init() {
	registry.Register(registry.Module[Config, *Scanner]{
		Name:        "rspamd",
		Version:     "1.0.0",
		Description: "classifies and scores messages with rspamd (POST /checkv2)",
		Types:       []registry.PluginType{registry.PluginTypeAntispam},
		Stages:      []registry.Stage{registry.PostReception},
		Produces:    []any{(*registry.ScanResult)(nil)},
		Config:      DefaultConfig,
		New:         New,
	})
}

// The actions rspamd reports.
const (
	ActionNoAction       = "no action"
	ActionGreylist       = "greylist"
	ActionAddHeader      = "add header"
	ActionRewriteSubject = "rewrite subject"
	ActionSoftReject     = "soft reject"
	ActionReject         = "reject"
)

// DefaultActions maps rspamd's actions to verdicts; the actions table of
// the config overrides single entries.
func DefaultActions() map[string]registry.Action {
	return map[string]registry.Action{
		ActionNoAction:       registry.Accept,
		ActionGreylist:       registry.TempFail,
		ActionSoftReject:     registry.TempFail,
		ActionAddHeader:      registry.Accept,
		ActionRewriteSubject: registry.Accept,
		ActionReject:         registry.Reject,
	}
}

// Config is the [plugins.rspamd] table.
type Config struct {
	// URL is rspamd's normal worker; /checkv2 is appended.
	URL string `toml:"url"`
	// Timeout bounds one check when it runs outside a stage (the executor
	// applies the same `timeout` to stages).
	Timeout        registry.Duration `toml:"timeout"`
	ConnectTimeout registry.Duration `toml:"connect_timeout"`
	// Password is sent in the Password header when set.
	Password string `toml:"password"`
	// MaxSize is the largest message sent, in bytes; larger ones get
	// OnSizeLimit ("error", so on_error applies, or an action).
	MaxSize     int64  `toml:"max_size"`
	OnSizeLimit string `toml:"on_size_limit"`
	// MaxReplySize bounds rspamd's reply, in bytes, without its urls and
	// emails lists; MaxReplyListsSize bounds those, which are skipped
	// unread (their size is the sender's choice).
	MaxReplySize      int64 `toml:"max_reply_size"`
	MaxReplyListsSize int64 `toml:"max_reply_lists_size"`
	// MaxIdleConns keep-alive connections are kept, each at most IdleTimeout.
	MaxIdleConns int               `toml:"max_idle_conns"`
	IdleTimeout  registry.Duration `toml:"idle_timeout"`
	// Actions overrides the verdict of single rspamd actions.
	Actions map[string]registry.Action `toml:"actions"`
	// SpamHeaders adds X-Spam, X-Spam-Score and X-Spam-Action for "add header".
	SpamHeaders bool `toml:"spam_headers"`
	// RewriteSubject replaces the Subject for "rewrite subject", with
	// rspamd's subject or else SubjectPrefix + the old subject.
	RewriteSubject bool   `toml:"rewrite_subject"`
	SubjectPrefix  string `toml:"subject_prefix"`
	// MilterHeaders applies the reply's milter.add_headers/remove_headers.
	MilterHeaders bool `toml:"milter_headers"`
	// ResolveHostname looks up the client's PTR name (through the host's
	// resolver) for rspamd's Hostname header.
	ResolveHostname bool `toml:"resolve_hostname"`
}

// DefaultConfig returns the defaults documented in README.md.
func DefaultConfig() Config {
	return Config{
		URL:               "http://127.0.0.1:11333",
		Timeout:           registry.Duration(10 * time.Second),
		ConnectTimeout:    registry.Duration(2 * time.Second),
		MaxSize:           50 << 20,
		OnSizeLimit:       "error",
		MaxReplySize:      1 << 20,
		MaxReplyListsSize: 16 << 20,
		MaxIdleConns:      8,
		IdleTimeout:       registry.Duration(30 * time.Second),
		SpamHeaders:       true,
		RewriteSubject:    true,
		SubjectPrefix:     "*** SPAM *** ",
		MilterHeaders:     true,
	}
}

// actions returns the defaults overlaid with the config's table.
func (c Config) actions() map[string]registry.Action {
	m := DefaultActions()
	for k, v := range c.Actions {
		m[strings.ToLower(strings.TrimSpace(k))] = v
	}
	return m
}

func (c Config) sizeLimitAction() (registry.Action, bool, error) {
	if strings.EqualFold(strings.TrimSpace(c.OnSizeLimit), "error") {
		return 0, false, nil
	}
	a, err := registry.ParseAction(c.OnSizeLimit)
	if err != nil {
		return 0, false, fmt.Errorf("on_size_limit: %w (or \"error\")", err)
	}
	return a, true, nil
}

// OwnedHeaders implements registry.HeaderOwner: with spam_headers, the
// X-Spam fields this plugin writes. When a check fails (rspamd down,
// on_error applies) the host removes the ones the message arrived with, so
// a forged "X-Spam-Score" never passes for a check that did not happen.
func (c *Config) OwnedHeaders() []string {
	if !c.SpamHeaders {
		return nil
	}
	return slices.Clone(spamHeaders)
}

var _ registry.HeaderOwner = (*Config)(nil)

// Validate implements registry.Validator: the registry runs it when the
// config is parsed, so `elemta config check` reports every value New would
// refuse. All problems are reported at once, each naming its key; the
// registry adds the file and table.
func (c *Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if u, err := url.Parse(c.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		bad("url = %q: want http://host:port", c.URL)
	}
	if c.Timeout <= 0 {
		bad("timeout must be positive")
	}
	if c.ConnectTimeout <= 0 {
		bad("connect_timeout must be positive")
	}
	if c.MaxSize < 1 {
		bad("max_size = %d: must be at least 1 byte", c.MaxSize)
	}
	if _, _, err := c.sizeLimitAction(); err != nil {
		errs = append(errs, err)
	}
	if c.MaxReplySize < 1024 {
		bad("max_reply_size = %d: must be at least 1024 bytes", c.MaxReplySize)
	}
	if c.MaxReplyListsSize < 0 {
		bad("max_reply_lists_size = %d: must be at least 0 bytes", c.MaxReplyListsSize)
	}
	if c.MaxIdleConns < 0 {
		bad("max_idle_conns = %d: must not be negative", c.MaxIdleConns)
	}
	if c.MaxIdleConns > 0 && c.IdleTimeout <= 0 {
		bad("idle_timeout must be positive when max_idle_conns > 0")
	}
	known := DefaultActions()
	names := make([]string, 0, len(known))
	for k := range known {
		names = append(names, k)
	}
	sort.Strings(names)
	keys := make([]string, 0, len(c.Actions))
	for k := range c.Actions {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if !slices.Contains(names, strings.ToLower(strings.TrimSpace(k))) {
			bad("actions: unknown rspamd action %q (known: %s)", k, strings.Join(names, ", "))
		}
	}
	return errors.Join(errs...)
}
