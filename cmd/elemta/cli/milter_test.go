package cli_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/d--j/go-milter"
)

// TestMilterCommand runs `elemta milter` with the content filter, talks
// to it as an MTA would (go-milter's client) and stops it by cancelling
// its context: a message with an .exe attachment is refused with the
// filter's 550, a clean one accepted.
func TestMilterCommand(t *testing.T) {
	dir := t.TempDir()
	addr := freeAddr(t)
	cfg := fmt.Sprintf(`[plugins]
plugins = ["contentfilter"]
[[plugins.contentfilter.attachment_rules]]
name = "executables"
extensions = ["exe"]
reply = "Executable attachments are not accepted"
[milter]
listen = "inet:%s"
shutdown_timeout = 5
`, addr)
	startDaemon(t, dir, cfg, []string{"milter"}, addr)

	for _, tc := range []struct {
		file string
		want milter.ActionType
		text string
	}{
		{"clean.eml", milter.ActionAccept, ""},
		{"invoice-exe-attachment.eml", milter.ActionRejectWithCode, "Executable attachments are not accepted"},
	} {
		raw, err := os.ReadFile(filepath.Join("../../../examples/messages", tc.file))
		if err != nil {
			t.Fatal(err)
		}
		s, err := milter.NewClient("tcp", addr).Session(milter.NewMacroBag())
		if err != nil {
			t.Fatal(err)
		}
		mods, act, err := feed(s, raw)
		s.Close()
		if err != nil {
			t.Fatalf("%s: %v", tc.file, err)
		}
		if act.Type != tc.want || !bytes.Contains([]byte(act.SMTPReply), []byte(tc.text)) {
			t.Errorf("%s: got %v %q (mods %v), want %v with %q", tc.file, act.Type, act.SMTPReply, mods, tc.want, tc.text)
		}
	}
}

// feed sends one message through a milter session as Postfix would.
func feed(s *milter.ClientSession, raw []byte) ([]milter.ModifyAction, *milter.Action, error) {
	steps := []func() (*milter.Action, error){
		func() (*milter.Action, error) { return s.Conn("client.test", milter.FamilyInet, 25, "127.0.0.1") },
		func() (*milter.Action, error) { return s.Helo("client.test") },
		func() (*milter.Action, error) { return s.Mail("<alice@example.test>", "") },
		func() (*milter.Action, error) { return s.Rcpt("<bob@example.test>", "") },
		func() (*milter.Action, error) { return s.DataStart() },
	}
	raw = bytes.ReplaceAll(raw, []byte("\r\n"), []byte("\n"))
	head, body, _ := bytes.Cut(raw, []byte("\n\n"))
	var fields [][2]string
	for _, line := range strings.Split(string(head), "\n") {
		if (strings.HasPrefix(line, " ") || strings.HasPrefix(line, "\t")) && len(fields) > 0 {
			fields[len(fields)-1][1] += "\n" + line
			continue
		}
		k, v, _ := strings.Cut(line, ":")
		fields = append(fields, [2]string{k, v})
	}
	for _, f := range fields {
		steps = append(steps, func() (*milter.Action, error) { return s.HeaderField(f[0], f[1], nil) })
	}
	steps = append(steps, s.HeaderEnd)
	for _, step := range steps {
		if act, err := step(); err != nil || act.StopProcessing() {
			return nil, act, err
		}
	}
	return s.BodyReadFrom(bytes.NewReader(bytes.ReplaceAll(body, []byte("\n"), []byte("\r\n"))))
}
