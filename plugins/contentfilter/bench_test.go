package contentfilter

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/elemta/elemta/registry"
)

// zipBenchMessage is a 10 MB message: a 5 MB zip of 1,000 members of
// 5,000 incompressible bytes each, base64-encoded (6.8 MB), and a text
// part that fills the rest.
func zipBenchMessage(b *testing.B) ([]byte, []byte) {
	rng := rand.New(rand.NewPCG(1, 2))
	files := make([]file, 1000)
	for i := range files {
		data := make([]byte, 5000)
		for j := range data {
			data[j] = byte(rng.Uint32())
		}
		files[i] = file{fmt.Sprintf("dir%d/file%04d.dat", i%10, i), data}
	}
	z := zipOf(b, files...)
	msg := multipartMsg("b", textPart, attached("data.zip", z))
	if pad := 10_000_000 - len(msg); pad > 0 {
		msg = multipartMsg("b", "Content-Type: text/plain\r\n\r\n"+strings.Repeat("All work and no play.\r\n", pad/23), attached("data.zip", z))
	}
	return []byte(msg), z
}

// BenchmarkZipMessage compares inspecting the 10 MB message under the
// embedded default config with what a reader of the zip alone costs:
// decoding the base64 and decompressing every member.
func BenchmarkZipMessage(b *testing.B) {
	raw, z := zipBenchMessage(b)
	msg, err := registry.ParseMessage(raw, registry.Envelope{})
	if err != nil {
		b.Fatal(err)
	}
	f := defaultFilter(b)
	b.Run("inspect", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(raw)))
		for b.Loop() {
			rep, err := f.Inspect(context.Background(), msg)
			if err != nil {
				b.Fatal(err)
			}
			if len(rep.Matches) != 0 || len(rep.Attachments) != 1001 {
				b.Fatalf("matches %v, %d attachments", rep.Matches, len(rep.Attachments))
			}
		}
	})
	enc := base64.StdEncoding.EncodeToString(z)
	b.Run("read", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(raw)))
		for b.Loop() {
			dec, err := base64.StdEncoding.DecodeString(enc)
			if err != nil {
				b.Fatal(err)
			}
			zr, err := zip.NewReader(bytes.NewReader(dec), int64(len(dec)))
			if err != nil {
				b.Fatal(err)
			}
			for _, zf := range zr.File {
				rc, err := zf.Open()
				if err != nil {
					b.Fatal(err)
				}
				if _, err := io.Copy(io.Discard, rc); err != nil {
					b.Fatal(err)
				}
				rc.Close()
			}
		}
	})
}
