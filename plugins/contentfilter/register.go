package contentfilter

import (
	"errors"
	"fmt"
	"path"
	"regexp"
	"slices"
	"strings"

	"github.com/elemta/elemta/registry"
)

func init() {
	registry.Register(registry.Module[Config, *Filter]{
		Name:        "contentfilter",
		Version:     "1.0.0",
		Description: "rules over headers, body text, attachments and message size",
		Types:       []registry.PluginType{registry.PluginTypeFilter},
		Stages:      []registry.Stage{registry.PostReception},
		// The report of what was inspected; declared so it crosses to the
		// host when the instance runs with isolation = "process".
		Produces: []any{(*Report)(nil)},
		Config:   DefaultConfig,
		New:      New,
	})
}

// Defaults of the [plugins.contentfilter] keys.
const (
	DefaultMaxParts        = 256
	DefaultMaxDepth        = 10
	DefaultMaxDecodedBytes = 10 << 20
	DefaultHeaderName      = "X-Elemta-Content-Filter"
	// Archives: nesting, members and uncompressed bytes over the whole
	// message, and the expansion of one archive over its own size.
	DefaultMaxArchiveDepth   = 3
	DefaultMaxArchiveMembers = 4096
	DefaultMaxArchiveBytes   = 128 << 20
	DefaultMaxArchiveRatio   = 100
	// maxArchiveRatioLimit keeps size*ratio within int64 for any message.
	maxArchiveRatioLimit = 1 << 20
)

// Config is the [plugins.contentfilter] table.
type Config struct {
	// MaxMessageSize is the largest message in bytes; 0 means no limit.
	MaxMessageSize       int64  `toml:"max_message_size"`
	MaxMessageSizeAction string `toml:"max_message_size_action"`
	// MaxParts, MaxDepth and MaxDecodedBytes bound the MIME walk: the
	// number of body parts, their nesting depth and the decoded bytes of
	// text parts read. Exceeding one ends the walk with LimitAction.
	MaxParts        int    `toml:"max_parts"`
	MaxDepth        int    `toml:"max_depth"`
	MaxDecodedBytes int64  `toml:"max_decoded_bytes"`
	LimitAction     string `toml:"limit_action"`
	// MalformedAction applies when the MIME structure cannot be fully
	// parsed or is ambiguous (names that disagree, repeated parameters).
	MalformedAction string `toml:"malformed_action"`
	// MaxArchiveDepth, MaxArchiveMembers, MaxArchiveBytes and
	// MaxArchiveRatio bound the inspection of archives; exceeding one ends
	// it with ArchiveLimitAction.
	MaxArchiveDepth    int    `toml:"max_archive_depth"`
	MaxArchiveMembers  int    `toml:"max_archive_members"`
	MaxArchiveBytes    int64  `toml:"max_archive_bytes"`
	MaxArchiveRatio    int    `toml:"max_archive_ratio"`
	ArchiveLimitAction string `toml:"archive_limit_action"`
	// EncryptedAction applies to archive members whose content is
	// encrypted; UninspectableAction to archives the filter cannot open.
	EncryptedAction     string `toml:"encrypted_action"`
	UninspectableAction string `toml:"uninspectable_action"`
	// HeaderName is the field add_header rules add unless they name their own.
	HeaderName      string `toml:"header_name"`
	HeaderRules     []Rule `toml:"header_rules"`
	BodyRules       []Rule `toml:"body_rules"`
	AttachmentRules []Rule `toml:"attachment_rules"`
}

// Rule is one entry of header_rules, body_rules or attachment_rules.
type Rule struct {
	Name string `toml:"name"`
	// Header is the field a header rule looks at (case-insensitive).
	Header string `toml:"header"`
	// Pattern is the regular expression (Go RE2 syntax) of header and body rules.
	Pattern string `toml:"pattern"`
	// Extensions and MIMETypes are what attachment rules look for.
	Extensions []string `toml:"extensions"`
	MIMETypes  []string `toml:"mime_types"`
	// Action is reject (default), tempfail, quarantine or add_header.
	Action string `toml:"action"`
	// Reply is the SMTP reply text for reject, tempfail and quarantine.
	Reply string `toml:"reply"`
	// AddHeader is the "Name: value" field an add_header rule adds.
	AddHeader string `toml:"add_header"`
}

// DefaultConfig returns the plugin's defaults: MIME limits, no size limit
// and no rules.
func DefaultConfig() Config {
	return Config{
		MaxMessageSizeAction: "reject",
		MaxParts:             DefaultMaxParts,
		MaxDepth:             DefaultMaxDepth,
		MaxDecodedBytes:      DefaultMaxDecodedBytes,
		LimitAction:          "quarantine",
		MalformedAction:      "quarantine",
		HeaderName:           DefaultHeaderName,
		MaxArchiveDepth:      DefaultMaxArchiveDepth,
		MaxArchiveMembers:    DefaultMaxArchiveMembers,
		MaxArchiveBytes:      DefaultMaxArchiveBytes,
		MaxArchiveRatio:      DefaultMaxArchiveRatio,
		ArchiveLimitAction:   "quarantine",
		EncryptedAction:      "quarantine",
		UninspectableAction:  "quarantine",
	}
}

// Validate implements registry.Validator. It checks what decoding cannot:
// actions, patterns, rule names and limits. Every problem is reported, each
// naming the key or rule; the registry adds the file and table. The
// registry calls it when the config is parsed (`elemta config check`), and
// New runs the same checks.
func (c *Config) Validate() error {
	_, err := c.compile()
	return err
}

// compile turns the config into the form the filter uses.
func (c *Config) compile() (*policy, error) {
	var errs []error
	fail := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	p := &policy{maxSize: c.MaxMessageSize, maxParts: c.MaxParts, maxDepth: c.MaxDepth, maxDecoded: c.MaxDecodedBytes,
		maxArchiveDepth: c.MaxArchiveDepth, maxArchiveMembers: c.MaxArchiveMembers,
		maxArchiveBytes: c.MaxArchiveBytes, maxArchiveRatio: c.MaxArchiveRatio}

	if c.MaxMessageSize < 0 {
		fail("max_message_size = %d: must be 0 (no limit) or a size in bytes", c.MaxMessageSize)
	}
	if c.MaxParts < 1 {
		fail("max_parts = %d: must be at least 1", c.MaxParts)
	}
	if c.MaxDepth < 1 {
		fail("max_depth = %d: must be at least 1", c.MaxDepth)
	}
	if c.MaxDecodedBytes < 1 {
		fail("max_decoded_bytes = %d: must be at least 1", c.MaxDecodedBytes)
	}
	if c.MaxArchiveDepth < 1 {
		fail("max_archive_depth = %d: must be at least 1", c.MaxArchiveDepth)
	}
	if c.MaxArchiveMembers < 1 {
		fail("max_archive_members = %d: must be at least 1", c.MaxArchiveMembers)
	}
	if c.MaxArchiveBytes < 1 {
		fail("max_archive_bytes = %d: must be at least 1", c.MaxArchiveBytes)
	}
	if c.MaxArchiveRatio < 1 || c.MaxArchiveRatio > maxArchiveRatioLimit {
		fail("max_archive_ratio = %d: must be from 1 to %d", c.MaxArchiveRatio, maxArchiveRatioLimit)
	}
	if err := checkFieldName(c.HeaderName); err != nil {
		fail("header_name: %w", err)
	}
	var err error
	actionKeys := []struct {
		key, value  string
		allowAccept bool
		dst         *action
	}{
		{"max_message_size_action", c.MaxMessageSizeAction, false, &p.sizeAction},
		{"limit_action", c.LimitAction, true, &p.limitAction},
		{"malformed_action", c.MalformedAction, true, &p.malformedAction},
		{"archive_limit_action", c.ArchiveLimitAction, true, &p.archiveLimitAction},
		{"encrypted_action", c.EncryptedAction, true, &p.encryptedAction},
		{"uninspectable_action", c.UninspectableAction, true, &p.uninspectableAction},
	}
	for _, k := range actionKeys {
		if *k.dst, err = parseAction(k.value, k.allowAccept); err != nil {
			fail("%s: %w", k.key, err)
		}
	}

	names := map[string]string{}
	lists := []struct {
		key   string
		kind  ruleKind
		rules []Rule
	}{
		{"header_rules", headerRule, c.HeaderRules},
		{"body_rules", bodyRule, c.BodyRules},
		{"attachment_rules", attachmentRule, c.AttachmentRules},
	}
	for _, l := range lists {
		for i, r := range l.rules {
			where := fmt.Sprintf("%s[%d]", l.key, i)
			if r.Name != "" {
				where += fmt.Sprintf(" (rule %q)", r.Name)
			}
			cr, rerrs := compileRule(r, l.kind, c.HeaderName)
			for _, e := range rerrs {
				fail("%s: %w", where, e)
			}
			if r.Name != "" {
				if prev, dup := names[r.Name]; dup {
					fail("%s: rule name %q is also used by %s; names must be unique", where, r.Name, prev)
				}
				names[r.Name] = fmt.Sprintf("%s[%d]", l.key, i)
			}
			if cr != nil && len(rerrs) == 0 {
				p.rules[l.kind] = append(p.rules[l.kind], cr)
			}
		}
	}
	p.headerName = c.HeaderName
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return p, nil
}

func compileRule(r Rule, kind ruleKind, defaultHeader string) (*rule, []error) {
	var errs []error
	fail := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	cr := &rule{name: r.Name, kind: kind, header: r.Header, reply: r.Reply}
	if r.Name == "" {
		fail("name is required")
	}
	var err error
	act := r.Action
	if act == "" {
		act = "reject"
	}
	if cr.action, err = parseAction(act, false); err != nil {
		fail("action: %w", err)
	}
	switch kind {
	case headerRule, bodyRule:
		if kind == headerRule && r.Header == "" {
			fail("header is required: the field name the pattern is matched against")
		}
		if kind == headerRule && r.Header != "" {
			if err := checkFieldName(r.Header); err != nil {
				fail("header: %w", err)
			}
		}
		if r.Pattern == "" {
			fail("pattern is required")
		} else if cr.pattern, err = regexp.Compile(r.Pattern); err != nil {
			fail("pattern %q: %w", r.Pattern, err)
		}
		if len(r.Extensions) > 0 || len(r.MIMETypes) > 0 {
			fail("extensions and mime_types belong in attachment_rules")
		}
	case attachmentRule:
		if r.Pattern != "" || r.Header != "" {
			fail("pattern and header belong in header_rules or body_rules")
		}
		if len(r.Extensions) == 0 && len(r.MIMETypes) == 0 {
			fail("give extensions, mime_types or both")
		}
		for _, e := range r.Extensions {
			n := normalizeExt(e)
			if n == "." || strings.ContainsAny(n, "/\\ ") {
				fail("extensions: %q is not a file-name extension (want e.g. \"exe\" or \".exe\")", e)
				continue
			}
			cr.extensions = append(cr.extensions, n)
		}
		for _, t := range r.MIMETypes {
			t = strings.ToLower(strings.TrimSpace(t))
			if _, err := path.Match(t, ""); err != nil || !strings.Contains(t, "/") {
				fail("mime_types: %q is not a MIME type or pattern (want e.g. \"application/x-msdownload\" or \"application/x-ms*\")", t)
				continue
			}
			cr.mimeTypes = append(cr.mimeTypes, t)
		}
	}
	if r.AddHeader != "" && cr.action != actAddHeader {
		fail("add_header is only used with action = \"add_header\"")
	}
	if cr.action == actAddHeader {
		if r.Reply != "" {
			fail("reply is not used with action = \"add_header\"")
		}
		cr.field = registry.Field{Name: defaultHeader, Value: r.Name}
		if r.AddHeader != "" {
			name, value, ok := strings.Cut(r.AddHeader, ":")
			cr.field = registry.Field{Name: strings.TrimSpace(name), Value: strings.TrimSpace(value)}
			if !ok {
				fail("add_header %q: want \"Name: value\"", r.AddHeader)
			} else if err := checkFieldName(cr.field.Name); err != nil {
				fail("add_header %q: %w", r.AddHeader, err)
			} else if strings.ContainsAny(cr.field.Value, "\r\n") {
				fail("add_header %q: value must be one line", r.AddHeader)
			}
		}
	}
	return cr, errs
}

// checkFieldName accepts an RFC 5322 field name: printable ASCII without ':'.
func checkFieldName(name string) error {
	if name == "" {
		return errors.New("empty header field name")
	}
	for _, c := range name {
		if c <= ' ' || c > '~' || c == ':' {
			return fmt.Errorf("%q is not a header field name (printable ASCII without spaces or ':')", name)
		}
	}
	return nil
}

func normalizeExt(e string) string {
	e = strings.ToLower(strings.TrimSpace(e))
	if !strings.HasPrefix(e, ".") {
		e = "." + e
	}
	return e
}

// New builds the filter from its config. It refuses only what Validate
// refuses (parsing the config has run it already): the same compile step
// checks and builds.
func New(cfg Config, host registry.Host) (*Filter, error) {
	p, err := cfg.compile()
	if err != nil {
		return nil, err
	}
	return &Filter{policy: p, log: host.Logger, owned: cfg.OwnedHeaders()}, nil
}

// OwnedHeaders implements registry.HeaderOwner: the fields add_header
// matches write (header_name and each rule's add_header name). The filter
// removes the copies a message arrives with from every message it checks,
// and the host removes them when a check fails, so a sender's forged
// "X-Elemta-Content-Filter" or "X-Spam-Flag" never passes for ours.
func (c *Config) OwnedHeaders() []string {
	var names []string
	add := func(n string) { // a bad name is Validate's to report, not the host's
		n = strings.TrimSpace(n)
		if checkFieldName(n) == nil && !slices.ContainsFunc(names, func(o string) bool { return strings.EqualFold(o, n) }) {
			names = append(names, n)
		}
	}
	add(c.HeaderName)
	for _, rules := range [][]Rule{c.HeaderRules, c.BodyRules, c.AttachmentRules} {
		for _, r := range rules {
			if name, _, ok := strings.Cut(r.AddHeader, ":"); ok {
				add(name)
			}
		}
	}
	return names
}

var _ registry.HeaderOwner = (*Config)(nil)
