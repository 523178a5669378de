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

// BenchmarkBodyHashTrailing is relaxed Body over 1 MB whose every line
// ends in two spaces (internal/authtest's body: every line changes), with
// its floor, one SHA-256 pass over the same bytes.
func BenchmarkBodyHashTrailing(b *testing.B) {
	const size = 1 << 20
	line := "The quick brown fox jumps over the lazy dog, again and again.  \r\n"
	body := []byte(strings.Repeat(line, size/len(line)+1)[:size-size%len(line)])
	b.Run("sha256", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		for b.Loop() {
			sha256.Sum256(body)
		}
	})
	b.Run("relaxed", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		b.ReportAllocs()
		h := sha256.New()
		for b.Loop() {
			h.Reset()
			if err := Body(h, Relaxed, body); err != nil {
				b.Fatal(err)
			}
			h.Sum(nil)
		}
	})
	b.Run("ratio", func(b *testing.B) {
		// Alternating which goes first, as BenchmarkBodyHash's -ratio.
		h := sha256.New()
		fns := []func(){func() {
			h.Reset()
			_ = Body(h, Relaxed, body)
			h.Sum(nil)
		}, func() { sha256.Sum256(body) }}
		var took [2]time.Duration
		for i := 0; b.Loop(); i++ {
			for k := range fns {
				j := (i + k) % len(fns)
				start := time.Now()
				fns[j]()
				took[j] += time.Since(start)
			}
		}
		b.ReportMetric(float64(took[0])/float64(took[1]), "body/sha256")
	})
}
