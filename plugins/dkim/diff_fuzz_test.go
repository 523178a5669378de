package dkim

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/emersion/go-msgauth/dkim"

	"github.com/elemta/elemta/registry"
)

// The characters random bodies and subjects are made of: text, runs of
// white space, CRLF and bare LF line ends. A lone CR is left out: there
// go-msgauth's relaxed body canonicalizer drops the white space before it
// ("a \rb" hashes as "a\rb"), which RFC 6376 §3.4.4 does not (a CR that
// ends no line is not a line end), so the two verifiers differ on purpose.
const (
	bodyChars    = "ab c  \t\r\n\n.-"
	subjectChars = "xy z \t"
)

func fromAlphabet(seed []byte, chars string, max int) string {
	var b strings.Builder
	for i, c := range seed {
		if i == max {
			break
		}
		switch ch := chars[int(c)%len(chars)]; ch {
		case '\r':
			b.WriteString("\r\n")
		default:
			b.WriteByte(ch)
		}
	}
	return b.String()
}

// FuzzVerifyMatchesGoMsgauth signs random messages with go-msgauth (every
// canonicalization, RSA and Ed25519), changes some of them after signing
// (a body byte, a line end, the case of a header name, white space in a
// signed field, an added field), and checks that this plugin's verifier and
// go-msgauth's dkim.Verify give every signature the same result.
func FuzzVerifyMatchesGoMsgauth(f *testing.F) {
	f.Add([]byte("hello\r\nworld\r\n"), []byte("hi there"), uint8(0), uint16(0), uint8(0))
	f.Add([]byte("a  b\t\r\n\r\n\r\n"), []byte("x  y"), uint8(0x0f), uint16(3), uint8(2))
	f.Add([]byte("line\nline \n\n"), []byte(""), uint8(0x16), uint16(7), uint8(9))
	f.Add([]byte(""), []byte("z"), uint8(0x1b), uint16(0), uint8(1))
	f.Add([]byte("x\r\n"), []byte("t"), uint8(0x25), uint16(1), uint8(4))

	type signer struct {
		p   *Plugin
		res *fakeResolver
	}
	var signers []signer
	for _, algo := range []string{"rsa-sha256", "ed25519-sha256"} {
		for _, c := range []string{"relaxed/relaxed", "simple/simple", "relaxed/simple", "simple/relaxed"} {
			cfg, res := testKeys(f, algo, c)
			signers = append(signers, signer{newPlugin(f, cfg, res, nil), res})
		}
	}

	f.Fuzz(func(t *testing.T, bodySeed, subjectSeed []byte, mode uint8, at uint16, with uint8) {
		s := signers[int(mode&7)]
		body := fromAlphabet(bodySeed, bodyChars, 2048)
		subject := fromAlphabet(subjectSeed, subjectChars, 100)
		raw := []byte("From: Alice <a@example.com>\r\nTo: b@example.net\r\nSubject: " + subject + "\r\nDate: Tue, 1 Dec 2026 10:00:00 +0000\r\n\r\n" + body)
		msg := string(signed(t, s.p, raw, "example.com"))
		sep := strings.Index(msg, "\r\n\r\n") + 4
		switch (mode >> 3) & 7 {
		case 1: // a body byte changed
			if n := len(msg) - sep; n > 0 {
				i := sep + int(at)%n
				if msg[i] != '\r' && msg[i] != '\n' { // a CRLF stays whole: no lone CR
					msg = msg[:i] + fromAlphabet([]byte{with}, bodyChars, 1) + msg[i+1:]
				}
			}
		case 2: // a line added at the end of the body
			msg += fromAlphabet([]byte{with, byte(at)}, bodyChars, 2) + "\r\n"
		case 3: // the case of a signed header name
			msg = strings.Replace(msg, "Subject:", "SUBJECT:", 1)
		case 4: // white space in a signed field
			msg = strings.Replace(msg, "To: ", "To:  \t", 1)
		case 5: // a field added above the others
			msg = "Subject: added\r\n" + msg
		case 6: // every line end a bare LF
			msg = strings.ReplaceAll(msg, "\r\n", "\n")
		}
		m, err := registry.ParseMessage([]byte(msg), registry.Envelope{})
		if err != nil {
			return
		}
		ours, err := s.p.VerifySignature(context.Background(), m)
		if err != nil {
			t.Fatal(err)
		}
		theirs, err := dkim.VerifyWithOptions(bytes.NewReader(withSeparator(m)), &dkim.VerifyOptions{
			LookupTXT: func(name string) ([]string, error) { return s.res.LookupTXT(context.Background(), name) },
		})
		if err != nil {
			t.Fatalf("go-msgauth: %v", err)
		}
		if len(ours.Signatures) != len(theirs) {
			t.Fatalf("%d results, go-msgauth %d", len(ours.Signatures), len(theirs))
		}
		for i, v := range theirs {
			want, reason := msgauthResult(v.Err)
			if got := ours.Signatures[i]; got.Result != want {
				t.Fatalf("signature %d: %s (%s), go-msgauth %s (%s)\n%q", i, got.Result, got.Reason, want, reason, msg)
			}
		}
	})
}

func msgauthResult(err error) (registry.AuthResult, string) {
	switch {
	case err == nil:
		return registry.AuthPass, ""
	case dkim.IsTempFail(err):
		return registry.AuthTempError, err.Error()
	case dkim.IsPermFail(err):
		return registry.AuthPermError, err.Error()
	}
	return registry.AuthFail, err.Error()
}
