package e2e

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/elemta/elemta/pkg/headerfold"
	"github.com/elemta/elemta/pkg/testenv"
	_ "github.com/elemta/elemta/plugins/arc"
)

// TestAddedFieldsFolded: a message with eight DKIM signatures that all
// fail (selector "mismatch" publishes another key) goes through spf, dkim,
// dmarc, arc (verify and seal), clamav and authres, the longest fields
// they write. Every field Elemta added is folded: no line over 998, none
// over 78 where white space allowed a fold; python3-authres parses the
// Authentication-Results and the ARC-Authentication-Results.
func TestAddedFieldsFolded(t *testing.T) {
	dns := testenv.Require(t, testenv.DNS)
	keys := testenv.Require(t, testenv.Keys)
	clamd := testenv.Require(t, testenv.Clamd)
	s := start(t, fmt.Sprintf(`
[plugins]
plugins = ["spf", "dkim", "dmarc", "arc", "clamav", "authres"]
[plugins.dkim]
timeout = "5s"
sign = false
[plugins.arc]
domain = "example.test"
selector = "rsa2048"
private_key = %q
[plugins.clamav]
servers = [%q]
add_headers = true
[dns]
servers = [%q]
`, filepath.Join(keys, "rsa2048.pem"), clamd, dns), nil)

	const rcpt = "postmaster@example.test"
	msg := message("alice@example.test", rcpt, "eight failed signatures", "Hello,\nsigned eight times, verified never.\n")
	key := loadKey(t, filepath.Join(keys, "rsa2048.pem"))
	for i := range 8 {
		var b bytes.Buffer
		require.NoError(t, dkim.Sign(&b, bytes.NewReader(msg), &dkim.SignOptions{Domain: "example.test", Selector: "mismatch",
			Identifier: fmt.Sprintf("signer-%d@example.test", i), Signer: key,
			HeaderKeys: []string{"From", "To", "Subject", "Date", "Message-ID"}}))
		msg = b.Bytes()
	}
	require.NoError(t, s.send("mail.example.test", nil, "alice@example.test", []string{rcpt}, msg))
	m := s.waitMail(rcpt, 1)[0]
	checkWritten(t, m)

	ours := []string{"Received", "Received-SPF", "Authentication-Results", "ARC-Seal", "ARC-Message-Signature",
		"ARC-Authentication-Results", "X-Virus-Scanned", "X-Virus-Status"}
	head, _, _ := strings.Cut(m, "\r\n\r\n")
	fields := rawFields(head)
	seen := map[string]bool{}
	for _, f := range fields {
		name, _, _ := strings.Cut(f, ":")
		for _, o := range ours {
			if strings.EqualFold(name, o) && !strings.Contains(f, "(Postfix)") {
				seen[o] = true
				checkFoldedField(t, f)
			}
		}
	}
	for _, o := range ours {
		assert.True(t, seen[o], "%s written", o)
	}
	ar := headerFields(m, "Authentication-Results")
	require.Len(t, ar, 1)
	assert.Equal(t, 8, strings.Count(ar[0], "dkim=fail"), ar[0])
	assert.Greater(t, len(ar[0]), 998, "long enough that it had to be folded")
	aar := headerFields(m, "ARC-Authentication-Results")
	require.Len(t, aar, 1)
	_, aarValue, _ := strings.Cut(aar[0], ";") // "i=1; authserv-id; ..."
	pythonAuthres(t, "Authentication-Results: "+ar[0], "Authentication-Results: "+strings.TrimSpace(aarValue))
}

// rawFields splits a header section into its fields, folds kept.
func rawFields(head string) []string {
	var out []string
	for _, line := range strings.Split(head, "\r\n") {
		if len(out) > 0 && (strings.HasPrefix(line, " ") || strings.HasPrefix(line, "\t")) {
			out[len(out)-1] += "\r\n" + line
			continue
		}
		out = append(out, line)
	}
	return out
}

// checkFoldedField checks one field as written: no line over 998, and a
// line over 78 only when no white space after its first text could have
// cut it there.
func checkFoldedField(t *testing.T, field string) {
	t.Helper()
	for i, line := range strings.Split(field, "\r\n") {
		require.LessOrEqual(t, len(line), headerfold.MaxLine, "%.60q", field)
		if len(line) <= headerfold.Width {
			continue
		}
		text := len(line) - len(strings.TrimLeft(line, " \t"))
		if i == 0 {
			text = strings.Index(line, ":") + 2
		}
		if j := strings.IndexAny(line[min(text+1, len(line)):min(headerfold.Width+1, len(line))], " \t"); j >= 0 {
			t.Errorf("line %d of %.40q is %d long but could be folded:\n%s", i, field, len(line), line)
		}
	}
}

// pythonAuthres parses each field with Debian's python3-authres.
func pythonAuthres(t *testing.T, fields ...string) {
	t.Helper()
	python := testenv.RequireTool(t, testenv.Python, "authres")
	js, err := json.Marshal(fields)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, python, "-c", `
import json, sys, authres
for f in json.load(sys.stdin):
    try:
        authres.AuthenticationResultsHeader.parse(f)
    except Exception as e:
        print("%s: %s" % (e, f))
`)
	cmd.Stdin = bytes.NewReader(js)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, string(out))
	assert.Empty(t, strings.TrimSpace(string(out)), "python3-authres")
}

func loadKey(t *testing.T, path string) crypto.Signer {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	block, _ := pem.Decode(b)
	require.NotNil(t, block)
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	require.NoError(t, err)
	return k.(crypto.Signer)
}
