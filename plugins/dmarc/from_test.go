package dmarc

import (
	"strings"
	"testing"

	"github.com/elemta/elemta/pluginhost"
	"github.com/stretchr/testify/require"
)

func TestAuthorDomains(t *testing.T) {
	tests := []struct {
		name    string
		from    []string
		domains []string
		problem string // substring; "" for none
	}{
		{"none", nil, nil, ""},
		{"one", []string{"a@Example.TEST"}, []string{"example.test"}, ""},
		{"root dot", []string{"a@example.test."}, []string{"example.test"}, ""},
		{"root dot in angle address", []string{"A <a@example.test.>"}, []string{"example.test"}, ""},
		{"stray bracket", []string{"<a@example.test>>"}, []string{"example.test"}, ""},
		{"every @ of a refused field", []string{`"x <a@one.test>, b@two.test`}, []string{"one.test", "two.test"}, ""},
		{"refused field, one @ without domain", []string{`"x <a@>, b@two.test`}, []string{"two.test"}, "empty domain"},
		{"group", []string{"g: a@one.test, b@two.test;"}, []string{"one.test", "two.test"}, ""},
		{"empty group", []string{"undisclosed-recipients:;"}, nil, "has no address"},
		{"empty field", []string{""}, nil, "has no address with a domain"},
		{"no @", []string{"undisclosed"}, nil, "has no address with a domain"},
		{"two root dots", []string{"a@example.test.."}, nil, "label of 0 octets"},
		{"address literal", []string{"a@[192.0.2.1]"}, nil, "no usable domain"},
		{"UTF-8 domain: its A-label", []string{"a@exämple.test"}, []string{"xn--exmple-cua.test"}, ""},
		{"UTF-8 domain, upper case", []string{"A <a@EXÄMPLE.test>"}, []string{"xn--exmple-cua.test"}, ""},
		{"UTF-8 and A-label forms are one domain", []string{"a@exämple.test, b@xn--exmple-cua.test"}, []string{"xn--exmple-cua.test"}, ""},
		{"UTF-8 domain, refused field", []string{`"x <a@exämple.test>`}, []string{"xn--exmple-cua.test"}, ""},
		{"not a valid IDN", []string{"a@ex\u200dample.test"}, nil, "no usable domain"},
		{"a symbol, as a lookup maps it (UTS #46)", []string{"a@\u2603.test"}, []string{"xn--n3h.test"}, ""},
		{"63-octet label", []string{"a@" + strings.Repeat("x", 63) + ".test"}, []string{strings.Repeat("x", 63) + ".test"}, ""},
		{"64-octet label", []string{"a@" + strings.Repeat("x", 64) + ".test"}, nil, "no usable domain"},
		{"good and bad field", []string{"a@one.test", "nobody"}, []string{"one.test"}, "has no address with a domain"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := authorDomains(message(t, tc.from...).Header, DefaultMaxFromDomains)
			require.Equal(t, tc.domains, a.domains)
			require.Equal(t, len(tc.from), a.fields)
			if tc.problem == "" {
				require.Empty(t, a.problem)
			} else {
				require.Contains(t, a.problem, tc.problem)
			}
		})
	}
}

func TestDomainOfLength(t *testing.T) {
	label := strings.Repeat("x", 63)
	d253 := label + "." + label + "." + label + "." + strings.Repeat("x", 61) // 253 octets
	require.Len(t, d253, 253)
	got, err := domainOf(d253 + ".")
	require.NoError(t, err)
	require.Equal(t, d253, got)
	_, err = domainOf(d253 + "x")
	require.ErrorContains(t, err, "more than 253")
}

// TestConfigCheck: the keys are checked when the config is parsed
// (`elemta config check`), not only when the plugin is built.
func TestConfigCheck(t *testing.T) {
	const head = "[plugins]\nplugins = [\"dmarc\"]\n[plugins.dmarc]\n"
	tests := []struct {
		body, err string
	}{
		{"on_temperror = \"tempfail\"\non_unparseable_from = \"quarantine\"\non_multiple_from = \"reject\"\n", ""},
		{"on_temperror = \"accept\"\non_unparseable_from = \"accept\"\non_multiple_from = \"strictest\"\n", ""},
		{"on_temperror = \"reject\"\n", "on_temperror"},
		{"on_temperror = \"quarantine\"\n", "on_temperror"},
		{"on_unparseable_from = \"tempfail\"\n", "on_unparseable_from"},
		{"on_unparseable_from = \"bounce\"\n", "bounce"},
		{"on_multiple_from = \"accept\"\n", "on_multiple_from"},
		{"max_from_domains = 0\n", "max_from_domains"},
		{"record_cache_size = 0\n", ""},
		{"record_cache_size = 100000\n", ""},
		{"record_cache_size = -1\n", "record_cache_size = -1: must be between 0 and 100000"},
		{"record_cache_size = 100001\n", "record_cache_size = 100001: must be between 0 and 100000"},
	}
	for _, tc := range tests {
		t.Run(tc.body, func(t *testing.T) {
			_, err := pluginhost.ParseConfig("test.toml", []byte(head+tc.body))
			if tc.err == "" {
				require.NoError(t, err)
			} else {
				require.ErrorContains(t, err, tc.err)
			}
		})
	}
}
