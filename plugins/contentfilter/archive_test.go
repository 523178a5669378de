package contentfilter

import (
	"archive/zip"
	"bytes"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/elemta/elemta/pluginhost"
	"github.com/elemta/elemta/registry"
)

// defaultFilter is the filter under Elemta's embedded default config,
// which `make run` and `elemta scan` use.
func defaultFilter(t testing.TB) *Filter {
	t.Helper()
	doc, err := os.ReadFile("../../internal/config/default.toml")
	if err != nil {
		t.Fatal(err)
	}
	// This test binary links only this plugin.
	doc = bytes.Replace(doc, []byte(`plugins = ["contentfilter", "authres"]`), []byte(`plugins = ["contentfilter"]`), 1)
	cfg, err := pluginhost.ParseConfig("default.toml", doc)
	if err != nil {
		t.Fatalf("parse default config: %v", err)
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

func TestArchivesUnderDefaultConfig(t *testing.T) {
	f := defaultFilter(t)
	inner := zipOf(t, file{"invoice.exe", peBytes})
	docm := zipOf(t, file{"[Content_Types].xml", []byte("<Types/>")}, file{"word/document.xml", []byte("<w:document/>")},
		file{"word/vbaProject.bin", vbaBytes})
	tests := []struct {
		name    string
		part    string
		verdict registry.Action
		details []string // in the result's details
		rule    string   // rule fired on some attachment or member
	}{
		{name: "zipped exe", part: attached("invoice.zip", inner), verdict: registry.Reject,
			details: []string{`part 2 > "invoice.exe": attachment "invoice.exe"`}, rule: "executables"},
		{name: "zip of PDFs", part: attached("reports.zip", zipOf(t, file{"q1.pdf", pdfBytes}, file{"q2.pdf", pdfBytes})),
			verdict: registry.Accept},
		{name: "exe renamed inside a zip", part: attached("photos.zip", zipOf(t, file{"holiday.jpg", peBytes})), verdict: registry.Reject,
			details: []string{"detected type application/vnd.microsoft.portable-executable"}},
		{name: "zip in a zip in a zip", part: attached("a.zip", zipOf(t, file{"b.zip", zipOf(t, file{"c.zip", inner})})),
			verdict: registry.Reject, details: []string{`"b.zip" > "c.zip" > "invoice.exe"`}},
		{name: "tar.gz", part: attached("logs.tar.gz", gzipOf(t, "logs.tar", tarOf(t, file{"logs/readme.txt", []byte("hi")}, file{"logs/run.sh", scriptSh}))),
			verdict: registry.Reject, details: []string{"text/x-script"}},
		{name: "gzip member named by the gzip header", part: attached("data.gz", gzipOf(t, "setup.exe", []byte("plain bytes"))),
			verdict: registry.Reject, details: []string{`"setup.exe"`}},
		{name: "tar of text", part: attached("notes.tar", tarOf(t, file{"a.txt", []byte("a")}, file{"b.txt", []byte("b")})), verdict: registry.Accept},
		{name: "ISO image with an exe", part: attached("invoice.iso", isoOf(t, file{"INVOICE.EXE", peBytes}, file{"README.TXT", []byte("read me")})),
			verdict: registry.Reject, details: []string{`part 2 > "invoice.exe"`}},
		{name: "ISO image of a PDF", part: attached("doc.iso", isoOf(t, file{"DOC.PDF", pdfBytes})), verdict: registry.Accept},
		{name: "zip with a shortcut", part: attached("a.zip", zipOf(t, file{"document", lnkBytes})), verdict: registry.Reject,
			details: []string{"application/x-ms-shortcut"}},
		{name: "macro-enabled document", part: attached("report.docx", docm), verdict: registry.Reject, rule: "office-macros"},
		{name: "encrypted zip: names are checked", part: attached("secret.zip", encryptedZip(t, "invoice.exe")), verdict: registry.Reject,
			details: []string{`"invoice.exe"`, "encrypted; its name was checked"}},
		{name: "encrypted zip of a PDF", part: attached("secret.zip", encryptedZip(t, "doc.pdf")), verdict: registry.Quarantine,
			details: []string{"archive encrypted: part 2 > \"doc.pdf\""}},
		{name: "zip after other bytes", part: attachment("Content-Type: image/gif\r\nContent-Disposition: attachment; filename=\"cat.gif\"",
			append([]byte("GIF89a\x01\x00\x01\x00"), inner...)), verdict: registry.Reject, details: []string{`"invoice.exe"`}},
		{name: "corrupt zip", part: attached("a.zip", append([]byte("PK\x03\x04"), make([]byte, 60)...)), verdict: registry.Quarantine,
			details: []string{"could not inspect", "zip archive does not open"}},
		{name: "7z", part: attached("a.7z", []byte("7z\xbc\xaf\x27\x1c\x00\x04\x00\x00\x00\x00\x00\x00\x00\x00")), verdict: registry.Quarantine,
			details: []string{"7z archive: the filter cannot open this format"}},
		{name: "rar", part: attached("a.rar", []byte("Rar!\x1a\x07\x01\x00\x00\x00\x00\x00")), verdict: registry.Quarantine,
			details: []string{"rar archive: the filter cannot open this format"}},
		{name: "executable without a name", part: attachment("Content-Type: application/octet-stream", peBytes), verdict: registry.Reject,
			details: []string{"part 2 has detected type application/vnd.microsoft.portable-executable"}},
		{name: "executable under a lying type and name", part: attachment("Content-Type: image/jpeg\r\nContent-Disposition: attachment; filename=\"photo.jpg\"", peBytes),
			verdict: registry.Reject},
		{name: "ELF program", part: attached("tool", elfBytes(t)), verdict: registry.Reject, details: []string{"application/x-elf"}},
		{name: "Mach-O program", part: attached("tool", machoBytes), verdict: registry.Reject, details: []string{"application/x-mach-binary"}},
		{name: "shebang script as text", part: "Content-Type: text/plain\r\n\r\n#!/usr/bin/env perl\r\nprint 1;\r\n", verdict: registry.Reject,
			details: []string{"text/x-script"}},
		{name: "a PDF", part: attached("a.pdf", pdfBytes), verdict: registry.Accept},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := run(t, f, multipartMsg("b", textPart, tt.part))
			if res.Verdict.Action != tt.verdict {
				t.Fatalf("verdict %v, want %v; details: %s", res.Verdict, tt.verdict, res.Details)
			}
			for _, d := range tt.details {
				if !strings.Contains(res.Details, d) {
					t.Errorf("details %q lack %q", res.Details, d)
				}
			}
			rep := res.Data.(*Report)
			if tt.rule != "" && !slices.ContainsFunc(rep.Attachments, func(a Attachment) bool { return slices.Contains(a.Rules, tt.rule) }) {
				t.Errorf("no attachment fired %q: %+v", tt.rule, rep.Attachments)
			}
			if tt.verdict == registry.Accept && (len(rep.Malformed) > 0 || len(rep.Uninspectable) > 0 || rep.ArchiveLimit != "") {
				t.Errorf("clean message reported %q %q %q", rep.Malformed, rep.Uninspectable, rep.ArchiveLimit)
			}
		})
	}
}

func TestDetectTypes(t *testing.T) {
	tests := []struct {
		name string
		b    []byte
		want string
	}{
		{"PE", peBytes, "application/vnd.microsoft.portable-executable"},
		{"ELF", elfBytes(t), "application/x-elf"},
		{"Mach-O", machoBytes, "application/x-mach-binary"},
		{"shebang", scriptSh, typeScript},
		{"shortcut", lnkBytes, "application/x-ms-shortcut"},
		{"VBA project", vbaBytes, typeVBA},
		{"zip", zipOf(t, file{"a", []byte("a")}), "application/zip"},
		{"gzip", gzipOf(t, "", []byte("a")), "application/gzip"},
		{"tar", tarOf(t, file{"a", []byte("a")}), "application/x-tar"},
		{"ISO", isoOf(t, file{"A.TXT", []byte("a")}), typeISO},
		{"FAT boot sector", fatBootSector(), typeDiskImg},
		{"VHD", []byte("conectix\x00\x00\x00\x02"), typeVHD},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := detectTypes(tt.b); !slices.Contains(got, tt.want) {
				t.Errorf("detectTypes = %q, want %q among them", got, tt.want)
			}
		})
	}
	if got := detectTypes([]byte("just words\n")); len(got) != 0 {
		t.Errorf("plain text detected as %q", got)
	}
}

func fatBootSector() []byte {
	b := make([]byte, 512)
	copy(b, "\xeb\x3c\x90MSDOS5.0")
	copy(b[54:], "FAT16   ")
	b[510], b[511] = 0x55, 0xAA
	return b
}

// limitsTOML is a config with small archive limits and one rule.
func limitsTOML(keys string) string {
	return `
[plugins.contentfilter]
` + keys + `

[[plugins.contentfilter.attachment_rules]]
name = "executables"
extensions = ["exe"]
`
}

func TestArchiveLimits(t *testing.T) {
	txt := func(n int) file { return file{fmt.Sprintf("f%d.txt", n), []byte("x")} }
	zeros := make([]byte, 100_000)
	big := zipOf(t, file{"zeros.bin", zeros})
	bigRatio := (uint64(len(zeros)) + uint64(len(big)) - 1) / uint64(len(big)) // ceil(declared / size)
	gz := gzipOf(t, "zeros.bin", zeros)
	gzRatio := (len(zeros) + len(gz) - 1) / len(gz)
	nest := func(levels int) []byte {
		b := zipOf(t, txt(0))
		for i := 1; i < levels; i++ {
			b = zipOf(t, file{fmt.Sprintf("l%d.zip", i), b})
		}
		return b
	}
	tests := []struct {
		name    string
		keys    string
		data    []byte
		limited string
	}{
		{name: "depth at max_archive_depth", keys: "max_archive_depth = 2", data: nest(2)},
		{name: "depth over max_archive_depth", keys: "max_archive_depth = 2", data: nest(3), limited: "at nesting depth 3, max_archive_depth is 2"},
		{name: "members at max_archive_members", keys: "max_archive_members = 3", data: zipOf(t, txt(1), txt(2), txt(3))},
		{name: "members over max_archive_members", keys: "max_archive_members = 3", data: zipOf(t, txt(1), txt(2), txt(3), txt(4)),
			limited: "more than 3 archive members (max_archive_members)"},
		{name: "bytes at max_archive_bytes", keys: "max_archive_bytes = 100000\nmax_archive_ratio = 100000", data: big},
		{name: "bytes over max_archive_bytes", keys: "max_archive_bytes = 99999\nmax_archive_ratio = 100000", data: big,
			limited: "more than 99999 uncompressed bytes (max_archive_bytes)"},
		{name: "zip ratio at max_archive_ratio", keys: fmt.Sprintf("max_archive_ratio = %d", bigRatio), data: big},
		{name: "zip ratio over max_archive_ratio", keys: fmt.Sprintf("max_archive_ratio = %d", bigRatio-1), data: big,
			limited: fmt.Sprintf("(max_archive_ratio is %d)", bigRatio-1)},
		{name: "gzip ratio at max_archive_ratio", keys: fmt.Sprintf("max_archive_ratio = %d", gzRatio), data: gz},
		{name: "gzip ratio over max_archive_ratio", keys: fmt.Sprintf("max_archive_ratio = %d", gzRatio-1), data: gz,
			limited: fmt.Sprintf("expands more than %d times (max_archive_ratio)", gzRatio-1)},
		{name: "gzip over max_archive_bytes", keys: "max_archive_bytes = 99999\nmax_archive_ratio = 100000", data: gz,
			limited: "expands past max_archive_bytes (99999)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFilter(t, limitsTOML(tt.keys))
			res := run(t, f, multipartMsg("b", textPart, attached("a.bin", tt.data)))
			rep := res.Data.(*Report)
			want := registry.Accept
			if tt.limited != "" {
				want = registry.Quarantine // archive_limit_action's default
			}
			if !strings.Contains(rep.ArchiveLimit, tt.limited) || (tt.limited == "") != (rep.ArchiveLimit == "") {
				t.Errorf("archive limit %q, want %q", rep.ArchiveLimit, tt.limited)
			}
			if res.Verdict.Action != want {
				t.Errorf("verdict %v, want %v (details %s)", res.Verdict, want, res.Details)
			}
		})
	}
}

// TestArchiveLimitActions: each archive verdict has its own key; a limit
// stops archives, not the rest of the message.
func TestArchiveLimitActions(t *testing.T) {
	f := newFilter(t, limitsTOML("max_archive_members = 1\narchive_limit_action = \"tempfail\"\nencrypted_action = \"add_header\"\nuninspectable_action = \"reject\""))
	res := run(t, f, multipartMsg("b", textPart, attached("a.zip", zipOf(t, file{"a", nil}, file{"b", nil})), attached("b.exe", []byte("x"))))
	if res.Verdict.Action != registry.Reject || !strings.Contains(res.Details, "archive archive_limit") || !strings.Contains(res.Details, `"b.exe"`) {
		t.Errorf("verdict %v, details %s", res.Verdict, res.Details)
	}
	res = run(t, f, multipartMsg("b", textPart, attached("s.zip", encryptedZip(t, "a.pdf"))))
	if res.Verdict.Action != registry.Accept || len(res.AddHeaders) != 1 || res.AddHeaders[0].Value != "encrypted" {
		t.Errorf("encrypted: verdict %v, headers %v", res.Verdict, res.AddHeaders)
	}
	res = run(t, f, multipartMsg("b", textPart, attached("a.7z", []byte("7z\xbc\xaf\x27\x1c\x00\x04"))))
	if res.Verdict.Action != registry.Reject {
		t.Errorf("uninspectable: verdict %v (%s)", res.Verdict, res.Details)
	}
}

// bomb builds a 42.zip-style archive: levels of zips, each holding width
// copies of the level below, the last level holding width members of
// leaf bytes of zeros. The leaves share their compressed bytes and each
// level deflates the repetitive level below, so it is cheap to build and
// small, like the original.
func bomb(t testing.TB, levels, width, leaf int) []byte {
	t.Helper()
	var comp bytes.Buffer
	zw := zip.NewWriter(&comp)
	w, _ := zw.Create("x")
	w.Write(make([]byte, leaf))
	zw.Close()
	zr, err := zip.NewReader(bytes.NewReader(comp.Bytes()), int64(comp.Len()))
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := zr.File[0].OpenRaw()
	rawBytes := new(bytes.Buffer)
	rawBytes.ReadFrom(raw)
	hdr := zr.File[0].FileHeader
	var level []byte
	for l := 0; l < levels; l++ {
		var buf bytes.Buffer
		zw := zip.NewWriter(&buf)
		for i := 0; i < width; i++ {
			if l == 0 {
				h := hdr
				h.Name = fmt.Sprintf("%d.bin", i)
				w, err := zw.CreateRaw(&h)
				if err != nil {
					t.Fatal(err)
				}
				w.Write(rawBytes.Bytes())
				continue
			}
			w, _ := zw.Create(fmt.Sprintf("%d.zip", i))
			w.Write(level)
		}
		zw.Close()
		level = buf.Bytes()
	}
	return level
}

// TestZipBomb: a 42.zip-style bomb (5 levels of 16, 16^5 leaves of 10 MB:
// 10 TB) is refused within its limits, in bounded memory, under the
// defaults and with depth allowed.
func TestZipBomb(t *testing.T) {
	b := bomb(t, 5, 16, 10<<20)
	if len(b) > 1<<20 {
		t.Fatalf("bomb is %d bytes", len(b))
	}
	t.Logf("bomb: %d bytes", len(b))
	msg := multipartMsg("b", textPart, attached("42.zip", b))
	for _, tt := range []struct{ name, keys, limited string }{
		{"defaults", "", "max_archive_depth is 3"},
		{"deep nesting allowed", "max_archive_depth = 10", "max_archive_ratio"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := newFilter(t, limitsTOML(tt.keys))
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			res := run(t, f, msg)
			runtime.ReadMemStats(&after)
			rep := res.Data.(*Report)
			if res.Verdict.Action != registry.Quarantine || !strings.Contains(rep.ArchiveLimit, tt.limited) {
				t.Errorf("verdict %v, archive limit %q, want %q", res.Verdict, rep.ArchiveLimit, tt.limited)
			}
			if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 64<<20 {
				t.Errorf("inspecting the bomb allocated %d bytes", alloc)
			}
		})
	}
}

func TestAmbiguousNames(t *testing.T) {
	f := defaultFilter(t)
	part := func(header string) string { return header + "\r\n\r\nx\r\n" }
	tests := []struct {
		name      string
		part      string
		verdict   registry.Action
		malformed string
	}{
		{name: "repeated filename", part: part("Content-Type: application/pdf\r\nContent-Disposition: attachment; filename=\"a.pdf\"; filename=\"invoice.exe\""),
			verdict: registry.Reject, malformed: "parameter filename appears 2 times"},
		{name: "RFC 2231 sections disagree with the plain name",
			part:    part("Content-Type: application/pdf\r\nContent-Disposition: attachment; filename=\"a.pdf\"; filename*0=\"invo\"; filename*1=\"ice.exe\""),
			verdict: registry.Reject, malformed: `its names disagree ("a.pdf", "invoice.exe")`},
		{name: "RFC 2231 extended value disagrees", part: part("Content-Type: application/pdf\r\nContent-Disposition: attachment; filename=\"a.pdf\"; filename*=UTF-8''invoice.exe"),
			verdict: registry.Reject, malformed: "names disagree"},
		{name: "name and filename disagree", part: part("Content-Type: application/pdf; name=\"invoice.exe\"\r\nContent-Disposition: attachment; filename=\"a.pdf\""),
			verdict: registry.Reject, malformed: "names disagree"},
		{name: "encoded word", part: part("Content-Type: application/pdf\r\nContent-Disposition: attachment; filename=\"=?UTF-8?B?aW52b2ljZS5leGU=?=\""),
			verdict: registry.Reject, malformed: "names disagree"},
		{name: "bidirectional override", part: part("Content-Type: application/pdf\r\nContent-Disposition: attachment; filename=\"report\u202Etxt.pdf\""),
			verdict: registry.Quarantine, malformed: "control or bidirectional characters U+202E"},
		{name: "RFC 2231 section missing", part: part("Content-Type: application/pdf\r\nContent-Disposition: attachment; filename*0=\"a\"; filename*2=\".exe\""),
			verdict: registry.Quarantine, malformed: "sections of filename skip from 0 to 2"},
		{name: "names agree", part: part("Content-Type: application/pdf; name=\"a.pdf\"\r\nContent-Disposition: attachment; filename*0=\"a.\"; filename*1=\"pdf\""),
			verdict: registry.Accept},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := run(t, f, multipartMsg("b", textPart, tt.part))
			rep := res.Data.(*Report)
			if res.Verdict.Action != tt.verdict {
				t.Errorf("verdict %v, want %v (details %s)", res.Verdict, tt.verdict, res.Details)
			}
			got := strings.Join(rep.Malformed, "\n")
			if tt.malformed == "" && got != "" || !strings.Contains(got, tt.malformed) {
				t.Errorf("malformed %q, want %q", got, tt.malformed)
			}
			if tt.verdict == registry.Reject && !strings.Contains(res.Details, "malformed malformed") {
				t.Errorf("the ambiguity is not reported: %s", res.Details)
			}
		})
	}
}

// TestBzip2: testdata/run.sh.bz2 was made by bzip2(1) from a two-line
// shell script (Go has no bzip2 writer).
func TestBzip2(t *testing.T) {
	b, err := os.ReadFile("testdata/run.sh.bz2")
	if err != nil {
		t.Fatal(err)
	}
	res := run(t, defaultFilter(t), multipartMsg("b", textPart, attached("run.sh.bz2", b)))
	if res.Verdict.Action != registry.Reject || !strings.Contains(res.Details, `part 2 > "run.sh" has detected type text/x-script`) {
		t.Errorf("verdict %v, details %s", res.Verdict, res.Details)
	}
	res = run(t, defaultFilter(t), multipartMsg("b", textPart, attached("run.bz2", b[:len(b)-8])))
	// What decoded before the error is inspected; the error is reported.
	if res.Verdict.Action != registry.Reject || !strings.Contains(res.Details, "could not inspect: part 2: bzip2 stream: unexpected EOF") {
		t.Errorf("truncated: verdict %v, details %s", res.Verdict, res.Details)
	}
}

func TestHasJoliet(t *testing.T) {
	img := isoOf(t, file{"A.TXT", []byte("a")})
	if hasJoliet(img) {
		t.Fatal("the writer's image has no supplementary volume descriptor")
	}
	j := slices.Clone(img)
	copy(j[17*2048:], j[16*2048:17*2048]) // a second descriptor after the primary one ...
	j[17*2048] = 2                        // ... of type 2
	if !hasJoliet(j) {
		t.Error("supplementary volume descriptor not seen")
	}
	res := run(t, defaultFilter(t), multipartMsg("b", textPart, attached("a.iso", j)))
	if res.Verdict.Action != registry.Quarantine {
		t.Errorf("ISO with Joliet names: verdict %v (%s)", res.Verdict, res.Details)
	}
}
