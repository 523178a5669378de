package config

import (
	"strings"
	"testing"
)

// TestHostTableErrorsReadOnce: every problem of a host table is one line,
// "file:line:col: [table]: message", the table named once, at the key's
// key (at the table's header for a key the file does not set).
func TestHostTableErrorsReadOnce(t *testing.T) {
	tests := []struct {
		name, toml string
		want       []string // the error's lines, in order
	}{
		{"server keys", "[server]\nlisten = \"127.0.0.1:2525\"\nmax_errors = -1\nspool_dir = \"\"\n", []string{
			`c.toml:4:1: [server]: spool_dir is required`,
			`c.toml:3:1: [server]: max_errors must be positive (got -1)`,
			`c.toml:1:2: [server]: soft_error_limit (10) is more than max_errors (-1)`,
		}},
		{"no [server] table", "[admin]\nlisten = \"nohost\"\n", []string{
			`c.toml:2:1: [admin]: listen "nohost": address nohost: missing port in address`,
		}},
		{"dns", "[dns]\nservers = [\"ns1.example\"]\n", []string{
			`c.toml:2:1: [dns]: servers: "ns1.example": want an IP address with an optional port ("127.0.0.1:5353", "[::1]:53"): address ns1.example: missing port in address`,
		}},
		{"log", "[log]\nformat = \"xml\"\n", []string{
			`c.toml:2:1: [log]: format "xml": use "text" or "json"`,
		}},
		{"store", "[store]\nredis_addr = \"h\"\n", []string{
			`c.toml:2:1: [store]: redis_addr: "h": want host:port: address h: missing port in address`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("c.toml", []byte("[plugins]\nplugins = []\n"+tt.toml))
			if err == nil {
				t.Fatal("Parse succeeded")
			}
			got := strings.Split(err.Error(), "\n")
			// The document starts with two lines of [plugins].
			want := make([]string, len(tt.want))
			for i, w := range tt.want {
				file, rest, _ := strings.Cut(w, ":")
				line, rest, _ := strings.Cut(rest, ":")
				n := 0
				for _, c := range line {
					n = n*10 + int(c-'0')
				}
				want[i] = file + ":" + itoa(n+2) + ":" + rest
			}
			if strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Errorf("error:\n%s\nwant:\n%s", err, strings.Join(want, "\n"))
			}
		})
	}
}

func itoa(n int) string {
	if n < 10 {
		return string(rune('0' + n))
	}
	return itoa(n/10) + string(rune('0'+n%10))
}
