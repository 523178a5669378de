package contentfilter

import (
	"context"
	"encoding/base64"
	"fmt"
	"strings"
	"testing"

	"github.com/pelletier/go-toml/v2"

	"github.com/elemta/elemta/pluginhost"
	"github.com/elemta/elemta/registry"
)

// rulesTOML is the config most cases run under.
const rulesTOML = `
[plugins]
plugins = ["contentfilter"]

[plugins.contentfilter]
max_message_size = 4000

[[plugins.contentfilter.header_rules]]
name = "pharma-subject"
header = "subject"
pattern = "(?i)v[i1]agra"
reply = "No pharmacy spam"

[[plugins.contentfilter.header_rules]]
name = "bulk"
header = "Precedence"
pattern = "^bulk$"
action = "add_header"
add_header = "X-Bulk: yes"

[[plugins.contentfilter.body_rules]]
name = "lottery"
pattern = "(?i)you have won"
action = "quarantine"

[[plugins.contentfilter.body_rules]]
name = "wire"
pattern = "(?i)wire transfer"
action = "tempfail"

[[plugins.contentfilter.body_rules]]
name = "tagged"
pattern = "TAG-ME"
action = "add_header"

[[plugins.contentfilter.attachment_rules]]
name = "executables"
extensions = ["exe", ".SCR"]
mime_types = ["application/x-msdownload", "application/x-ms*"]
`

// newFilter builds the filter from a TOML document the way the host does.
func newFilter(t *testing.T, doc string) *Filter {
	t.Helper()
	cfg, err := pluginhost.ParseConfig("test.toml", []byte(doc))
	if err != nil {
		t.Fatalf("parse config: %v", err)
	}
	pc, err := cfg.Settings("contentfilter")
	if err != nil {
		t.Fatalf("settings: %v", err)
	}
	f, err := New(*pc.Value.(*Config), registry.Host{})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return f
}

func run(t *testing.T, f *Filter, raw string) *registry.Result {
	t.Helper()
	msg, err := registry.ParseMessage([]byte(raw), registry.Envelope{})
	if err != nil {
		t.Fatalf("parse message: %v", err)
	}
	res, err := f.HandleStage(context.Background(), registry.PostReception, registry.NewProcessingContext(msg, nil))
	if err != nil {
		t.Fatalf("HandleStage: %v", err)
	}
	return res
}

func multipartMsg(boundary string, parts ...string) string {
	var b strings.Builder
	b.WriteString("From: a@example.com\r\nSubject: test\r\nMIME-Version: 1.0\r\n")
	fmt.Fprintf(&b, "Content-Type: multipart/mixed; boundary=%q\r\n\r\npreamble\r\n", boundary)
	for _, p := range parts {
		fmt.Fprintf(&b, "--%s\r\n%s\r\n", boundary, p)
	}
	fmt.Fprintf(&b, "--%s--\r\n", boundary)
	return b.String()
}

const textPart = "Content-Type: text/plain; charset=utf-8\r\n\r\nHello there.\r\n"

func TestVerdicts(t *testing.T) {
	f := newFilter(t, rulesTOML)
	exe := "Content-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=%s\r\nContent-Transfer-Encoding: base64\r\n\r\nTVqQAAMAAAAEAAAA\r\n"
	tests := []struct {
		name        string
		raw         string
		action      registry.Action
		code        int
		text        string
		details     []string // substrings of Result.Details
		addHeaders  []registry.Field
		attachments int
	}{
		{name: "clean text", raw: "From: a@example.com\r\nSubject: hello\r\n\r\nJust a note.\r\n",
			action: registry.Accept, details: []string{"no rule matched"}},
		{name: "header rule", raw: "Subject: Cheap VIAGRA now\r\n\r\nbody\r\n",
			action: registry.Reject, code: 550, text: "No pharmacy spam", details: []string{"header pharma-subject", `Subject "Cheap VIAGRA now"`}},
		{name: "header rule on RFC 2047 encoded subject", raw: "Subject: =?utf-8?B?" + base64.StdEncoding.EncodeToString([]byte("Cheap v1agra ✓")) + "?=\r\n\r\nbody\r\n",
			action: registry.Reject, details: []string{`"Cheap v1agra ✓"`}},
		{name: "header rule on a later field of that name", raw: "Precedence: list\r\nPrecedence: bulk\r\n\r\nbody\r\n",
			action: registry.Accept, addHeaders: []registry.Field{{Name: "X-Bulk", Value: "yes"}}},
		{name: "header rule does not look at other fields", raw: "X-Subject: viagra\r\n\r\nviagra\r\n", action: registry.Accept},
		{name: "body rule, plain", raw: "Subject: hi\r\n\r\nCongratulations, YOU HAVE WON!\r\n",
			action: registry.Quarantine, text: "Message quarantined by content policy", details: []string{"body lottery", `"YOU HAVE WON"`}},
		{name: "body rule, quoted-printable across a soft line break", raw: "Subject: hi\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nyou have=\r\n w=6Fn\r\n",
			action: registry.Quarantine},
		{name: "body rule, base64 in a multipart", raw: multipartMsg("b1", textPart,
			"Content-Type: text/html\r\nContent-Transfer-Encoding: base64\r\n\r\n"+base64.StdEncoding.EncodeToString([]byte("<p>please send a wire transfer</p>"))+"\r\n"),
			action: registry.TempFail, code: 451, details: []string{"body wire: part 2 text"}},
		{name: "body rule, latin-1 text", raw: "Subject: hi\r\nContent-Type: text/plain; charset=iso-8859-1\r\n\r\nTAG-ME caf\xe9\r\n",
			action: registry.Accept, addHeaders: []registry.Field{{Name: DefaultHeaderName, Value: "tagged"}}},
		{name: "body rules do not read attachments that are not text", raw: multipartMsg("b1", textPart,
			"Content-Type: application/pdf\r\nContent-Disposition: attachment; filename=a.pdf\r\n\r\nyou have won\r\n"),
			action: registry.Accept, attachments: 1},
		{name: "exe attachment", raw: multipartMsg("b1", textPart, fmt.Sprintf(exe, "invoice.exe")),
			action: registry.Reject, code: 550, text: "Message rejected by content policy",
			details: []string{`attachment executables: part 2: attachment "invoice.exe" (application/octet-stream, application/vnd.microsoft.portable-executable) has extension .exe`}, attachments: 1},
		{name: "extension case and trailing dots", raw: multipartMsg("b1", textPart, fmt.Sprintf(exe, `"PHOTO.JPG.Scr. "`)), action: registry.Reject},
		{name: "RFC 2231 file name", raw: multipartMsg("b1", textPart,
			"Content-Type: application/octet-stream\r\nContent-Disposition: attachment; filename*=UTF-8''r%C3%A9sum%C3%A9.exe\r\n\r\nx\r\n"),
			action: registry.Reject, details: []string{`"résumé.exe"`}},
		{name: "file name from Content-Type name", raw: multipartMsg("b1", textPart, "Content-Type: application/octet-stream; name=\"setup.exe\"\r\n\r\nx\r\n"),
			action: registry.Reject},
		{name: "MIME type pattern", raw: multipartMsg("b1", textPart, "Content-Type: application/x-msi\r\n\r\nx\r\n"),
			action: registry.Reject, details: []string{"part 2 has declared type application/x-msi"}},
		{name: "harmless attachment", raw: multipartMsg("b1", textPart, fmt.Sprintf(exe, "report.exe.pdf")),
			action: registry.Accept, attachments: 1},
		{name: "exe in an attached message", raw: multipartMsg("outer", textPart,
			"Content-Type: message/rfc822\r\n\r\n"+strings.ReplaceAll(multipartMsg("inner", textPart, fmt.Sprintf(exe, "x.exe")), "\r\n", "\r\n")),
			action: registry.Reject},
		{name: "most severe action wins", raw: "Subject: viagra\r\nPrecedence: bulk\r\n\r\nyou have won a wire transfer\r\n",
			action: registry.Reject, addHeaders: []registry.Field{{Name: "X-Bulk", Value: "yes"}},
			details: []string{"pharma-subject", "lottery", "wire", "bulk"}},
		{name: "size at the limit", raw: "Subject: x\r\n\r\n" + strings.Repeat("a", 4000-len("Subject: x\r\n\r\n")), action: registry.Accept},
		{name: "size over the limit", raw: "Subject: x\r\n\r\n" + strings.Repeat("a", 4001-len("Subject: x\r\n\r\n")),
			action: registry.Reject, code: 552, details: []string{"message is 4001 bytes, max_message_size is 4000"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := run(t, f, tt.raw)
			if res.Verdict.Action != tt.action {
				t.Fatalf("verdict %v, want %v; details: %s", res.Verdict, tt.action, res.Details)
			}
			code, _, text := res.Verdict.Reply()
			if tt.code != 0 && code != tt.code {
				t.Errorf("code %d, want %d", code, tt.code)
			}
			if tt.text != "" && text != tt.text {
				t.Errorf("reply text %q, want %q", text, tt.text)
			}
			for _, d := range tt.details {
				if !strings.Contains(res.Details, d) {
					t.Errorf("details %q lack %q", res.Details, d)
				}
			}
			if fmt.Sprint(res.AddHeaders) != fmt.Sprint(tt.addHeaders) {
				t.Errorf("AddHeaders %v, want %v", res.AddHeaders, tt.addHeaders)
			}
			rep := res.Data.(*Report)
			if len(rep.Malformed) > 0 || rep.Limit != "" {
				t.Errorf("well-formed message reported malformed %q / limit %q", rep.Malformed, rep.Limit)
			}
			if tt.attachments != 0 && len(rep.Attachments) != tt.attachments {
				t.Errorf("attachments %v, want %d", rep.Attachments, tt.attachments)
			}
		})
	}
}

// nested returns a message whose text part sits depth multiparts deep.
func nested(depth int, text string) string {
	body := "Content-Type: text/plain\r\n\r\n" + text + "\r\n"
	for d := depth; d > 1; d-- {
		b := fmt.Sprintf("n%d", d)
		body = fmt.Sprintf("Content-Type: multipart/mixed; boundary=%s\r\n\r\n--%s\r\n%s\r\n--%s--\r\n", b, b, body, b)
	}
	return multipartMsg("n1", body)
}

func TestLimits(t *testing.T) {
	limits := func(action string) string {
		return fmt.Sprintf(`
[plugins.contentfilter]
max_parts = 3
max_depth = 3
max_decoded_bytes = 20
limit_action = %q

[[plugins.contentfilter.body_rules]]
name = "needle"
pattern = "needle"
action = "add_header"
`, action)
	}
	tests := []struct {
		name    string
		action  string
		raw     string
		limited string // "" when no limit is reached
		verdict registry.Action
		needle  bool
	}{
		{name: "parts at max_parts", action: "reject", raw: multipartMsg("b", "\r\na", "\r\nb", "\r\nc"), verdict: registry.Accept},
		{name: "parts over max_parts", action: "reject", raw: multipartMsg("b", "\r\na", "\r\nb", "\r\nc", "\r\nd"),
			limited: "more than 3 MIME parts (max_parts)", verdict: registry.Reject},
		{name: "depth at max_depth", action: "reject", raw: nested(3, "needle"), verdict: registry.Accept, needle: true},
		{name: "depth over max_depth", action: "reject", raw: nested(4, "needle"),
			limited: "parts would be at depth 4, max_depth is 3", verdict: registry.Reject},
		{name: "decoded bytes at max_decoded_bytes", action: "tempfail", raw: "Subject: x\r\n\r\n" + strings.Repeat("a", 14) + "needle",
			verdict: registry.Accept, needle: true},
		{name: "decoded bytes over max_decoded_bytes", action: "tempfail", raw: "Subject: x\r\n\r\n" + strings.Repeat("a", 15) + "needle",
			limited: "more than 20 bytes of decoded text (max_decoded_bytes)", verdict: registry.TempFail},
		{name: "decoded bytes add up over parts", action: "quarantine",
			raw:     multipartMsg("b", "\r\n0123456789", "\r\n0123456789", "\r\nneedle"),
			limited: "max_decoded_bytes", verdict: registry.Quarantine},
		{name: "limit with accept", action: "accept", raw: nested(4, "x"), limited: "max_depth", verdict: registry.Accept},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFilter(t, limits(tt.action))
			res := run(t, f, tt.raw)
			rep := res.Data.(*Report)
			if tt.limited == "" && rep.Limit != "" || !strings.Contains(rep.Limit, tt.limited) {
				t.Errorf("limit %q, want %q", rep.Limit, tt.limited)
			}
			if res.Verdict.Action != tt.verdict {
				t.Errorf("verdict %v, want %v (details %s)", res.Verdict, tt.verdict, res.Details)
			}
			if got := strings.Contains(res.Details, "needle"); got != tt.needle {
				t.Errorf("needle found %v, want %v (details %s)", got, tt.needle, res.Details)
			}
			if rep.DecodedBytes > 20 {
				t.Errorf("decoded %d bytes past max_decoded_bytes", rep.DecodedBytes)
			}
		})
	}
}

func TestMalformedMIME(t *testing.T) {
	f := newFilter(t, rulesTOML) // malformed_action defaults to quarantine
	g := newFilter(t, strings.Replace(rulesTOML, "max_message_size = 4000", "max_message_size = 4000\nmalformed_action = \"accept\"", 1))
	tests := []struct {
		name      string
		raw       string
		malformed string
		verdict   registry.Action // with malformed_action = quarantine
		details   string
	}{
		{name: "multipart without boundary", raw: "Content-Type: multipart/mixed\r\n\r\nyou have won\r\n",
			malformed: "multipart without a boundary parameter", verdict: registry.Quarantine},
		{name: "boundary never appears", raw: "Content-Type: multipart/mixed; boundary=zz\r\n\r\njust text\r\n",
			malformed: `no part delimited by boundary "zz"`, verdict: registry.Quarantine},
		{name: "closing boundary missing, earlier parts still inspected",
			raw:       "Content-Type: multipart/mixed; boundary=zz\r\n\r\n--zz\r\n\r\nhi\r\n--zz\r\nContent-Type: application/octet-stream; name=a.exe\r\n\r\nMZ",
			malformed: "closing boundary missing", verdict: registry.Reject},
		{name: "bad base64, text before the error inspected",
			raw:       "Content-Transfer-Encoding: base64\r\n\r\n" + base64.StdEncoding.EncodeToString([]byte("TAG-ME and more")) + "!!!!\r\n",
			malformed: "decoding: illegal base64 data", verdict: registry.Quarantine, details: "body tagged"},
		{name: "unparsable Content-Type read as text", raw: "Content-Type: ;;;\r\n\r\nTAG-ME\r\n",
			malformed: `Content-Type ";;;"`, verdict: registry.Quarantine, details: "body tagged"},
		{name: "unknown transfer encoding", raw: "Content-Transfer-Encoding: x-uuencode\r\n\r\nbegin 644 a\r\n",
			malformed: `unknown Content-Transfer-Encoding "x-uuencode"`, verdict: registry.Quarantine},
		{name: "attached message with a broken header", raw: multipartMsg("b", "Content-Type: message/rfc822\r\n\r\nnot a header line\r\n\r\nbody"),
			malformed: "attached message header", verdict: registry.Quarantine},
		{name: "empty body", raw: "Content-Type: multipart/mixed; boundary=x\r\n", malformed: "no part delimited", verdict: registry.Quarantine},
		{name: "binary junk", raw: "Content-Type: multipart/mixed; boundary=\"\x00\xff\"\r\nContent-Transfer-Encoding: base64\r\n\r\n\x00\x01\x02--\xff\xfe\r\n",
			malformed: "part", verdict: registry.Quarantine},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := run(t, f, tt.raw)
			rep := res.Data.(*Report)
			if !strings.Contains(strings.Join(rep.Malformed, "\n"), tt.malformed) {
				t.Errorf("malformed %q, want one containing %q", rep.Malformed, tt.malformed)
			}
			if !strings.Contains(res.Details, "malformed MIME:") || !strings.Contains(res.Details, tt.details) {
				t.Errorf("details %q do not say the MIME was malformed", res.Details)
			}
			if res.Verdict.Action != tt.verdict {
				t.Errorf("verdict %v, want %v (details %s)", res.Verdict, tt.verdict, res.Details)
			}
			if res := run(t, g, tt.raw); res.Verdict.Action == registry.Quarantine {
				t.Errorf("malformed_action = accept still quarantined: %s", res.Details)
			}
		})
	}
}

func TestConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		toml string
		want []string
	}{
		{name: "bad regexp names the rule", toml: `
[[plugins.contentfilter.body_rules]]
name = "broken"
pattern = "(unclosed"`, want: []string{`body_rules[0] (rule "broken"): pattern "(unclosed": error parsing regexp: missing closing )`}},
		{name: "unknown action", toml: `
[[plugins.contentfilter.header_rules]]
name = "h"
header = "Subject"
pattern = "x"
action = "drop"`, want: []string{`header_rules[0] (rule "h"): action: unknown action "drop" (valid: add_header, quarantine, tempfail, reject)`}},
		{name: "missing fields", toml: `
[[plugins.contentfilter.header_rules]]
pattern = "x"
[[plugins.contentfilter.attachment_rules]]
name = "a"`, want: []string{"header_rules[0]: name is required", "header_rules[0]: header is required", `attachment_rules[0] (rule "a"): give extensions, mime_types or both`}},
		{name: "keys of another kind", toml: `
[[plugins.contentfilter.body_rules]]
name = "b"
pattern = "x"
extensions = ["exe"]
[[plugins.contentfilter.attachment_rules]]
name = "a"
pattern = "x"
extensions = ["exe"]`, want: []string{"extensions and mime_types belong in attachment_rules", "pattern and header belong in header_rules or body_rules"}},
		{name: "duplicate rule names", toml: `
[[plugins.contentfilter.body_rules]]
name = "same"
pattern = "x"
[[plugins.contentfilter.attachment_rules]]
name = "same"
extensions = ["exe"]`, want: []string{`attachment_rules[0] (rule "same"): rule name "same" is also used by body_rules[0]`}},
		{name: "add_header problems", toml: `
[[plugins.contentfilter.body_rules]]
name = "a"
pattern = "x"
add_header = "X-A: 1"
[[plugins.contentfilter.body_rules]]
name = "b"
pattern = "x"
action = "add_header"
add_header = "no colon"`, want: []string{`add_header is only used with action = "add_header"`, `add_header "no colon": want "Name: value"`}},
		{name: "bad extension and MIME type", toml: `
[[plugins.contentfilter.attachment_rules]]
name = "a"
extensions = ["a b"]
mime_types = ["exe", "application/[x"]`, want: []string{`extensions: "a b" is not`, `mime_types: "exe" is not`, `mime_types: "application/[x" is not`}},
		{name: "limits and top-level actions", toml: `
[plugins.contentfilter]
max_parts = 0
max_depth = -1
max_decoded_bytes = 0
max_message_size = -5
limit_action = "nope"
max_message_size_action = "accept"
header_name = "Bad Name"`, want: []string{"max_parts = 0: must be at least 1", "max_depth = -1", "max_decoded_bytes = 0", "max_message_size = -5",
			`limit_action: unknown action "nope"`, `max_message_size_action: unknown action "accept"`, `header_name: "Bad Name" is not a header field name`}}, {name: "archive limits and actions", toml: `
[plugins.contentfilter]
max_archive_depth = 0
max_archive_members = 0
max_archive_bytes = 0
max_archive_ratio = 1048577
archive_limit_action = "drop"
encrypted_action = ""
uninspectable_action = "bounce"`, want: []string{"max_archive_depth = 0: must be at least 1", "max_archive_members = 0: must be at least 1",
			"max_archive_bytes = 0: must be at least 1", "max_archive_ratio = 1048577: must be from 1 to 1048576",
			`archive_limit_action: unknown action "drop"`, `encrypted_action: unknown action ""`, `uninspectable_action: unknown action "bounce"`}},
		{name: "ratio of zero", toml: `
[plugins.contentfilter]
max_archive_ratio = 0`, want: []string{"max_archive_ratio = 0: must be from 1 to 1048576"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// ParseConfig validates the config (what `elemta config check` shows)...
			_, verr := pluginhost.ParseConfig("test.toml", []byte("[plugins]\nplugins = [\"contentfilter\"]\n"+tt.toml))
			// ...and New refuses the same config when handed it directly.
			var doc struct {
				Plugins struct {
					Contentfilter Config `toml:"contentfilter"`
				} `toml:"plugins"`
			}
			doc.Plugins.Contentfilter = DefaultConfig()
			if err := toml.Unmarshal([]byte(tt.toml), &doc); err != nil {
				t.Fatalf("decode: %v", err)
			}
			_, nerr := New(doc.Plugins.Contentfilter, registry.Host{})
			if verr == nil || nerr == nil {
				t.Fatalf("ParseConfig = %v, New = %v; want errors", verr, nerr)
			}
			for _, w := range tt.want {
				if !strings.Contains(verr.Error(), w) {
					t.Errorf("error %q\nlacks %q", verr, w)
				}
			}
			// The registry names the plugin; New's error is Validate's.
			if cfg := doc.Plugins.Contentfilter; nerr.Error() != cfg.Validate().Error() {
				t.Errorf("New error %q\nis not Validate's %q", nerr, cfg.Validate())
			}
			if strings.HasPrefix(nerr.Error(), "contentfilter: ") {
				t.Errorf("New error %q names the plugin, which the registry does", nerr)
			}
		})
	}
}

func TestUnknownRuleKey(t *testing.T) {
	_, err := pluginhost.ParseConfig("test.toml", []byte("[plugins]\nplugins = [\"contentfilter\"]\n[[plugins.contentfilter.body_rules]]\nname = \"a\"\npatern = \"x\"\n"))
	if err == nil || !strings.Contains(err.Error(), "test.toml:5:1") || !strings.Contains(err.Error(), `unknown key "patern"`) {
		t.Fatalf("error %v, want one naming test.toml:5:1 and the key patern", err)
	}
}

func TestContextCancelled(t *testing.T) {
	f := newFilter(t, rulesTOML)
	msg, _ := registry.ParseMessage([]byte(multipartMsg("b", textPart)), registry.Envelope{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := f.Inspect(ctx, msg); err == nil || !strings.Contains(err.Error(), "context canceled") {
		t.Fatalf("Inspect with a cancelled context: %v, want context canceled", err)
	}
}

func FuzzInspect(f *testing.F) {
	f.Add([]byte(multipartMsg("b", textPart, "Content-Type: message/rfc822\r\n\r\nSubject: x\r\n\r\nhi")))
	f.Add([]byte("Content-Type: multipart/mixed; boundary=a\r\n\r\n--a\r\nContent-Type: multipart/mixed; boundary=a\r\n\r\n--a\r\n"))
	f.Add([]byte("Content-Transfer-Encoding: base64\r\nContent-Type: text/plain; charset=latin1\r\n\r\n////\r\n"))
	// Archives, sent 8bit so that the fuzzer mutates their bytes directly.
	for _, a := range [][]byte{zipOf(f, file{"a.exe", peBytes}, file{"b.zip", zipOf(f, file{"c.txt", []byte("c")})}),
		gzipOf(f, "x.tar", tarOf(f, file{"run.sh", scriptSh})), encryptedZip(f, "e.pdf")} {
		f.Add([]byte(multipartMsg("b", textPart, "Content-Type: application/octet-stream\r\nContent-Disposition: attachment; filename*0=a; filename*1=.zip\r\n\r\n"+string(a))))
	}
	cfg, err := pluginhost.ParseConfig("test.toml", []byte(rulesTOML))
	if err != nil {
		f.Fatalf("parse config: %v", err)
	}
	pc, _ := cfg.Settings("contentfilter")
	filter, err := New(*pc.Value.(*Config), registry.Host{})
	if err != nil {
		f.Fatalf("New: %v", err)
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		msg, err := registry.ParseMessage(raw, registry.Envelope{})
		if err != nil {
			return
		}
		rep, err := filter.Inspect(context.Background(), msg)
		if err != nil {
			t.Fatalf("Inspect: %v", err)
		}
		if rep.DecodedBytes > DefaultMaxDecodedBytes || rep.Depth > DefaultMaxDepth {
			t.Fatalf("limits exceeded: %+v", rep)
		}
		// An archive that was not fully read is never silently accepted.
		for _, a := range rep.Attachments {
			if a.Encrypted && len(rep.Encrypted) == 0 {
				t.Fatalf("encrypted member %q not reported", a.Path)
			}
		}
	})
}

func BenchmarkInspect(b *testing.B) {
	cfg, err := pluginhost.ParseConfig("test.toml", []byte(rulesTOML))
	if err != nil {
		b.Fatal(err)
	}
	pc, _ := cfg.Settings("contentfilter")
	f, err := New(*pc.Value.(*Config), registry.Host{})
	if err != nil {
		b.Fatal(err)
	}
	tests := []struct{ name, raw string }{
		{"plain", "Subject: hello\r\n\r\n" + strings.Repeat("Just a normal line of text.\r\n", 40)},
		{"multipart", multipartMsg("b", textPart,
			"Content-Type: text/html\r\nContent-Transfer-Encoding: base64\r\n\r\n"+base64.StdEncoding.EncodeToString([]byte(strings.Repeat("<p>hello</p>", 100)))+"\r\n",
			"Content-Type: application/pdf\r\nContent-Disposition: attachment; filename=a.pdf\r\n\r\n%PDF-1.4\r\n")},
	}
	for _, tt := range tests {
		msg, err := registry.ParseMessage([]byte(tt.raw), registry.Envelope{})
		if err != nil {
			b.Fatal(err)
		}
		b.Run(tt.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(tt.raw)))
			for b.Loop() {
				if _, err := f.Inspect(context.Background(), msg); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestLenientParameters: one malformed or repeated parameter must not hide
// the boundary or the file name that mail clients still use, so the
// attachment rules see the attachment (a reject, which outranks the
// malformed_action quarantine).
func TestLenientParameters(t *testing.T) {
	f := newFilter(t, rulesTOML)
	exePart := "Content-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=invoice.exe\r\n\r\nMZ\r\n"
	withCT := func(ct string) string {
		return "From: a@example.com\r\nMIME-Version: 1.0\r\nContent-Type: " + ct + "\r\n\r\n--b1\r\n" + textPart + "\r\n--b1\r\n" + exePart + "\r\n--b1--\r\n"
	}
	tests := []struct {
		name string
		raw  string
	}{ // each is also reported as malformed
		{"stray token after the boundary", withCT(`multipart/mixed; boundary="b1"; foo`)},
		{"unquoted space in another parameter", withCT(`multipart/mixed; x=a b; boundary=b1`)},
		{"repeated boundary, the first counts", withCT(`multipart/mixed; boundary=b1; boundary=b2`)},
		{"empty parameter", withCT(`multipart/mixed; boundary=b1;; charset=x`)},
		{"quoted semicolon before the boundary", withCT(`multipart/mixed; x="a;b"; y; boundary=b1`)},
		{"stray token in Content-Disposition", multipartMsg("b1", textPart,
			"Content-Type: application/octet-stream; x\r\nContent-Disposition: attachment; filename=\"invoice.exe\"; x\r\n\r\nMZ\r\n")},
		{"stray token in Content-Type with a name", multipartMsg("b1", textPart,
			"Content-Type: application/octet-stream; name=\"setup.exe\"; ;x\r\n\r\nMZ\r\n")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := run(t, f, tt.raw)
			if res.Verdict.Action != registry.Reject || !strings.Contains(res.Details, "attachment executables") {
				t.Fatalf("verdict %v, want reject by executables; details: %s", res.Verdict, res.Details)
			}
			if rep := res.Data.(*Report); len(rep.Malformed) == 0 {
				t.Errorf("the bad parameter is not reported as malformed")
			}
		})
	}
}
