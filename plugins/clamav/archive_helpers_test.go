package clamav

import (
	"archive/zip"
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/elemta/elemta/pkg/testenv"
)

// clamdLimits are the scan limits of the test clamd, read from the
// clamd.conf that tools/testenv/start.sh wrote (and started clamd with).
type clamdLimits struct {
	MaxRecursion, MaxFiles                    int
	MaxFileSize, MaxScanSize, StreamMaxLength int64
}

// readClamdLimits parses $ELEMTA_TESTENV_DIR/clamav/clamd.conf and fails
// the test when clamd does not report exceeded limits (AlertExceedsMax).
func readClamdLimits(t *testing.T) clamdLimits {
	t.Helper()
	path := filepath.Join(testenv.Require(t, testenv.StateDir), "clamav", "clamd.conf")
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("read the test clamd's limits: %v", err)
	}
	defer f.Close()
	kv := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(strings.TrimSpace(sc.Text()), " "); ok && !strings.HasPrefix(k, "#") {
			kv[k] = strings.TrimSpace(v)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	if kv["AlertExceedsMax"] != "yes" {
		t.Fatalf("%s: AlertExceedsMax is not yes: rerun tools/testenv/start.sh (it restarts clamd with the new config)", path)
	}
	num := func(key string) int64 {
		v := kv[key]
		mult := int64(1)
		switch {
		case strings.HasSuffix(v, "M"), strings.HasSuffix(v, "m"):
			mult, v = 1<<20, v[:len(v)-1]
		case strings.HasSuffix(v, "K"), strings.HasSuffix(v, "k"):
			mult, v = 1<<10, v[:len(v)-1]
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n <= 0 {
			t.Fatalf("%s: %s = %q: want a positive number (K and M suffixes allowed)", path, key, kv[key])
		}
		return n * mult
	}
	return clamdLimits{
		MaxRecursion: int(num("MaxRecursion")), MaxFiles: int(num("MaxFiles")),
		MaxFileSize: num("MaxFileSize"), MaxScanSize: num("MaxScanSize"), StreamMaxLength: num("StreamMaxLength"),
	}
}

// unique returns 16 random bytes, hex-encoded. Every test file starts with
// some: clamd caches the hashes of files it found clean, and a file seen
// clean before (at a lower depth, in another test) is not scanned again, so
// reused content would hide the limit under test.
func unique(t testing.TB) []byte {
	t.Helper()
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return []byte(hex.EncodeToString(b))
}

// zeros returns unique(t) followed by zeros, n bytes in all (n >= 32).
func zeros(t testing.TB, n int64) []byte {
	b := make([]byte, n)
	copy(b, unique(t))
	return b
}

type zipEntry struct {
	name  string
	data  []byte
	store bool // no compression
}

// zipOf builds a zip archive of entries, padded with an archive comment
// to exactly size bytes when size > 0.
func zipOf(t testing.TB, size int, entries ...zipEntry) []byte {
	t.Helper()
	build := func(comment string) []byte {
		var buf bytes.Buffer
		w := zip.NewWriter(&buf)
		for _, e := range entries {
			method := zip.Deflate
			if e.store {
				method = zip.Store
			}
			f, err := w.CreateHeader(&zip.FileHeader{Name: e.name, Method: method})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.Write(e.data); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.SetComment(comment); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}
	z := build("")
	if size <= 0 {
		return z
	}
	if pad := size - len(z); pad < 0 || pad > 65535 {
		t.Fatalf("zip of %d bytes cannot be padded to %d with a comment", len(z), size)
	}
	z = build(strings.Repeat("p", size-len(z)))
	if len(z) != size {
		t.Fatalf("padded zip is %d bytes, want %d", len(z), size)
	}
	return z
}

// nestedZip returns depth zip archives, each holding the next; the
// innermost holds a small unique text file.
func nestedZip(t testing.TB, depth int) []byte {
	d := append([]byte("innermost "), unique(t)...)
	for i := range depth {
		d = zipOf(t, 0, zipEntry{name: fmt.Sprintf("level%d", depth-i), data: d})
	}
	return d
}

// gzipOf compresses data.
func gzipOf(t testing.TB, data []byte) []byte {
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// attachment returns a single-part message whose body is data, base64
// encoded in 76-character lines, as a file named name.
func attachment(name, contentType string, data []byte) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "From: alice@example.test\r\nTo: bob@example.test\r\nSubject: limits\r\nMIME-Version: 1.0\r\n"+
		"Content-Type: %s; name=%q\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=%q\r\n\r\n",
		contentType, name, name)
	enc := base64.StdEncoding.EncodeToString(data)
	for len(enc) > 76 {
		b.WriteString(enc[:76] + "\r\n")
		enc = enc[76:]
	}
	b.WriteString(enc + "\r\n")
	return b.Bytes()
}
