package clamav

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/elemta/elemta/pkg/testenv"
	"github.com/elemta/elemta/registry"
	"github.com/elemta/elemta/registry/registrytest"
)

const eicarText = `X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*`

// manyFiles returns n small unique zip entries.
func manyFiles(t testing.TB, n int) []zipEntry {
	es := make([]zipEntry, n)
	for i := range es {
		es[i] = zipEntry{name: fmt.Sprintf("f%03d.txt", i), data: unique(t)}
	}
	return es
}

// wholeMessage returns a text message of exactly n bytes, unique.
func wholeMessage(t testing.TB, n int64) []byte {
	head := "Subject: whole message size\r\n\r\n" + string(unique(t)) + "\r\n"
	line := "abcdefghijklmnopqrstuvwxyz0123456789 the quick brown fox jumps\r\n"
	raw := []byte(head + strings.Repeat(line, int(n)/len(line)+1))
	return raw[:n]
}

// scanSizeMessage returns a message whose scan, by clamd's accounting, is
// MaxScanSize+delta bytes: the message itself, plus the decoded zip
// attachment (padded to a fixed size so the message's length is known in
// advance), plus the zip's files, none over MaxFileSize. Measured with
// clamd 1.4.6 (Debug: "cli_recursion_stack_push: scansize exceeded
// (initial: 10485760, consumed: ..., needed: ...)").
func scanSizeMessage(t testing.TB, l clamdLimits, delta int64) []byte {
	const zipSize = 32 << 10
	mailLen := int64(len(attachment("a.zip", "application/zip", make([]byte, zipSize))))
	budget := l.MaxScanSize + delta - mailLen - zipSize
	var entries []zipEntry
	for i := 0; budget > 0; i++ {
		n := min(budget, l.MaxFileSize)
		entries = append(entries, zipEntry{name: fmt.Sprintf("part%d", i), data: zeros(t, n)})
		budget -= n
	}
	raw := attachment("a.zip", "application/zip", zipOf(t, zipSize, entries...))
	if int64(len(raw)) != mailLen {
		t.Fatalf("message is %d bytes, want %d", len(raw), mailLen)
	}
	return raw
}

// TestLimitsBoundaries: against the real clamd (AlertExceedsMax yes), each
// scan limit at its boundary: the last value clamd scans completely is
// clean, one more is "not completely scanned" with on_limits_exceeded's
// verdict (default quarantine), never clean.
func TestLimitsBoundaries(t *testing.T) {
	tcp := testenv.Require(t, testenv.Clamd)
	l := readClamdLimits(t)
	registrytest.CheckLeaks(t)
	zipMail := func(entries ...zipEntry) []byte {
		return attachment("a.zip", "application/zip", zipOf(t, 0, entries...))
	}
	cases := []struct {
		name  string
		raw   func() []byte
		limit string // "" for clean
	}{
		// The message is level 0 of clamd's recursion, its attachment level 1:
		// MaxRecursion-2 nested zips put the innermost file at MaxRecursion-1.
		{"MaxRecursion: deepest file at MaxRecursion-1", func() []byte {
			return attachment("a.zip", "application/zip", nestedZip(t, l.MaxRecursion-2))
		}, ""},
		{"MaxRecursion: deepest file at MaxRecursion", func() []byte {
			return attachment("a.zip", "application/zip", nestedZip(t, l.MaxRecursion-1))
		}, "MaxRecursion"},
		// clamd counts every file it scans, the message and the attachment
		// included: MaxFiles in all is still scanned completely.
		{"MaxFiles: MaxFiles files in all", func() []byte { return zipMail(manyFiles(t, l.MaxFiles-2)...) }, ""},
		{"MaxFiles: one file more", func() []byte { return zipMail(manyFiles(t, l.MaxFiles-1)...) }, "MaxFiles"},
		{"MaxFileSize: message of MaxFileSize bytes", func() []byte { return wholeMessage(t, l.MaxFileSize) }, ""},
		{"MaxFileSize: message one byte over", func() []byte { return wholeMessage(t, l.MaxFileSize+1) }, "MaxFileSize"},
		{"MaxFileSize: gzip of MaxFileSize bytes", func() []byte {
			return attachment("a.gz", "application/gzip", gzipOf(t, zeros(t, l.MaxFileSize)))
		}, ""},
		{"MaxFileSize: gzip one byte over", func() []byte {
			return attachment("a.gz", "application/gzip", gzipOf(t, zeros(t, l.MaxFileSize+1)))
		}, "MaxFileSize"},
		{"MaxScanSize: exactly MaxScanSize", func() []byte { return scanSizeMessage(t, l, 0) }, ""},
		{"MaxScanSize: one byte over", func() []byte { return scanSizeMessage(t, l, 1) }, "MaxScanSize"},
	}
	doc := fmt.Sprintf("[plugins]\nplugins = [\"clamav\"]\n[plugins.clamav]\nservers = [%q]\ntimeout = 20\nadd_headers = true\n", tcp)
	m := registrytest.Load(t, doc, registry.Host{Hostname: "mx.example.test"})
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			msg := parse(t, tc.raw())
			for i := range 2 { // an incomplete scan is not cached: the second one goes to clamd too
				pc := registry.NewProcessingContext(msg, nil)
				sr, err := m.ExecuteStage(context.Background(), registry.PostReception, pc)
				if err != nil {
					t.Fatal(err)
				}
				res := sr.Results[0]
				scan, _ := res.Data.(*registry.ScanResult)
				if res.Err != nil || scan == nil {
					t.Fatalf("scan %d: result %+v", i, res)
				}
				status := fieldValue(sr.AddHeaders, "X-Virus-Status")
				if tc.limit == "" {
					if scan.Status != registry.StatusClean || sr.Verdict.Action != registry.Accept || status != "Clean" {
						t.Fatalf("scan %d: %+v, verdict %v, X-Virus-Status %q; want clean", i, scan, sr.Verdict, status)
					}
					continue
				}
				if scan.Status != registry.StatusError || sr.Verdict.Action != registry.Quarantine {
					t.Fatalf("scan %d: %+v, verdict %v; want status error and quarantine", i, scan, sr.Verdict)
				}
				if want := LimitsPrefix + tc.limit; !strings.Contains(scan.Details, want) || !strings.Contains(res.Details, want) ||
					!strings.HasPrefix(res.Details, "not completely scanned") || strings.Contains(res.Details, "[cached]") {
					t.Errorf("scan %d: details %q / %q, want %s, not cached", i, res.Details, scan.Details, want)
				}
				if want := "Unscanned (" + tc.limit + " exceeded)"; status != want {
					t.Errorf("scan %d: X-Virus-Status %q, want %q", i, status, want)
				}
			}
		})
	}
}

// TestOnLimitsExceeded: every on_limits_exceeded action, with the real
// clamd; none reports the message clean.
func TestOnLimitsExceeded(t *testing.T) {
	tcp := testenv.Require(t, testenv.Clamd)
	l := readClamdLimits(t)
	registrytest.CheckLeaks(t)
	msg := parse(t, attachment("a.zip", "application/zip", zipOf(t, 0, manyFiles(t, l.MaxFiles)...)))
	for _, tc := range []struct {
		action    string
		want      registry.Action
		code      int
		enh, text string
	}{
		{"accept", registry.Accept, 250, "2.0.0", ""},
		{"quarantine", registry.Quarantine, 250, "2.0.0", "Message could not be fully scanned for viruses (MaxFiles exceeded)"},
		{"tempfail", registry.TempFail, 451, "4.7.1", "Message could not be fully scanned for viruses (MaxFiles exceeded), try again later"},
		{"reject", registry.Reject, 554, "5.7.0", "Message could not be fully scanned for viruses (MaxFiles exceeded)"},
	} {
		t.Run(tc.action, func(t *testing.T) {
			doc := fmt.Sprintf("[plugins]\nplugins = [\"clamav\"]\n[plugins.clamav]\nservers = [%q]\ntimeout = 20\nadd_headers = true\non_limits_exceeded = %q\n", tcp, tc.action)
			m := registrytest.Load(t, doc, registry.Host{Hostname: "mx.example.test"})
			pc := registry.NewProcessingContext(msg, nil)
			sr, err := m.ExecuteStage(context.Background(), registry.PostReception, pc)
			if err != nil {
				t.Fatal(err)
			}
			if sr.Verdict.Action != tc.want {
				t.Fatalf("verdict %v, want %v", sr.Verdict, tc.want)
			}
			code, enh, text := sr.Verdict.Reply()
			if code != tc.code || enh != tc.enh || (tc.text != "" && text != tc.text) {
				t.Errorf("reply %d %s %q, want %d %s %q", code, enh, text, tc.code, tc.enh, tc.text)
			}
			if scan, ok := registry.Find[*registry.ScanResult](pc); !ok || scan.Status != registry.StatusError {
				t.Errorf("scan result %+v, want status error", scan)
			}
			if got := fieldValue(sr.AddHeaders, "X-Virus-Status"); got != "Unscanned (MaxFiles exceeded)" {
				t.Errorf("X-Virus-Status %q", got)
			}
		})
	}
}

// TestVirusAndLimit: clamd reports a virus it found before reaching a
// limit; one behind the limit is never seen, which is why a limit is not
// "clean".
func TestVirusAndLimit(t *testing.T) {
	tcp := testenv.Require(t, testenv.Clamd)
	l := readClamdLimits(t)
	eicar := zipEntry{name: "eicar.com", data: []byte(eicarText)}
	first := append([]zipEntry{eicar}, manyFiles(t, l.MaxFiles)...)
	last := append(manyFiles(t, l.MaxFiles), eicar)
	s := newTestScanner(t, tcp)
	sr, err := s.ScanMessage(context.Background(), parse(t, attachment("a.zip", "application/zip", zipOf(t, 0, first...))))
	if err != nil || sr.Status != registry.StatusInfected || !strings.HasPrefix(sr.Threats[0], "Eicar-Test-Signature") {
		t.Errorf("virus before the limit: %+v, %v; want Eicar-Test-Signature", sr, err)
	}
	_, err = s.ScanMessage(context.Background(), parse(t, attachment("a.zip", "application/zip", zipOf(t, 0, last...))))
	var le *LimitError
	if !errors.As(err, &le) || le.Limit() != "MaxFiles" || !errors.Is(err, ErrLimitsExceeded) {
		t.Errorf("virus behind the limit: %v; want a LimitError for MaxFiles", err)
	}
}

// TestStreamMaxLength: a message of exactly StreamMaxLength bytes reaches
// clamd whole (and then exceeds MaxFileSize, which the test clamd keeps
// below it); one byte more is refused mid-stream. Neither is clean: both
// get on_limits_exceeded by default.
func TestStreamMaxLength(t *testing.T) {
	tcp := testenv.Require(t, testenv.Clamd)
	l := readClamdLimits(t)
	registrytest.CheckLeaks(t)
	if l.MaxFileSize >= l.StreamMaxLength {
		t.Fatalf("test clamd: MaxFileSize %d must be below StreamMaxLength %d", l.MaxFileSize, l.StreamMaxLength)
	}
	cfg := DefaultConfig()
	cfg.Servers = []string{tcp}
	cfg.MaxSize = 2 * l.StreamMaxLength
	cfg.CacheSize = 0
	s, err := New(cfg, registry.Host{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, tc := range []struct {
		size int64
		want error
	}{
		{l.StreamMaxLength, ErrLimitsExceeded},
		{l.StreamMaxLength + 1, ErrSizeLimit},
	} {
		msg := parse(t, wholeMessage(t, tc.size))
		if _, err := s.ScanMessage(context.Background(), msg); !errors.Is(err, tc.want) {
			t.Errorf("%d bytes: ScanMessage error %v, want %v", tc.size, err, tc.want)
		}
		res, err := s.HandleStage(context.Background(), registry.PostReception, registry.NewProcessingContext(msg, nil))
		if err != nil || res.Verdict.Action != registry.Quarantine {
			t.Errorf("%d bytes: HandleStage %+v, %v; want quarantine", tc.size, res, err)
		}
	}
}

// TestClamdTruncatesDeflatedZipEntries pins a limit of clamd 1.4.6 that
// the plugin cannot see: a deflated zip entry larger than MaxFileSize is
// cut to MaxFileSize and scanned ("cli_unzip: trimming output size to
// maxfilesize"), and the reply is "OK" even with AlertExceedsMax. gzip,
// bzip2 and tar.gz are flagged (see TestLimitsBoundaries). If this test
// fails, clamd changed: update the README's "Limits" section.
func TestClamdTruncatesDeflatedZipEntries(t *testing.T) {
	tcp := testenv.Require(t, testenv.Clamd)
	l := readClamdLimits(t)
	s := newTestScanner(t, tcp)
	raw := attachment("a.zip", "application/zip", zipOf(t, 0, zipEntry{name: "big", data: zeros(t, l.MaxFileSize+1)}))
	sr, err := s.ScanMessage(context.Background(), parse(t, raw))
	if err != nil || sr.Status != registry.StatusClean {
		t.Fatalf("%+v, %v: clamd now reports a deflated zip entry over MaxFileSize; update README.md", sr, err)
	}
}

func newTestScanner(t *testing.T, addr string) *Scanner {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Servers = []string{addr}
	s, err := New(cfg, registry.Host{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}
