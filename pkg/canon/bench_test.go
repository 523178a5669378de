package canon

import (
	"crypto/sha256"
	"fmt"
	"strings"
	"testing"
	"time"
)

// benchBody is n bytes of 76-character text lines ending in CRLF, one
// line in eight with a double space and one with trailing white space, as
// hand-written and quoted text has.
func benchBody(n int) []byte {
	var b strings.Builder
	for i := 0; b.Len() < n; i++ {
		line := strings.TrimSuffix(strings.Repeat("word ", 15), " ")
		switch i % 8 {
		case 3:
			line = "  > " + line
		case 5:
			line += "  "
		}
		b.WriteString(line + "\r\n")
	}
	return []byte(b.String()[:n-2] + "\r\n")
}

// BenchmarkBodyHash hashes a body's canonical form with Body, in the same
// run as the floor (one SHA-256 pass over the same bytes) and the
// line-at-a-time canonicalizer Body replaced (referenceBody, then hashed).
func BenchmarkBodyHash(b *testing.B) {
	for _, size := range []int{10 << 10, 1 << 20} {
		body := benchBody(size)
		name := fmt.Sprintf("%dKB", size>>10)
		b.Run(name+"/sha256", func(b *testing.B) {
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				sha256.Sum256(body)
			}
		})
		for _, a := range []Algorithm{Simple, Relaxed} {
			b.Run(name+"/"+string(a), func(b *testing.B) {
				b.SetBytes(int64(size))
				b.ReportAllocs()
				h := sha256.New()
				for b.Loop() {
					h.Reset()
					if err := Body(h, a, body); err != nil {
						b.Fatal(err)
					}
					h.Sum(nil)
				}
			})
			b.Run(name+"/"+string(a)+"-ratio", func(b *testing.B) {
				// Body and the floor in one loop, alternating which goes
				// first: the ratio holds still on a loaded machine.
				h := sha256.New()
				fns := []func(){func() {
					h.Reset()
					_ = Body(h, a, body)
					h.Sum(nil)
				}, func() { sha256.Sum256(body) }}
				var took [2]time.Duration
				i := 0
				for b.Loop() {
					for k := range fns {
						j := (i + k) % len(fns)
						start := time.Now()
						fns[j]()
						took[j] += time.Since(start)
					}
					i++
				}
				b.ReportMetric(float64(took[0])/float64(took[1]), "body/sha256")
			})
			b.Run(name+"/"+string(a)+"-before", func(b *testing.B) {
				b.SetBytes(int64(size))
				b.ReportAllocs()
				for b.Loop() {
					sha256.Sum256(referenceBody(a, body))
				}
			})
		}
	}
}
