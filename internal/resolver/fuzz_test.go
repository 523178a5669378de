package resolver

import (
	"bytes"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

// zoneErrLine finds the line in miekg/dns's errors ("at line: 3:20") and in
// parseStatic's own ("fuzz.zone: line 3: ...").
var zoneErrLine = regexp.MustCompile(`at line: (\d+):\d+|^[^:]*: line (\d+): `)

// FuzzParseStatic checks the [dns] static zone parser on any file: an
// error names the file and a line of it; a zone it accepts answers every
// record it holds from lookup (the records of the asked type, or the
// CNAME to follow), names nothing outside it unless authoritative, and
// written out again (one record per line) parses to the same records.
func FuzzParseStatic(f *testing.F) {
	for _, name := range []string{"testdata/static.zone", "testdata/bad.zone"} {
		if b, err := os.ReadFile(name); err == nil {
			f.Add(b)
		}
	}
	for _, s := range []string{
		"$ORIGIN example.test.\n@ 300 IN SOA ns hostmaster 1 2 3 4 5\nselector._domainkey 300 IN TXT \"v=DKIM1; k=ed25519; p=AAAA\"\n",
		"a.test. 60 IN CNAME b.test.\na.test. 60 IN A 192.0.2.1\n",
		"$INCLUDE /etc/passwd\n",
		"$GENERATE 1-100 host$ A 192.0.2.$\n",
		"x.test. 60 CH TXT \"chaos\"\nx.test. 60 IN TXT \"a\" \"b\\\"c\\010\"\n",
		"x.test. 60 IN MX 10 mx.x.test.\nx.test. 60 IN AAAA ::1\n_spf.x.test. 60 IN TXT ( \"v=spf1\"\n \" -all\" )\n",
		"bad\n",
		"x.test. 60 IN A 999.0.0.1\n",
		"$TTL 1\n\\046.test. IN A 192.0.2.1\n\"quoted.test.\" IN A 192.0.2.2\n",
		"a.test. IN A \\# 0\nb.test. IN TXT (\n)\nc.test. IN A ",
		"A\\032B.test. 60 IN TXT \"x\"\nc.test. 60 IN CNAME a\\ b.test.\n\\195\\169.test. 60 IN A 192.0.2.3\n",
	} {
		f.Add([]byte(s))
	}
	const file = "fuzz.zone"
	f.Fuzz(func(t *testing.T, data []byte) {
		z, err := parseStatic(bytes.NewReader(data), file)
		if err != nil {
			msg := err.Error()
			if !strings.HasPrefix(msg, file+": ") {
				t.Fatalf("error does not name the file: %q", msg)
			}
			if m := zoneErrLine.FindStringSubmatch(msg); m != nil {
				if line, _ := strconv.Atoi(m[1] + m[2]); line > bytes.Count(data, []byte("\n"))+1 {
					t.Fatalf("error at line %d of a %d-line file: %q", line, bytes.Count(data, []byte("\n"))+1, msg)
				}
			}
			return
		}
		if bytes.HasPrefix(bytes.ToUpper(bytes.TrimSpace(data)), []byte("$INCLUDE ")) {
			t.Fatalf("$INCLUDE accepted: %q", data)
		}
		var all []string
		for name, rrs := range z.rrs {
			if c, ok := canonicalName(name); !ok || name != c {
				t.Fatalf("owner %q not canonical (%q)", name, c)
			}
			for _, rr := range rrs {
				if emptyRdata(rr) {
					t.Fatalf("record without data accepted: %s", rr)
				}
				if back, err := dns.NewRR(rr.String()); err == nil {
					all = append(all, back.String())
				}
				typ := rr.Header().Rrtype
				res, cname, ok := z.lookup(name, typ)
				if !ok {
					t.Fatalf("lookup(%s, %s): the file has nothing to say", name, dns.TypeToString[typ])
				}
				if typ == dns.TypeCNAME || cname == "" {
					if res == nil || !slices.ContainsFunc(res.rrs, func(x dns.RR) bool { return dns.IsDuplicate(x, rr) }) {
						t.Fatalf("lookup(%s, %s) misses %s", name, dns.TypeToString[typ], rr)
					}
				}
			}
		}
		// Written out as miekg/dns prints them, leaving out any record it
		// prints in a form it cannot read back.
		var out strings.Builder
		for _, s := range all {
			out.WriteString(s + "\n")
		}
		again, err := parseStatic(strings.NewReader(out.String()), file)
		if err != nil {
			t.Fatalf("written-out zone does not parse: %v\n%s", err, out.String())
		}
		var all2 []string
		for _, rrs := range again.rrs {
			for _, rr := range rrs {
				all2 = append(all2, rr.String())
			}
		}
		slices.Sort(all)
		slices.Sort(all2)
		if !slices.Equal(all, all2) {
			t.Fatalf("round trip changed the records:\n%q\n%q", all, all2)
		}
		if len(z.apex) != len(again.apex) {
			t.Fatalf("apexes changed: %q vs %q", z.apex, again.apex)
		}
	})
}
