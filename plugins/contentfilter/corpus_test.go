package contentfilter

import (
	"bytes"
	"flag"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/elemta/elemta/registry"
)

// go test -run TestCorpus -update-corpus ./plugins/contentfilter/ writes
// testdata/corpus/ anew from corpusCases: this test is the script that
// builds the corpus.
var updateCorpus = flag.Bool("update-corpus", false, "rewrite testdata/corpus from corpusCases")

type corpusCase struct {
	file    string
	subject string
	part    string
	verdict registry.Action // under the embedded default config
}

func corpusCases(t testing.TB) []corpusCase {
	inner := zipOf(t, file{"invoice.exe", peBytes})
	part := func(header string) string { return header + "\r\n\r\nx\r\n" }
	var img bytes.Buffer
	m := image.NewRGBA(image.Rect(0, 0, 8, 8))
	for i := range 8 {
		m.Set(i, i, color.RGBA{R: 200, A: 255})
	}
	if err := png.Encode(&img, m); err != nil {
		t.Fatal(err)
	}
	docm := zipOf(t, file{"[Content_Types].xml", []byte("<Types/>")}, file{"word/document.xml", []byte("<w:document/>")},
		file{"word/vbaProject.bin", vbaBytes})
	return []corpusCase{
		{"benign-pdf.eml", "a PDF", attachment("Content-Type: application/pdf\r\nContent-Disposition: attachment; filename=\"report.pdf\"", pdfBytes), registry.Accept},
		{"benign-zip-of-pdfs.eml", "a zip of PDFs", attached("reports.zip", zipOf(t, file{"q1.pdf", pdfBytes}, file{"q2.pdf", pdfBytes})), registry.Accept},
		{"benign-image.eml", "an image", attachment("Content-Type: image/png\r\nContent-Disposition: inline; filename=\"dot.png\"", img.Bytes()), registry.Accept},
		{"benign-tar-gz-of-text.eml", "a tar.gz of text", attached("notes.tar.gz", gzipOf(t, "notes.tar", tarOf(t, file{"a.txt", []byte("a")}))), registry.Accept},
		{"zip-exe.eml", "a zipped exe", attached("invoice.zip", inner), registry.Reject},
		{"zip-zip-zip-exe.eml", "an exe three zips deep", attached("a.zip", zipOf(t, file{"b.zip", zipOf(t, file{"c.zip", inner})})), registry.Reject},
		{"zip-renamed-exe.eml", "an exe named .jpg in a zip", attached("photos.zip", zipOf(t, file{"holiday.jpg", peBytes})), registry.Reject},
		{"zip-lnk.eml", "a shortcut in a zip", attached("docs.zip", zipOf(t, file{"document.pdf.lnk", lnkBytes})), registry.Reject},
		{"tar-gz-script.eml", "a shell script in a tar.gz", attached("logs.tar.gz", gzipOf(t, "logs.tar", tarOf(t, file{"run.sh", scriptSh}))), registry.Reject},
		{"iso-exe.eml", "an exe in an ISO image", attached("invoice.iso", isoOf(t, file{"INVOICE.EXE", peBytes})), registry.Reject},
		{"docm-macros.eml", "a document with macros", attached("report.docx", docm), registry.Reject},
		{"encrypted-zip-exe.eml", "an encrypted zip holding an exe", attached("secret.zip", encryptedZip(t, "invoice.exe")), registry.Reject},
		{"encrypted-zip-pdf.eml", "an encrypted zip holding a PDF", attached("secret.zip", encryptedZip(t, "doc.pdf")), registry.Quarantine},
		{"7z.eml", "a 7z archive", attached("a.7z", []byte("7z\xbc\xaf\x27\x1c\x00\x04\x00\x00\x00\x00\x00\x00\x00\x00")), registry.Quarantine},
		{"zip-bomb.eml", "a 42.zip-style bomb", attached("42.zip", bomb(t, 5, 16, 10<<20)), registry.Quarantine},
		{"exe-no-name.eml", "an exe without a name", attachment("Content-Type: application/octet-stream", peBytes), registry.Reject},
		{"exe-as-jpeg.eml", "an exe declared as a JPEG", attachment("Content-Type: image/jpeg\r\nContent-Disposition: attachment; filename=\"photo.jpg\"", peBytes), registry.Reject},
		{"elf-no-name.eml", "an ELF program", attachment("Content-Type: application/octet-stream", elfBytes(t)), registry.Reject},
		{"duplicate-filename.eml", "filename twice", part("Content-Type: application/pdf\r\nContent-Disposition: attachment; filename=\"a.pdf\"; filename=\"invoice.exe\""), registry.Reject},
		{"rfc2231-disagrees.eml", "RFC 2231 sections disagree", part("Content-Type: application/pdf\r\nContent-Disposition: attachment; filename=\"a.pdf\"; filename*0=\"invo\"; filename*1=\"ice.exe\""), registry.Reject},
		{"name-vs-filename.eml", "name and filename disagree", part("Content-Type: application/pdf; name=\"invoice.exe\"\r\nContent-Disposition: attachment; filename=\"a.pdf\""), registry.Reject},
		{"bidi-name.eml", "a right-to-left override in a name", part("Content-Type: application/pdf\r\nContent-Disposition: attachment; filename=\"report\u202Etxt.pdf\""), registry.Quarantine},
		{"multipart-no-boundary.eml", "malformed: no boundary", "", registry.Quarantine},
	}
}

func (c corpusCase) message() string {
	if c.part == "" {
		return "From: a@example.com\r\nSubject: " + c.subject + "\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed\r\n\r\n--x\r\nContent-Type: application/octet-stream; name=a.exe\r\n\r\nMZ\r\n--x--\r\n"
	}
	return strings.Replace(multipartMsg("corpus-boundary", textPart, c.part), "Subject: test", "Subject: "+c.subject, 1)
}

// TestCorpus runs testdata/corpus/*.eml under the embedded default config
// and checks each against the verdict in testdata/corpus/verdicts.txt.
func TestCorpus(t *testing.T) {
	dir := filepath.Join("testdata", "corpus")
	cases := corpusCases(t)
	if *updateCorpus {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		var v strings.Builder
		v.WriteString("# verdict of each message under the embedded default config; written by go test -run TestCorpus -update-corpus\n")
		for _, c := range cases {
			if err := os.WriteFile(filepath.Join(dir, c.file), []byte(c.message()), 0o644); err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(&v, "%s %s\n", c.file, c.verdict)
		}
		if err := os.WriteFile(filepath.Join(dir, "verdicts.txt"), []byte(v.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want := map[string]string{}
	b, err := os.ReadFile(filepath.Join(dir, "verdicts.txt"))
	if err != nil {
		t.Fatalf("%v (go test -run TestCorpus -update-corpus writes it)", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) == 2 && !strings.HasPrefix(line, "#") {
			want[f[0]] = f[1]
		}
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.eml"))
	if len(files) != len(cases) || len(want) != len(cases) {
		t.Errorf("%d messages and %d verdicts in %s, want %d: run go test -run TestCorpus -update-corpus", len(files), len(want), dir, len(cases))
	}
	f := defaultFilter(t)
	for _, path := range files {
		name := filepath.Base(path)
		t.Run(name, func(t *testing.T) {
			raw, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			res := run(t, f, string(raw))
			if got := res.Verdict.Action.String(); got != want[name] {
				t.Errorf("verdict %s, want %s (details %s)", got, want[name], res.Details)
			}
		})
	}
	// The committed corpus is what the builders make (but for the ELF
	// sample, the test binary, and the ISO image, which is dated).
	for _, c := range cases {
		if c.file == "elf-no-name.eml" || c.file == "iso-exe.eml" {
			continue
		}
		if b, err := os.ReadFile(filepath.Join(dir, c.file)); err == nil && !slices.Equal(b, []byte(c.message())) {
			t.Errorf("%s differs from what corpusCases builds: run go test -run TestCorpus -update-corpus", c.file)
		}
	}
}
