package pluginname

import (
	"errors"
	"regexp"
	"testing"
)

func TestCheck(t *testing.T) {
	for _, tc := range []struct {
		name string
		want error
	}{
		{"greylist", nil},
		{"a", nil},
		{"x9", nil},
		{"my-plugin", nil},
		{"my_plugin", nil},
		{"a-", nil},
		{"dkim2", nil},
		{"", ErrInvalid},
		{"9x", ErrInvalid},
		{"1", ErrInvalid},
		{"-x", ErrInvalid},
		{"_x", ErrInvalid},
		{"Grey", ErrInvalid},
		{"greY", ErrInvalid},
		{"clam av", ErrInvalid},
		{"clam.av", ErrInvalid},
		{"contentfilter/strict", ErrInvalid},
		{"é", ErrInvalid},
		{"x\n", ErrInvalid},
		{"enabled", ErrReserved},
		{"directory", ErrReserved},
		{"plugins", ErrReserved},
		{"max_concurrency", ErrReserved},
		{"default_timeout", ErrReserved},
	} {
		err := Check(tc.name)
		if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
			t.Errorf("Check(%q) = %v, want %v", tc.name, err, tc.want)
		}
		if Valid(tc.name) != (tc.want == nil) {
			t.Errorf("Valid(%q) = %v", tc.name, Valid(tc.name))
		}
	}
}

// TestPatternMatchesSyntax: the documented Pattern and the code agree.
func TestPatternMatchesSyntax(t *testing.T) {
	re := regexp.MustCompile(Pattern)
	for _, s := range []string{"", "a", "9x", "a9", "a-b_c", "A", "a.b", "a b", "ab-", "-", "_", "z0", "a/b", "\x00", "aé"} {
		if got, want := syntax(s), re.MatchString(s); got != want {
			t.Errorf("%q: syntax %v, Pattern %v", s, got, want)
		}
	}
}

func FuzzSyntax(f *testing.F) {
	re := regexp.MustCompile(Pattern)
	for _, s := range []string{"greylist", "9x", "A", "a-b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if syntax(s) != re.MatchString(s) {
			t.Fatalf("%q: syntax and Pattern disagree", s)
		}
	})
}

func TestReservedIsACopy(t *testing.T) {
	r := Reserved()
	r[0] = "greylist"
	if !errors.Is(Check("enabled"), ErrReserved) || Check("greylist") != nil {
		t.Fatal("changing Reserved's result changed the rule")
	}
}
