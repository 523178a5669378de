package smtpd_test

// FuzzSession drives a real receiver over a 127.0.0.1 connection with
// arbitrary client bytes. It uses only the package's public API (New,
// Serve, Shutdown), so it keeps compiling whatever the connection layer
// becomes.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/elemta/elemta/internal/smtpd"
	"github.com/elemta/elemta/internal/spool"
	"github.com/elemta/elemta/registry"
	"github.com/elemta/elemta/registry/registrytest"
)

// fuzzPlugin steers the receiver into its refusal paths from the
// envelope and a header, and never changes the message: what is spooled
// is then the Received field followed by exactly what the client sent.
type fuzzPlugin struct{}

func (fuzzPlugin) HandleStage(_ context.Context, stage registry.Stage, pc *registry.ProcessingContext) (*registry.Result, error) {
	env := pc.Message.Envelope
	switch {
	case stage == registry.PreReception && pc.Phase == registry.PhaseMail && strings.HasPrefix(env.MailFrom, "reject"):
		return &registry.Result{Verdict: registry.RejectVerdict(550, "5.7.1", "sender refused (fuzz)")}, nil
	case stage == registry.PreReception && pc.Phase == registry.PhaseRcpt && strings.HasPrefix(env.RcptTo[len(env.RcptTo)-1], "tempfail"):
		return &registry.Result{Verdict: registry.TempFailVerdict(451, "4.7.1", "recipient deferred (fuzz)")}, nil
	case stage == registry.PostReception:
		switch pc.Message.Header.Get("X-Fuzz") {
		case "reject":
			return &registry.Result{Verdict: registry.RejectVerdict(554, "5.7.1", "message refused (fuzz)")}, nil
		case "quarantine":
			return &registry.Result{Verdict: registry.QuarantineVerdict("held (fuzz)")}, nil
		}
	}
	return &registry.Result{}, nil
}

func init() {
	registry.Register(registry.Module[struct{}, fuzzPlugin]{
		Name:   "smtpdfuzz",
		Types:  []registry.PluginType{registry.PluginTypeCustom},
		Stages: []registry.Stage{registry.PreReception, registry.PostReception},
		New:    func(struct{}, registry.Host) (fuzzPlugin, error) { return fuzzPlugin{}, nil },
	})
}

const (
	fuzzMaxLine    = 200
	fuzzMaxMessage = 4096
	// fuzzDeadline bounds one session: the client half-closes after its
	// bytes, so the server must answer and close long before; its own
	// timeouts (serverTimeout) are longer, so a session that ends only by
	// timing out fails.
	fuzzDeadline  = 3 * time.Second
	serverTimeout = 30 * time.Second
)

// replyLine is one line of a reply, CRLF removed: no control character in
// its text. go-smtp v0.25 echoes an unrecognized command verbatim
// ("500 5.5.2 Syntax errors, 00\r0 command unrecognized"); the connection
// guard scrubs it (seed 012b85ab2bf62ecb).
var replyLine = regexp.MustCompile(`^([2-5][0-9][0-9])([ -])[^\x00-\x1f\x7f]*$`)

func FuzzSession(f *testing.F) {
	ok := "EHLO client.test\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n" +
		"From: a@example.org\r\nSubject: hi\r\n\r\nHello.\r\n..dot-stuffed\r\n.\r\nQUIT\r\n"
	f.Add([]byte(ok))
	f.Add([]byte("HELO x\r\nMAIL FROM:<>\r\nRCPT TO:<b@example.net>\r\nRCPT TO:<c@example.net>\r\nDATA\r\nX-Fuzz: quarantine\r\n\r\nx\r\n.\r\n"))
	f.Add([]byte("EHLO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nBDAT 12 LAST\r\nSubject: x\r\n\r\nRSET\r\nQUIT\r\n"))
	f.Add([]byte("EHLO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nBDAT 4\r\nab\r\nBDAT 0 LAST\r\n"))
	// Smuggling: LF.LF and CR.CR must not end DATA.
	f.Add([]byte("EHLO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nDATA\r\nSubject: x\r\n\r\nbody\n.\nMAIL FROM:<evil@x>\nRCPT TO:<b@y>\nDATA\n\r\n.\r\n"))
	f.Add([]byte("EHLO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nDATA\r\nbody\r.\rQUIT\r\n"))
	f.Add([]byte("EHLO c\r\nMAIL FROM:<reject@x>\r\nRCPT TO:<tempfail@y>\r\nRCPT TO:<\"q\rX: y\"@y>\r\nDATA\r\n"))
	f.Add([]byte("EHLO c\r\nMAIL FROM:<a@x> SIZE=99999999\r\nRCPT TO:<b@y> NOTIFY=NEVER\r\nVRFY b\r\nEXPN x\r\nHELP\r\nNOOP\r\nSTARTTLS\r\nAUTH PLAIN AGI=\r\n"))
	f.Add([]byte("EHLO " + strings.Repeat("x", 300) + "\r\n\x00\xff\r\nDATA\r\n"))
	f.Add([]byte("EHLO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nDATA\r\n" + strings.Repeat("y", 500) + "\r\n.\r\n"))
	f.Add([]byte("EHLO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nDATA\r\n" + strings.Repeat(strings.Repeat("z", 98)+"\r\n", 50) + ".\r\n"))
	f.Add([]byte("EHLO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nBDAT 99999999999999999999\r\n"))
	// SMTPUTF8: UTF-8 addresses and header fields in and out of an SMTPUTF8 transaction.
	f.Add([]byte("EHLO c\r\nMAIL FROM:<jürgen@x> SMTPUTF8 BODY=8BITMIME\r\nRCPT TO:<björn@y>\r\nDATA\r\nSubject: Grüße\r\n\r\nä\r\n.\r\n" +
		"MAIL FROM:<a@x>\r\nRCPT TO:<björn@y>\r\nRCPT TO:<b@y>\r\nDATA\r\nSubject: \xff\r\n\r\nx\r\n.\r\nBDAT 0 LAST\r\n"))
	f.Add([]byte{})

	mgr := registrytest.Load(f, "[plugins]\nplugins = [\"smtpdfuzz\"]\n", registry.Host{Hostname: "mx.test"})
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))

	f.Fuzz(func(t *testing.T, in []byte) {
		registrytest.CheckLeaks(t) // registered first: runs after the shutdown below
		sp, _, err := spool.Open(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		defer sp.Close()
		srv := smtpd.New(smtpd.Config{
			Hostname: "mx.test", AllDomainsLocal: true,
			MaxLineLength: fuzzMaxLine, MaxMessageBytes: fuzzMaxMessage, MaxRecipients: 5,
			WriteTimeout: serverTimeout, StageTimeout: serverTimeout,
			Limits: smtpd.Limits{HeloTimeout: registry.Duration(serverTimeout), CommandTimeout: registry.Duration(serverTimeout), DataTimeout: registry.Duration(serverTimeout)},
		}, mgr, sp, logger)
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		served := make(chan error, 1)
		go func() { served <- srv.Serve(l) }()
		defer func() {
			ctx, cancel := context.WithTimeout(context.Background(), fuzzDeadline)
			defer cancel()
			if err := srv.Shutdown(ctx); err != nil {
				t.Errorf("Shutdown: %v", err)
			}
			if err := <-served; err != nil {
				t.Errorf("Serve: %v", err)
			}
		}()

		replies, err := converseRaw(l.Addr().String(), in)
		if err != nil {
			t.Fatalf("input %q: %v", in, err)
		}
		if len(replies) == 0 || replies[0].code != 220 {
			t.Fatalf("no 220 greeting first: %+v", replies)
		}
		queuedReplies := 0
		for _, r := range replies {
			if r.code == 250 && strings.Contains(r.text, "queued as") {
				queuedReplies++
			}
		}

		entries := spooled(t, sp)
		if len(entries) != queuedReplies {
			t.Fatalf("%d entries spooled, %d \"queued as\" replies; input %q", len(entries), queuedReplies, in)
		}
		bdat := bytes.Contains(bytes.ToUpper(in), []byte("BDAT"))
		for _, e := range entries {
			checkEntry(t, e, in, bdat)
		}
	})
}

// checkEntry checks what a spooled entry must be: a non-empty envelope
// free of control characters, a message of CRLF lines within the limits,
// and, for DATA, the dot-stuffed message followed by CRLF.CRLF verbatim in
// what the client sent.
func checkEntry(t *testing.T, e *spool.Entry, in []byte, bdat bool) {
	t.Helper()
	if len(e.Envelope.RcptTo) == 0 {
		t.Fatalf("entry %s spooled without recipients", e.ID)
	}
	for _, a := range append([]string{e.Envelope.MailFrom}, e.Envelope.RcptTo...) {
		if strings.ContainsFunc(a, func(r rune) bool { return r < ' ' || r == 0x7f }) {
			t.Fatalf("entry %s: control character in envelope address %q", e.ID, a)
		}
	}
	m := e.Message
	if bytes.IndexByte(m, 0) >= 0 {
		t.Fatalf("entry %s: NUL in message", e.ID)
	}
	if bytes.Count(m, []byte("\n")) != bytes.Count(m, []byte("\r\n")) || bytes.Count(m, []byte("\r")) != bytes.Count(m, []byte("\r\n")) {
		t.Fatalf("entry %s: bare CR or LF in message %q", e.ID, m)
	}
	body, ok := stripReceived(m)
	if !ok {
		t.Fatalf("entry %s: message does not start with our Received field: %q", e.ID, m)
	}
	if len(body) > fuzzMaxMessage {
		t.Fatalf("entry %s: %d bytes from the client, limit %d", e.ID, len(body), fuzzMaxMessage)
	}
	for line := range bytes.Lines(body) {
		if len(line) > fuzzMaxLine {
			t.Fatalf("entry %s: line of %d bytes, limit %d", e.ID, len(line), fuzzMaxLine)
		}
	}
	if bdat {
		return // chunks are not contiguous in the input
	}
	if len(body) > 0 && !bytes.HasSuffix(body, []byte("\r\n")) {
		t.Fatalf("entry %s: DATA message does not end with CRLF: %q", e.ID, body)
	}
	want := append(dotStuff(body), ".\r\n"...)
	if !bytes.Contains(in, want) {
		t.Fatalf("entry %s: spooled message %q followed by CRLF.CRLF is not in the input %q", e.ID, body, in)
	}
}

// stripReceived removes the first field, which must be our Received.
func stripReceived(m []byte) ([]byte, bool) {
	if !bytes.HasPrefix(m, []byte("Received: from ")) {
		return nil, false
	}
	rest := m
	for {
		i := bytes.Index(rest, []byte("\r\n"))
		if i < 0 {
			return nil, false
		}
		rest = rest[i+2:]
		if len(rest) == 0 || (rest[0] != ' ' && rest[0] != '\t') {
			return rest, true
		}
	}
}

func dotStuff(b []byte) []byte {
	var out []byte
	for line := range bytes.Lines(b) {
		if line[0] == '.' {
			out = append(out, '.')
		}
		out = append(out, line...)
	}
	return out
}

type reply struct {
	code int
	text string
}

// converseRaw sends in, half-closes, and reads every reply until the
// server closes the connection. It fails when the server neither closes
// nor answers within fuzzDeadline, or sends a malformed reply.
func converseRaw(addr string, in []byte) ([]reply, error) {
	c, err := net.DialTimeout("tcp", addr, fuzzDeadline)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(fuzzDeadline)); err != nil {
		return nil, err
	}
	wrote := make(chan error, 1)
	go func() {
		_, err := c.Write(in)
		if err == nil {
			err = c.(*net.TCPConn).CloseWrite()
		}
		wrote <- err
	}()
	var (
		out  []reply
		cont *reply // the multi-line reply being read
	)
	br := bufio.NewReader(c)
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			<-wrote // a write error is fine: the server may close first
			var ne net.Error
			switch {
			case errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET):
				// A reset: the server closed with input it had not read.
				if line != "" {
					return out, fmt.Errorf("reply %q not ended by CRLF before close", line)
				}
				if cont != nil {
					return out, fmt.Errorf("multi-line reply %d not finished before close", cont.code)
				}
				return out, nil
			case errors.As(err, &ne) && ne.Timeout():
				return out, fmt.Errorf("server neither answered nor closed within %s (replies so far: %+v)", fuzzDeadline, out)
			default:
				return out, fmt.Errorf("read: %w", err)
			}
		}
		text, ok := strings.CutSuffix(line, "\r\n")
		m := replyLine.FindStringSubmatch(text)
		if !ok || m == nil {
			return out, fmt.Errorf("malformed reply line %q", line)
		}
		var code int
		fmt.Sscan(m[1], &code)
		if cont != nil && cont.code != code {
			return out, fmt.Errorf("multi-line reply %d continued with %d", cont.code, code)
		}
		if cont == nil {
			out = append(out, reply{code: code})
			cont = &out[len(out)-1]
		}
		cont.text += text[4:] + "\n"
		if m[2] == " " {
			cont = nil
		}
	}
}

// spooled returns every entry of the queue and of quarantine.
func spooled(t *testing.T, sp *spool.Spool) []*spool.Entry {
	t.Helper()
	var out []*spool.Entry
	for _, it := range sp.List() {
		e, err := sp.Get(it.ID)
		if err != nil {
			t.Fatalf("read spooled %s: %v", it.ID, err)
		}
		out = append(out, e)
	}
	ids, err := sp.Quarantined()
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		e, err := sp.GetQuarantined(id)
		if err != nil {
			t.Fatalf("read quarantined %s: %v", id, err)
		}
		out = append(out, e)
	}
	return out
}
