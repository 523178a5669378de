// Command signedsrc is the load client of tools/bench-postfix/run-signed.sh:
// it writes a corpus of distinct DKIM-signed messages, sends a corpus to an
// SMTP server over concurrent sessions, and checks the copies an MTA
// delivered for the Authentication-Results it must have written.
//
//	signedsrc gen   -dir D -m N -l SIZE -key K.pem -domain D -selector S -from F -to T
//	signedsrc send  -dir D -addr HOST:PORT -s SESSIONS -from F -to T
//	signedsrc check -dir MAILDIR/new -want N
//
// gen signs every message (RSA, relaxed/relaxed, go-msgauth's dkim.Sign)
// before any timed phase; send reads the whole corpus into memory before its
// first connection and opens one connection per message, as smtp-source does.
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"flag"
	"fmt"
	"math/rand/v2"
	"net/mail"
	"net/smtp"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-msgauth/dkim"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: signedsrc gen|send|check [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "gen":
		err = runGen(os.Args[2:])
	case "send":
		err = runSend(os.Args[2:])
	case "check":
		err = runCheck(os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q (want gen, send or check)", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "signedsrc:", err)
		os.Exit(1)
	}
}

func runGen(args []string) error {
	fs := flag.NewFlagSet("gen", flag.ExitOnError)
	dir := fs.String("dir", "", "corpus directory to write")
	n := fs.Int("m", 1000, "messages")
	size := fs.Int("l", 10240, "approximate message size in bytes")
	keyFile := fs.String("key", "", "DKIM private key, PKCS#8 PEM")
	domain := fs.String("domain", "example.test", "DKIM d=")
	selector := fs.String("selector", "rsa2048", "DKIM s=")
	from := fs.String("from", "a@example.test", "From: address")
	to := fs.String("to", "postmaster@example.test", "To: address")
	_ = fs.Parse(args)
	key, err := loadKey(*keyFile)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(*dir, 0o755); err != nil {
		return fmt.Errorf("creating corpus directory: %w", err)
	}
	opts := &dkim.SignOptions{
		Domain: *domain, Selector: *selector, Signer: key,
		HeaderCanonicalization: dkim.CanonicalizationRelaxed,
		BodyCanonicalization:   dkim.CanonicalizationRelaxed,
		HeaderKeys:             []string{"From", "To", "Subject", "Date", "Message-ID"},
	}
	rng := rand.New(rand.NewPCG(1, 2))
	date := time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC)
	for i := range *n {
		raw := message(rng, i, *size, *from, *to, *domain, date.Add(time.Duration(i)*time.Second))
		var signed bytes.Buffer
		if err := dkim.Sign(&signed, bytes.NewReader(raw), opts); err != nil {
			return fmt.Errorf("signing message %d: %w", i, err)
		}
		name := filepath.Join(*dir, fmt.Sprintf("%06d.eml", i))
		if err := os.WriteFile(name, signed.Bytes(), 0o644); err != nil {
			return fmt.Errorf("writing %s: %w", name, err)
		}
	}
	return nil
}

func loadKey(file string) (crypto.Signer, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("reading DKIM key: %w", err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, fmt.Errorf("%s: no PEM block", file)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%s: %T is not a signing key", file, k)
	}
	return s, nil
}

var words = strings.Fields(`the quick brown fox jumps over lazy dog mail server queue
delivery message header body signature domain policy record lookup resolver session
transfer agent relay report pass fail neutral none aligned envelope sender recipient`)

// message builds one CRLF message of about size bytes: its own Message-ID
// and its own body text (words drawn from rng, the index in every line).
func message(rng *rand.Rand, i, size int, from, to, domain string, date time.Time) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "From: <%s>\r\nTo: <%s>\r\nSubject: signed corpus message %d\r\n", from, to, i)
	fmt.Fprintf(&b, "Date: %s\r\nMessage-ID: <signedsrc.%d.%d@%s>\r\n", date.Format(time.RFC1123Z), i, rng.Uint64(), domain)
	b.WriteString("MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n")
	for line := 0; b.Len() < size; line++ {
		fmt.Fprintf(&b, "%d.%d", i, line)
		for n := 0; n < 10; n++ {
			b.WriteString(" " + words[rng.IntN(len(words))])
		}
		b.WriteString("\r\n")
	}
	return b.Bytes()
}

func runSend(args []string) error {
	fs := flag.NewFlagSet("send", flag.ExitOnError)
	dir := fs.String("dir", "", "corpus directory (from gen)")
	addr := fs.String("addr", "127.0.0.1:25", "server address")
	sessions := fs.Int("s", 1, "concurrent sessions")
	from := fs.String("from", "a@example.test", "MAIL FROM")
	to := fs.String("to", "postmaster@example.test", "RCPT TO")
	helo := fs.String("helo", "mail.example.test", "EHLO name")
	timeout := fs.Duration("timeout", 5*time.Minute, "bound on the whole run")
	_ = fs.Parse(args)
	corpus, err := readCorpus(*dir)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	jobs := make(chan []byte)
	errs := make(chan error, *sessions)
	var wg sync.WaitGroup
	for range *sessions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for msg := range jobs {
				if err := sendOne(*addr, *helo, *from, *to, msg); err != nil {
					errs <- err
					cancel()
					return
				}
			}
		}()
	}
feed:
	for _, m := range corpus {
		select {
		case jobs <- m:
		case <-ctx.Done():
			break feed
		}
	}
	close(jobs)
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("sending to %s: %w", *addr, err)
	}
	return nil
}

func readCorpus(dir string) ([][]byte, error) {
	names, err := filepath.Glob(filepath.Join(dir, "*.eml"))
	if err != nil || len(names) == 0 {
		return nil, fmt.Errorf("corpus %s: no *.eml files (%v)", dir, err)
	}
	sort.Strings(names)
	out := make([][]byte, 0, len(names))
	for _, n := range names {
		b, err := os.ReadFile(n)
		if err != nil {
			return nil, fmt.Errorf("reading corpus: %w", err)
		}
		out = append(out, b)
	}
	return out, nil
}

func sendOne(addr, helo, from, to string, msg []byte) error {
	c, err := smtp.Dial(addr)
	if err != nil {
		return fmt.Errorf("dialing %s: %w", addr, err)
	}
	defer c.Close()
	if err := c.Hello(helo); err != nil {
		return fmt.Errorf("EHLO to %s: %w", addr, err)
	}
	if err := c.Mail(from); err != nil {
		return fmt.Errorf("MAIL FROM to %s: %w", addr, err)
	}
	if err := c.Rcpt(to); err != nil {
		return fmt.Errorf("RCPT TO to %s: %w", addr, err)
	}
	w, err := c.Data()
	if err != nil {
		return fmt.Errorf("DATA to %s: %w", addr, err)
	}
	if _, err := w.Write(msg); err != nil {
		return fmt.Errorf("writing message to %s: %w", addr, err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("end of DATA to %s: %w", addr, err)
	}
	if err := c.Quit(); err != nil {
		return fmt.Errorf("QUIT to %s: %w", addr, err)
	}
	return nil
}

// runCheck reads every file in dir and requires an Authentication-Results
// field with spf=pass, dkim=pass and dmarc=pass in each, and at least want files.
func runCheck(args []string) error {
	fs := flag.NewFlagSet("check", flag.ExitOnError)
	dir := fs.String("dir", "", "Maildir new/ directory")
	want := fs.Int("want", 1, "messages expected")
	_ = fs.Parse(args)
	ents, err := os.ReadDir(*dir)
	if err != nil {
		return fmt.Errorf("reading %s: %w", *dir, err)
	}
	if len(ents) < *want {
		return fmt.Errorf("%s: %d messages, want %d", *dir, len(ents), *want)
	}
	var bad []string
	for _, e := range ents {
		name := filepath.Join(*dir, e.Name())
		ok, ar, err := authPass(name)
		if err != nil {
			return err
		}
		if !ok {
			bad = append(bad, fmt.Sprintf("%s: %q", name, ar))
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("%d of %d delivered copies lack spf=pass, dkim=pass and dmarc=pass; first: %s",
			len(bad), len(ents), bad[0])
	}
	fmt.Printf("check: %d delivered copies carry spf=pass, dkim=pass and dmarc=pass\n", len(ents))
	return nil
}

func authPass(name string) (bool, []string, error) {
	f, err := os.Open(name)
	if err != nil {
		return false, nil, fmt.Errorf("opening delivered copy: %w", err)
	}
	defer f.Close()
	m, err := mail.ReadMessage(bufio.NewReader(f))
	if err != nil {
		return false, nil, fmt.Errorf("parsing %s: %w", name, err)
	}
	ars := m.Header["Authentication-Results"]
	for _, ar := range ars {
		if strings.Contains(ar, "spf=pass") && strings.Contains(ar, "dkim=pass") && strings.Contains(ar, "dmarc=pass") {
			return true, ars, nil
		}
	}
	return false, ars, nil
}
