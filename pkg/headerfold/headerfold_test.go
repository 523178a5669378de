package headerfold

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func unfold(s string) string { return Unfold(s) }

func TestUnfold(t *testing.T) {
	assert.Equal(t, "a b\tc", Unfold("a\r\n b\n\tc"))
	assert.Equal(t, "a\r\nb\nc\r\n", Unfold("a\r\nb\nc\r\n"), "a line end before text is no fold")
	assert.Equal(t, "x", Unfold("x"))
}

// checkFolded asserts the rules Value promises for the field name: value.
func checkFolded(t testing.TB, name, folded, eol string) {
	t.Helper()
	lines := strings.Split(name+": "+folded, eol)
	for i, l := range lines {
		require.NotContains(t, l, "\r", "line %d holds a bare CR", i)
		require.NotContains(t, l, "\n", "line %d holds a bare LF", i)
		require.LessOrEqual(t, len(l), MaxLine, "line %d", i)
		if i > 0 {
			require.True(t, l != "" && isWSP(l[0]), "continuation line %d does not start with white space: %q", i, l)
		}
		if i < len(lines)-1 {
			require.Less(t, firstText(l), len(l), "line %d holds only white space", i)
		}
		if len(l) > Width {
			// Only when no white space after the line's first text could have cut it to Width.
			text := firstText(l)
			if i == 0 {
				text = len(name) + 2
			}
			for j := text + 1; j <= Width && j < len(l); j++ {
				require.False(t, isWSP(l[j]), "line %d is %d long but could be folded at %d: %q", i, len(l), j, l)
			}
		}
	}
}

func TestValue(t *testing.T) {
	long := strings.Repeat("dkim=fail reason=\"signature verification failed\" header.d=example.test header.s=sel; ", 8)
	word := strings.Repeat("x", 1200)
	tests := []struct {
		name, value string
		want        string // "" to check the rules only
		keeps       bool   // unfolding gives the value back
	}{
		{"X-Short", "yes", "yes", true},
		{"Subject", strings.Repeat("a ", 38) + "b", "", true},
		{"Authentication-Results", "mx.example.test; " + long, "", true},
		{"X-Exactly", strings.Repeat("a", Width-len("X-Exactly: ")), strings.Repeat("a", Width-len("X-Exactly: ")), true},
		{"X-Word", "a " + strings.Repeat("b", 200) + " c", "a\r\n " + strings.Repeat("b", 200) + "\r\n c", true},
		{"X-Huge", word, "", false},
		{"X-Huge-Utf8", strings.Repeat("é", 700), "", false},
		{"X-Spaces", "a" + strings.Repeat(" ", 300) + "b", "", true},
		{"X-Folded", "a=1;\r\n b=" + strings.Repeat("c", 100) + " d", "", true},
		{"X-Injected", "ok\r\nBcc: victim@example.test", "ok\r\n Bcc: victim@example.test", false},
		{"X-Bare", "a\rb\nc", "a\r\n b\r\n c", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Value(tt.name, tt.value, CRLF)
			checkFolded(t, tt.name, got, CRLF)
			if tt.want != "" {
				assert.Equal(t, tt.want, got)
			}
			if tt.keeps {
				assert.Equal(t, unfold(tt.value), unfold(got), "unfolding gives the value back")
			}
			assert.True(t, utf8.ValidString(got))
			lf := Value(tt.name, tt.value, LF)
			checkFolded(t, tt.name, lf, LF)
			assert.Equal(t, strings.ReplaceAll(got, "\r\n", "\n"), lf, "the same folds with LF")
		})
	}
}

func TestValueHugeWordCutAtMaxLine(t *testing.T) {
	got := Value("X-Huge", strings.Repeat("x", 2500), CRLF)
	lines := strings.Split("X-Huge: "+got, CRLF)
	require.Len(t, lines, 3)
	assert.Len(t, lines[0], MaxLine)
	assert.Len(t, lines[1], MaxLine)
	assert.Equal(t, 2500, strings.Count(got, "x"))
}

func TestEOL(t *testing.T) {
	assert.Equal(t, CRLF, EOL([]byte("A: b\r\nC: d\n")))
	assert.Equal(t, LF, EOL([]byte("A: b\nC: d\r\n")))
	assert.Equal(t, CRLF, EOL(nil))
	assert.Equal(t, LF, EOL([]byte("\n")))
}

func FuzzValue(f *testing.F) {
	f.Add("Authentication-Results", "mx; spf=pass smtp.mailfrom=a@b", false)
	f.Add("X", strings.Repeat("ab ", 500), true)
	f.Add("X", strings.Repeat("a", 3000)+" b", false)
	f.Add("X", "a\r\n\r\nb\n\tc", true)
	f.Fuzz(func(t *testing.T, name, value string, lf bool) {
		if len(name) > 200 || strings.ContainsAny(name, "\r\n") {
			return
		}
		eol := CRLF
		if lf {
			eol = LF
		}
		got := Value(name, value, eol)
		checkFolded(t, name, got, eol)
		clean := !strings.ContainsAny(value, "\r\n")
		for _, w := range strings.FieldsFunc(value, func(r rune) bool { return r == ' ' || r == '\t' }) {
			if len(w) > MaxLine-len(name)-2 {
				clean = false
			}
		}
		if clean && firstText(value) < Width-len(name)-2 {
			require.Equal(t, value, unfold(got))
		}
	})
}

func BenchmarkValue(b *testing.B) {
	v := "mx.example.test; " + strings.Repeat("dkim=fail reason=\"bad signature\" header.d=example.test header.s=s; ", 8)
	for b.Loop() {
		_ = Value("Authentication-Results", v, CRLF)
	}
}
