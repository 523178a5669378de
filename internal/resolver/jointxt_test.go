package resolver

import "testing"

func TestJoinTXT(t *testing.T) {
	for _, tc := range []struct {
		parts []string
		want  string
	}{
		{[]string{"v=spf1 -all"}, "v=spf1 -all"},
		{[]string{"v=DKIM1; k=rsa; ", "p=MIIB"}, "v=DKIM1; k=rsa; p=MIIB"},
		{[]string{`a\"b`}, `a"b`},
		{[]string{`semi\059colon`}, "semi;colon"},
		{[]string{`back\\slash`, `x`}, `back\slashx`},
		{[]string{`trailing\`}, `trailing\`},
		{nil, ""},
	} {
		if got := joinTXT(tc.parts); got != tc.want {
			t.Errorf("joinTXT(%q) = %q, want %q", tc.parts, got, tc.want)
		}
	}
}
