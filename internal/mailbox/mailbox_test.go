package mailbox

import (
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestPath(t *testing.T) {
	long := strings.Repeat("a", MaxName)
	tests := []struct {
		addr, want string
	}{
		{"alice@example.org", "/r/example.org/alice"},
		{"Alice@Example.ORG.", "/r/example.org/alice"}, // ASCII case folded, root dot dropped
		{"POSTMASTER@example.org", "/r/example.org/postmaster"},
		{"jürgen@example.org", "/r/example.org/jürgen"},
		{"Jürgen@example.org", "/r/example.org/jürgen"},
		{"JÜRGEN@example.org", "/r/example.org/jÜrgen"},          // no Unicode case folding
		{"a@b@example.org", "/r/example.org/a@b"},                // the domain follows the last '@'
		{"user@bücher.example", "/r/xn--bcher-kva.example/user"}, // one domain, one Maildir, either way written
		{"user@xn--bcher-kva.example", "/r/xn--bcher-kva.example/user"},
		{"user@BÜCHER.example", "/r/xn--bcher-kva.example/user"},
		{long + "@example.org", "/r/example.org/" + long}, // the boundary: 255 bytes
		{"a+tag@example.org", "/r/example.org/a+tag"},
	}
	for _, tt := range tests {
		got, err := Path("/r", tt.addr)
		require.NoError(t, err, tt.addr)
		assert.Equal(t, tt.want, got, tt.addr)
	}
}

func TestPathRefused(t *testing.T) {
	for _, addr := range []string{
		"", "@example.org", "alice@", "alice", "alice@.", "..@example.org", ".hidden@example.org",
		"a/b@example.org", `a\b@example.org`, `"a b"@example.org`, "a b@example.org", "a\tb@example.org",
		"a\x00@example.org", "a\x7f@example.org", "a\u0085@example.org", "a@exa/mple.org", "a@..",
		strings.Repeat("a", MaxName+1) + "@example.org", "a@" + strings.Repeat("d", MaxName+1),
		"\xff\xfe@example.org", "a@\xc3(", "a@a\u200db.example", // a joiner where none may stand: no IDN
	} {
		_, err := Path("/r", addr)
		require.Error(t, err, "%q", addr)
		assert.True(t, errors.Is(err, ErrBadAddress), "%q: %v", addr, err)
	}
}

func TestNormalize(t *testing.T) {
	got, err := Normalize("Bob.Smith@Example.Test")
	require.NoError(t, err)
	assert.Equal(t, "bob.smith@example.test", got)
	a, _ := Normalize("Jürgen@example.test")
	b, _ := Normalize("jürgen@EXAMPLE.test")
	assert.Equal(t, a, b, "one mailbox, one Maildir")
}

func FuzzKey(f *testing.F) {
	f.Add("jürgen@example.test")
	f.Add("../../etc@passwd")
	f.Fuzz(func(t *testing.T, addr string) {
		local, domain, err := Key(addr)
		if err != nil {
			return
		}
		for _, p := range []string{local, domain} {
			if p == "" || p == "." || p == ".." || strings.ContainsAny(p, "/\\\x00") || len(p) > MaxName {
				t.Fatalf("Key(%q) = %q, %q", addr, local, domain)
			}
		}
		if again, _ := Normalize(local + "@" + domain); again != local+"@"+domain {
			t.Fatalf("Normalize is not idempotent on %q: %q", addr, again)
		}
	})
}
