package cli

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/emersion/go-smtp"
)

// send submits message files to an SMTP server, one transaction each, and
// prints the server's reply: the client half of `make run`'s demo, and a
// way for operators to inject a message by hand.
func (a *app) send(ctx context.Context, args []string) int {
	fs := a.flagSet("send", "send [--server HOST:PORT] [--helo NAME] [--from ADDR] --rcpt ADDR [--rcpt ADDR]... FILE...")
	server := fs.String("server", "127.0.0.1:2525", "SMTP server to submit to")
	helo := fs.String("helo", "localhost", "name to announce in EHLO")
	from := fs.String("from", "", "envelope sender (empty: the null sender)")
	timeout := fs.Duration("timeout", 30*time.Second, "time allowed for each message")
	var rcpts stringList
	fs.Var(&rcpts, "rcpt", "envelope recipient (repeatable)")
	files, err := parse(fs, args)
	if err != nil {
		return usageError(err)
	}
	if len(files) == 0 || len(rcpts) == 0 {
		fs.Usage()
		return ExitError
	}

	worst := ExitAccept
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			return a.errorf("send: %v", err)
		}
		mctx, cancel := context.WithTimeout(ctx, *timeout)
		reply, err := submit(mctx, *server, *helo, *from, rcpts, data)
		cancel()
		status := ExitAccept
		var se *smtp.SMTPError
		switch {
		case errors.As(err, &se) && se.Code >= 500:
			status = ExitReject
		case errors.As(err, &se):
			status = ExitTempFail
		case err != nil:
			return a.errorf("send %s: %v", file, err)
		}
		if se != nil {
			reply = fmt.Sprintf("%d %d.%d.%d %s", se.Code, se.EnhancedCode[0], se.EnhancedCode[1], se.EnhancedCode[2], se.Message)
		} else if err != nil {
			reply = err.Error()
		}
		fmt.Fprintf(a.stdout, "%s: %s\n", file, reply)
		worst = max(worst, status)
	}
	return worst
}

// submit runs one SMTP transaction for data and returns the server's
// reply to the end of DATA. Recipients the server refuses are reported in
// the reply; the message goes to the others.
func submit(ctx context.Context, server, helo, from string, rcpts []string, data []byte) (string, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", server)
	if err != nil {
		return "", fmt.Errorf("connect to %s: %w", server, err)
	}
	if deadline, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(deadline)
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	defer stop()
	c := smtp.NewClient(conn)
	defer c.Close()
	if err := c.Hello(helo); err != nil {
		return "", err
	}
	if err := c.Mail(from, nil); err != nil {
		return "", err
	}
	var refused []string
	var firstErr error
	for _, r := range rcpts {
		if err := c.Rcpt(r, nil); err != nil {
			refused = append(refused, fmt.Sprintf("%s refused: %v", r, err))
			firstErr = cmp.Or(firstErr, err)
		}
	}
	if len(refused) == len(rcpts) {
		return "", fmt.Errorf("every recipient refused: %w", firstErr)
	}
	w, err := c.Data()
	if err != nil {
		return "", err
	}
	if _, err := w.Write(data); err != nil {
		return "", err
	}
	resp, err := w.CloseWithResponse()
	if err != nil {
		return "", err
	}
	_ = c.Quit()
	reply := "250 " + resp.StatusText
	for _, r := range refused {
		reply += "; " + r
	}
	return reply, nil
}
