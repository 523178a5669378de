// Package contentfilter is an Elemta plugin that checks messages after
// reception against rules over header fields, decoded body text,
// attachments (file-name extensions and MIME types) and the message size.
// See README.md for its configuration.
package contentfilter

import (
	"archive/zip"
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/textproto"
	"path"
	"regexp"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/elemta/elemta/pkg/headerfold"
	"github.com/elemta/elemta/registry"
)

// action is what a matching rule does. Ordered by severity.
type action int

const (
	actAccept action = iota
	actAddHeader
	actQuarantine
	actTempFail
	actReject
)

var actionNames = []string{"accept", "add_header", "quarantine", "tempfail", "reject"}

func (a action) String() string { return actionNames[a] }

func parseAction(s string, allowAccept bool) (action, error) {
	for i, n := range actionNames {
		if s == n && (allowAccept || i != int(actAccept)) {
			return action(i), nil
		}
	}
	valid := actionNames[1:]
	if allowAccept {
		valid = actionNames
	}
	return 0, fmt.Errorf("unknown action %q (valid: %s)", s, strings.Join(valid, ", "))
}

type ruleKind int

const (
	headerRule ruleKind = iota
	bodyRule
	attachmentRule
	numKinds
)

var kindNames = [numKinds]string{"header", "body", "attachment"}

type rule struct {
	name       string
	kind       ruleKind
	action     action
	reply      string
	field      registry.Field // for add_header
	header     string
	pattern    *regexp.Regexp
	extensions []string
	mimeTypes  []string
}

type policy struct {
	maxSize                                  int64
	maxParts, maxDepth                       int
	maxDecoded                               int64
	sizeAction, limitAction, malformedAction action
	maxArchiveDepth, maxArchiveMembers       int
	maxArchiveBytes                          int64
	maxArchiveRatio                          int
	archiveLimitAction                       action
	encryptedAction, uninspectableAction     action
	headerName                               string
	rules                                    [numKinds][]*rule
}

// Filter is the content filter plugin.
type Filter struct {
	policy *policy
	log    *slog.Logger
	owned  []string // Config.OwnedHeaders: removed from every message checked
}

// Match is one thing the filter found.
type Match struct {
	// Rule is the rule's name, or "max_message_size", "limit",
	// "malformed", "archive_limit", "encrypted" or "uninspectable".
	Rule   string
	Kind   string // header, body, attachment, size, limit, malformed, archive
	Action string
	// What describes the match: `Subject "..."`, `attachment "a.exe" (application/octet-stream)`.
	What string
}

// Attachment is a part with a file name, an attachment disposition, a
// type other than text or a type detected from its bytes, or a member of
// an archive.
type Attachment struct {
	// Path says where it is: "part 2", `part 2 > "a.zip" > "b.exe"`.
	Path string `json:"path"`
	// Filename is the first of Names, every name a mail client or
	// archiver might show for it (they disagree only in hostile mail).
	Filename string   `json:"filename,omitempty"`
	Names    []string `json:"names,omitempty"`
	// Type is the declared media type (none for archive members);
	// Detected the types read from the bytes, most specific first.
	Type     string   `json:"type,omitempty"`
	Detected []string `json:"detected,omitempty"`
	// Archive is the container format when it is one that was opened.
	Archive   string `json:"archive,omitempty"`
	Encrypted bool   `json:"encrypted,omitempty"`
	// Rules are the attachment rules it matched.
	Rules []string `json:"rules,omitempty"`
}

// Report is the filter's result, the Data of its registry.Result.
type Report struct {
	Matches      []Match
	Attachments  []Attachment
	Parts        int   // body parts seen in multiparts and attached messages
	Depth        int   // deepest part's nesting depth
	DecodedBytes int64 // decoded text bytes scanned by body rules
	// Limit describes the MIME limit that stopped the walk, if any.
	Limit string
	// Malformed lists MIME problems found, ambiguous names among them;
	// the walk goes on past most.
	Malformed []string
	// ArchiveLimit describes the archive limit that stopped the
	// inspection of archives, if any.
	ArchiveLimit string
	// Encrypted lists archive members whose content is encrypted;
	// Uninspectable the archives or members that could not be opened.
	Encrypted     []string
	Uninspectable []string
}

// HandleStage inspects the message and turns the matches into a verdict.
func (f *Filter) HandleStage(ctx context.Context, _ registry.Stage, pc *registry.ProcessingContext) (*registry.Result, error) {
	rep, err := f.Inspect(ctx, pc.Message)
	if err != nil {
		return nil, err
	}
	res := f.result(rep)
	foldFields(res.AddHeaders, headerfold.EOL(pc.Message.Raw))
	for _, n := range f.owned { // a sender's copy of our verdict field goes
		if slices.ContainsFunc(pc.Message.Header, func(h registry.HeaderField) bool { return strings.EqualFold(h.Name, n) }) {
			res.RemoveHeaders = append(res.RemoveHeaders, registry.Removal{Name: n, Index: -1})
		}
	}
	return res, nil
}

// foldFields folds each field's value (pkg/headerfold) in place.
func foldFields(fields []registry.Field, eol string) {
	for i, fl := range fields {
		fields[i].Value = headerfold.Value(fl.Name, fl.Value, eol)
	}
}

// Inspect runs every rule over msg. The only error is ctx's.
func (f *Filter) Inspect(ctx context.Context, msg *registry.Message) (*Report, error) {
	p := f.policy
	rep := &Report{}
	if p.maxSize > 0 && int64(len(msg.Raw)) > p.maxSize {
		rep.Matches = append(rep.Matches, Match{Rule: "max_message_size", Kind: "size", Action: p.sizeAction.String(),
			What: fmt.Sprintf("message is %d bytes, max_message_size is %d", len(msg.Raw), p.maxSize)})
		if p.sizeAction >= actTempFail {
			return rep, nil // refused outright: not worth parsing
		}
	}
	for _, r := range p.rules[headerRule] {
		for _, h := range msg.Header {
			if !strings.EqualFold(h.Name, r.header) {
				continue
			}
			if v, ok := matchHeader(r.pattern, h.Value); ok {
				rep.Matches = append(rep.Matches, Match{Rule: r.name, Kind: "header", Action: r.action.String(),
					What: fmt.Sprintf("%s %s", h.Name, quote(v))})
				break
			}
		}
	}
	w := &walker{ctx: ctx, p: p, rep: rep, matched: map[*rule]bool{}}
	err := w.entity(msg.Header.Get, bytes.NewReader(msg.Body()), 0)
	if err != nil && !errors.Is(err, errStop) {
		return nil, fmt.Errorf("inspect message: %w", err)
	}
	if rep.Limit != "" {
		rep.Matches = append(rep.Matches, Match{Rule: "limit", Kind: "limit", Action: p.limitAction.String(),
			What: rep.Limit + "; the rest of the message was not inspected"})
	}
	if len(rep.Malformed) > 0 {
		rep.Matches = append(rep.Matches, Match{Rule: "malformed", Kind: "malformed", Action: p.malformedAction.String(),
			What: "malformed MIME: " + strings.Join(rep.Malformed, "; ")})
	}
	if rep.ArchiveLimit != "" {
		rep.Matches = append(rep.Matches, Match{Rule: "archive_limit", Kind: "archive", Action: p.archiveLimitAction.String(),
			What: rep.ArchiveLimit + "; the rest of the archives was not inspected"})
	}
	if len(rep.Encrypted) > 0 {
		rep.Matches = append(rep.Matches, Match{Rule: "encrypted", Kind: "archive", Action: p.encryptedAction.String(),
			What: strings.Join(rep.Encrypted, "; ")})
	}
	if len(rep.Uninspectable) > 0 {
		rep.Matches = append(rep.Matches, Match{Rule: "uninspectable", Kind: "archive", Action: p.uninspectableAction.String(),
			What: "could not inspect: " + strings.Join(rep.Uninspectable, "; ")})
	}
	return rep, nil
}

// matchHeader matches a field value and its RFC 2047 decoded form.
func matchHeader(re *regexp.Regexp, value string) (string, bool) {
	if d, err := wordDecoder.DecodeHeader(value); err == nil && d != value && re.MatchString(d) {
		return d, true
	}
	return value, re.MatchString(value)
}

var wordDecoder = &mime.WordDecoder{CharsetReader: func(charset string, input io.Reader) (io.Reader, error) {
	if isLatin1(charset) {
		b, err := io.ReadAll(input)
		return strings.NewReader(latin1ToUTF8(b)), err
	}
	return input, nil // unknown charset: keep the bytes, ASCII patterns still match
}}

func isLatin1(charset string) bool {
	switch strings.ToLower(charset) {
	case "iso-8859-1", "latin1", "l1", "iso_8859-1", "windows-1252", "cp1252":
		return true
	}
	return false
}

func latin1ToUTF8(b []byte) string {
	var s strings.Builder
	for _, c := range b {
		s.WriteRune(rune(c))
	}
	return s.String()
}

// parseMediaType is mime.ParseMediaType, except that when a parameter is
// malformed or repeated it still returns the type and every parameter that
// parses (the first of a repeated name) along with the error. The standard
// parser then returns no parameters at all, which would lose the boundary
// or the file name that mail clients still find: one stray "; x" would hide
// a whole multipart, or an attachment's name, from the rules. mt is "" when
// the type itself does not parse.
func parseMediaType(v string) (mt string, params map[string]string, err error) {
	mt, params, err = mime.ParseMediaType(v)
	if err == nil {
		return mt, params, nil
	}
	head, rest, _ := strings.Cut(v, ";")
	mt, _, herr := mime.ParseMediaType(head)
	if herr != nil {
		return "", nil, err
	}
	params = map[string]string{}
	seen := map[string]bool{}
	var good []string
	for _, p := range splitParams(rest) {
		name, _, _ := strings.Cut(p, "=")
		name = strings.ToLower(strings.TrimSpace(name))
		if name == "" || seen[name] {
			continue
		}
		if _, _, perr := mime.ParseMediaType("x/x;" + p); perr != nil {
			continue
		}
		seen[name] = true
		good = append(good, p)
	}
	if len(good) > 0 {
		if _, ps, perr := mime.ParseMediaType("x/x;" + strings.Join(good, ";")); perr == nil {
			params = ps
		}
	}
	return mt, params, err
}

// splitParams splits a parameter list at the semicolons outside quoted
// strings.
func splitParams(s string) []string {
	var out []string
	start, quoted := 0, false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\' && quoted:
			i++
		case c == '"':
			quoted = !quoted
		case c == ';' && !quoted:
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return append(out, s[start:])
}

func quote(s string) string {
	const max = 60
	if utf8.RuneCountInString(s) > max {
		s = string([]rune(s)[:max]) + "..."
	}
	return fmt.Sprintf("%q", s)
}

// result turns a report into the stage result: the most severe action of
// any match decides, replies come from the first rule with that action.
func (f *Filter) result(rep *Report) *registry.Result {
	res := &registry.Result{Data: rep}
	worst, reply, rule := actAccept, "", ""
	var details []string
	for _, m := range rep.Matches {
		a, _ := parseAction(m.Action, true)
		details = append(details, fmt.Sprintf("%s %s: %s -> %s", m.Kind, m.Rule, m.What, m.Action))
		if a > worst {
			worst, rule, reply = a, m.Rule, f.replyOf(m.Rule)
		}
		if a == actAddHeader {
			res.AddHeaders = append(res.AddHeaders, f.fieldOf(m))
		}
	}
	if len(details) == 0 {
		res.Details = fmt.Sprintf("no rule matched (parts: %d, attachments: %d, text bytes scanned: %d)",
			rep.Parts, len(rep.Attachments), rep.DecodedBytes)
	} else {
		res.Details = strings.Join(details, "; ")
	}
	switch worst {
	case actReject:
		if rule == "max_message_size" {
			res.Verdict = registry.RejectVerdict(552, "5.3.4", orDefault(reply, "Message size exceeds fixed maximum message size"))
		} else {
			res.Verdict = registry.RejectVerdict(550, "5.7.1", orDefault(reply, "Message rejected by content policy"))
		}
	case actTempFail:
		res.Verdict = registry.TempFailVerdict(451, "4.7.1", orDefault(reply, "Message deferred by content policy, try again later"))
	case actQuarantine:
		res.Verdict = registry.QuarantineVerdict(orDefault(reply, "Message quarantined by content policy"))
	}
	return res
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func (f *Filter) ruleNamed(name string) *rule {
	for _, rs := range f.policy.rules {
		for _, r := range rs {
			if r.name == name {
				return r
			}
		}
	}
	return nil
}

func (f *Filter) replyOf(name string) string {
	if r := f.ruleNamed(name); r != nil {
		return r.reply
	}
	return ""
}

func (f *Filter) fieldOf(m Match) registry.Field {
	if r := f.ruleNamed(m.Rule); r != nil {
		return r.field
	}
	return registry.Field{Name: f.policy.headerName, Value: m.Rule} // limit, malformed, max_message_size
}

// errStop ends the MIME walk at a limit.
var errStop = errors.New("limit reached")

// walker visits a message's MIME entities depth first.
type walker struct {
	ctx     context.Context
	p       *policy
	rep     *Report
	decoded int64
	matched map[*rule]bool // a rule reports its first match only
	// Archive budgets, summed over the message.
	archMembers     int
	archBytes       int64
	archivesStopped bool // an archive limit was reached
}

// entity inspects one MIME entity at depth (0 for the message itself).
// get reads the entity's header fields. It returns errStop at a limit and
// ctx's error; MIME problems are recorded in the report.
func (w *walker) entity(get func(string) string, body io.Reader, depth int) error {
	if err := w.ctx.Err(); err != nil {
		return err
	}
	w.rep.Depth = max(w.rep.Depth, depth)
	where := "message"
	if depth > 0 {
		where = fmt.Sprintf("part %d", w.rep.Parts)
	}

	mediaType, params := "text/plain", map[string]string{}
	if ct := get("Content-Type"); ct != "" {
		mt, ps, err := parseMediaType(ct)
		switch {
		case err == nil:
			mediaType, params = mt, ps
		case mt != "":
			mediaType, params = mt, ps
			w.malformed("%s: Content-Type %s: %v", where, quote(ct), err)
		default:
			w.malformed("%s: Content-Type %s: %v (treated as text/plain)", where, quote(ct), err)
		}
	}
	names, disposition := w.names(get, where)
	isMultipart := strings.HasPrefix(mediaType, "multipart/")

	body, err := w.decoder(get("Content-Transfer-Encoding"), body, where)
	if err != nil {
		return err
	}
	switch {
	case isMultipart:
		return w.multipart(params["boundary"], body, depth, where)
	case mediaType == "message/rfc822" || mediaType == "message/global":
		att := Attachment{Path: where, Names: names, Type: mediaType}
		att.Rules = w.checkAttachment(where, names, mediaType, nil)
		if len(names) > 0 {
			att.Filename = names[0]
			w.rep.Attachments = append(w.rep.Attachments, att)
		}
		if depth+1 > w.p.maxDepth {
			return w.limit("%s: attached message would be at depth %d, max_depth is %d", where, depth+1, w.p.maxDepth)
		}
		br := bufio.NewReader(body)
		h, err := textproto.NewReader(br).ReadMIMEHeader()
		if err != nil && !errors.Is(err, io.EOF) {
			w.malformed("%s: attached message header: %v", where, err)
			return nil
		}
		return w.entity(h.Get, br, depth+1)
	}
	return w.leaf(where, names, disposition, mediaType, params["charset"], body)
}

// names returns every file name the entity's header gives it, from
// Content-Disposition's filename and Content-Type's name in all their
// encodings, and its disposition. Names that disagree, repeated or broken
// name parameters and hidden characters in a name are malformed.
func (w *walker) names(get func(string) string, where string) ([]string, string) {
	var names []string
	disposition := ""
	for _, f := range []struct{ field, param string }{{"Content-Disposition", "filename"}, {"Content-Type", "name"}} {
		v := get(f.field)
		if v == "" {
			continue
		}
		if f.field == "Content-Disposition" {
			d, _, err := parseMediaType(v)
			if err != nil && !errors.Is(err, mime.ErrInvalidMediaParameter) {
				w.malformed("%s: Content-Disposition %s: %v", where, quote(v), err)
			}
			disposition = d
		}
		ns, problems := nameParams(v, f.param)
		for _, p := range problems {
			w.malformed("%s: %s: %s", where, f.field, p)
		}
		for _, n := range ns {
			names = appendNew(names, n)
		}
	}
	if distinct(names) {
		qs := make([]string, len(names))
		for i, n := range names {
			qs[i] = quote(n)
		}
		w.malformed("%s: its names disagree (%s); every one was checked", where, strings.Join(qs, ", "))
	}
	for _, n := range names {
		if h := hiddenChars(n); h != "" {
			w.malformed("%s: name %s has control or bidirectional characters %s", where, quote(n), h)
		}
	}
	return names, disposition
}

// leaf inspects a part that is neither a multipart nor a message: its
// names, declared type and the types of its bytes go through the
// attachment rules, an archive is looked into, and text goes through the
// body rules.
func (w *walker) leaf(where string, names []string, disposition, mediaType, charset string, body io.Reader) error {
	isText := strings.HasPrefix(mediaType, "text/")
	att := Attachment{Path: where, Names: names, Type: mediaType}
	if len(names) > 0 {
		att.Filename = names[0]
	}
	listed := len(names) > 0 || disposition == "attachment" || !isText
	if len(w.p.rules[attachmentRule]) == 0 {
		// Nothing looks at the bytes: read only what body rules want.
		if listed {
			w.rep.Attachments = append(w.rep.Attachments, att)
		}
		if isText {
			return w.text(body, charset, where)
		}
		return nil
	}
	// The decoded part is at most as large as the message already in
	// memory: base64 and quoted-printable only shrink.
	b, err := io.ReadAll(body)
	if err != nil {
		w.malformed("%s: decoding: %v (the bytes up to the error were inspected)", where, err)
	}
	att.Detected = detectTypes(b)
	format := archiveFormat(att.Detected)
	if format == "" && !isText && len(b) > 0 {
		// A zip is found from its end: data before it (a self-extractor,
		// an image) does not stop archivers from opening it.
		if zr, zerr := zip.NewReader(bytes.NewReader(b), int64(len(b))); zerr == nil && len(zr.File) > 0 {
			format = "zip"
			att.Detected = append(att.Detected, "application/zip")
		}
	}
	att.Rules = w.checkAttachment(where, names, mediaType, att.Detected)
	if format != "" && !w.archivesStopped {
		att.Archive = format
	}
	if listed || slices.ContainsFunc(att.Detected, func(t string) bool { return !strings.HasPrefix(t, "text/") }) {
		w.rep.Attachments = append(w.rep.Attachments, att)
	}
	if att.Archive != "" {
		if err := w.archive(where, format, names, b, 1); err != nil {
			if !errors.Is(err, errArchiveStop) {
				return err
			}
			w.archivesStopped = true
		}
	}
	if isText {
		return w.textBytes(b, charset, where)
	}
	return nil
}

func (w *walker) multipart(boundary string, body io.Reader, depth int, where string) error {
	if boundary == "" {
		w.malformed("%s: multipart without a boundary parameter; body not inspected", where)
		return nil
	}
	if depth+1 > w.p.maxDepth {
		return w.limit("%s: parts would be at depth %d, max_depth is %d", where, depth+1, w.p.maxDepth)
	}
	mr := multipart.NewReader(body, boundary)
	for n := 0; ; n++ {
		part, err := mr.NextRawPart()
		if err == io.EOF { // the closing boundary; a missing one is a wrapped EOF

			if n == 0 {
				w.malformed("%s: no part delimited by boundary %s", where, quote(boundary))
			}
			return nil
		}
		if err != nil {
			if n == 0 {
				w.malformed("%s: no part delimited by boundary %s: %v", where, quote(boundary), err)
			} else {
				w.malformed("%s: after part %d: %v (closing boundary missing?)", where, n, err)
			}
			return nil
		}
		w.rep.Parts++
		if w.rep.Parts > w.p.maxParts {
			return w.limit("more than %d MIME parts (max_parts)", w.p.maxParts)
		}
		if err := w.entity(part.Header.Get, part, depth+1); err != nil {
			return err
		}
	}
}

// decoder undoes the Content-Transfer-Encoding.
func (w *walker) decoder(cte string, body io.Reader, where string) (io.Reader, error) {
	switch enc := strings.ToLower(strings.TrimSpace(cte)); enc {
	case "", "7bit", "8bit", "binary":
		return body, nil
	case "quoted-printable":
		return quotedprintable.NewReader(body), nil
	case "base64":
		return base64.NewDecoder(base64.StdEncoding, &spaceDropper{r: body}), nil
	default:
		w.malformed("%s: unknown Content-Transfer-Encoding %s, read as 8bit", where, quote(cte))
		return body, nil
	}
}

// text reads a decoded text part within the decoded-bytes budget and runs
// the body rules over it.
func (w *walker) text(body io.Reader, charset, where string) error {
	b, err := io.ReadAll(io.LimitReader(body, w.p.maxDecoded-w.decoded+1))
	if err != nil {
		w.malformed("%s: decoding: %v (text up to the error was inspected)", where, err)
	}
	return w.textBytes(b, charset, where)
}

// textBytes runs the body rules over the decoded text b within the
// decoded-bytes budget.
func (w *walker) textBytes(b []byte, charset, where string) error {
	budget := w.p.maxDecoded - w.decoded
	over := int64(len(b)) > budget
	if over {
		b = b[:budget]
	}
	w.decoded += int64(len(b))
	w.rep.DecodedBytes = w.decoded
	s := string(b)
	if isLatin1(charset) {
		s = latin1ToUTF8(b)
	}
	for _, r := range w.p.rules[bodyRule] {
		if w.matched[r] {
			continue
		}
		if loc := r.pattern.FindStringIndex(s); loc != nil {
			w.matched[r] = true
			w.rep.Matches = append(w.rep.Matches, Match{Rule: r.name, Kind: "body", Action: r.action.String(),
				What: fmt.Sprintf("%s text %s", where, quote(s[loc[0]:loc[1]]))})
		}
	}
	if over {
		return w.limit("more than %d bytes of decoded text (max_decoded_bytes)", w.p.maxDecoded)
	}
	return nil
}

func typeList(types []string) string {
	if len(types) == 0 {
		return "type unknown"
	}
	return strings.Join(types, ", ")
}

// checkAttachment runs the attachment rules over a part's or member's
// names, declared type and detected types, and returns the rules that
// matched. A rule reports its first match only.
func (w *walker) checkAttachment(where string, names []string, declared string, detected []string) []string {
	var fired []string
	types := detected
	if declared != "" {
		types = append([]string{strings.ToLower(declared)}, detected...)
	}
	for _, r := range w.p.rules[attachmentRule] {
		what := ""
	exts:
		for _, n := range names {
			ext := extOf(n)
			for _, e := range r.extensions {
				if ext != "" && ext == e {
					what = fmt.Sprintf("%s: attachment %s (%s) has extension %s", where, quote(n), typeList(types), e)
					break exts
				}
			}
		}
	types:
		for i, t := range types {
			for _, p := range r.mimeTypes {
				if ok, _ := path.Match(p, t); ok && what == "" {
					how := "declared"
					if i > 0 || declared == "" {
						how = "detected"
					}
					what = fmt.Sprintf("%s has %s type %s", where, how, t)
					break types
				}
			}
		}
		if what == "" {
			continue
		}
		fired = append(fired, r.name)
		if !w.matched[r] {
			w.matched[r] = true
			w.rep.Matches = append(w.rep.Matches, Match{Rule: r.name, Kind: "attachment", Action: r.action.String(), What: what})
		}
	}
	return fired
}

func (w *walker) malformed(format string, args ...any) {
	w.rep.Malformed = append(w.rep.Malformed, fmt.Sprintf(format, args...))
}

func (w *walker) limit(format string, args ...any) error {
	w.rep.Limit = fmt.Sprintf(format, args...)
	return errStop
}

// spaceDropper drops the white space that base64 bodies carry between
// lines (and, against the RFC, within them), which encoding/base64 rejects.
type spaceDropper struct{ r io.Reader }

func (s *spaceDropper) Read(p []byte) (int, error) {
	for {
		n, err := s.r.Read(p)
		j := 0
		for _, c := range p[:n] {
			if c != ' ' && c != '\t' && c != '\r' && c != '\n' {
				p[j] = c
				j++
			}
		}
		if j > 0 || n == 0 || err != nil {
			return j, err
		}
	}
}
