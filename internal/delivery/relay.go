package delivery

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/emersion/go-smtp"
)

// Relay is a smarthost that takes every message instead of the local
// Maildirs.
type Relay struct {
	// Addr is host:port.
	Addr string
	// StartTLS requires STARTTLS, with TLS (nil: verify the certificate
	// against Addr's host).
	StartTLS bool
	TLS      *tls.Config
	// Timeout bounds the connection and each command (default 2 minutes).
	Timeout time.Duration
}

// relay sends data for rcpts in one transaction and sorts the recipients
// by outcome. Unlike a Maildir copy, a relayed copy cannot be made
// idempotent: a crash after the smarthost's 250 and before the spool is
// updated sends it again (at least once, as every MTA).
func (w *Worker) relay(ctx context.Context, from string, rcpts []string, data []byte, out *Outcome) {
	r := w.cfg.Relay
	timeout := r.Timeout
	if timeout <= 0 {
		timeout = 2 * time.Minute
	}
	deferAll := func(err error) {
		for _, rc := range rcpts {
			out.Deferred = append(out.Deferred, failure(rc, err, true))
		}
	}
	d := net.Dialer{Timeout: timeout}
	conn, err := d.DialContext(ctx, "tcp", r.Addr)
	if err != nil {
		deferAll(fmt.Errorf("relay %s: %w", r.Addr, err))
		return
	}
	var c *smtp.Client
	if r.StartTLS {
		cfg := r.TLS
		if cfg == nil {
			host, _, _ := net.SplitHostPort(r.Addr)
			cfg = &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}
		}
		c, err = smtp.NewClientStartTLS(conn, cfg)
		if err != nil {
			conn.Close()
			deferAll(fmt.Errorf("relay %s: starttls: %w", r.Addr, err))
			return
		}
	} else {
		c = smtp.NewClient(conn)
	}
	defer c.Close()
	c.CommandTimeout, c.SubmissionTimeout = timeout, timeout
	if err := c.Hello(w.cfg.Hostname); err != nil {
		deferAll(fmt.Errorf("relay %s: %w", r.Addr, err))
		return
	}
	if err := c.Mail(from, nil); err != nil {
		for _, rc := range rcpts {
			f := failure(rc, err, false)
			if isPerm(err) {
				out.Failed = append(out.Failed, f)
			} else {
				out.Deferred = append(out.Deferred, f)
			}
		}
		return
	}
	var accepted []string
	for _, rc := range rcpts {
		if err := c.Rcpt(rc, nil); err != nil {
			if isPerm(err) {
				out.Failed = append(out.Failed, failure(rc, err, false))
			} else {
				out.Deferred = append(out.Deferred, failure(rc, err, false))
			}
			continue
		}
		accepted = append(accepted, rc)
	}
	if len(accepted) == 0 {
		_ = c.Quit()
		return
	}
	wc, err := c.Data()
	if err == nil {
		if _, err = wc.Write(data); err == nil {
			err = wc.Close()
		}
	}
	if err != nil {
		for _, rc := range accepted {
			if isPerm(err) {
				out.Failed = append(out.Failed, failure(rc, err, false))
			} else {
				out.Deferred = append(out.Deferred, failure(rc, err, false))
			}
		}
		return
	}
	out.Delivered = append(out.Delivered, accepted...)
	_ = c.Quit()
}

// isPerm reports whether err is the smarthost's 5xx.
func isPerm(err error) bool {
	var se *smtp.SMTPError
	return errors.As(err, &se) && se.Code/100 == 5
}

func failure(rcpt string, err error, local bool) Failure {
	var se *smtp.SMTPError
	if !local && errors.As(err, &se) {
		enh := fmt.Sprintf("%d.%d.%d", se.EnhancedCode[0], se.EnhancedCode[1], se.EnhancedCode[2])
		if se.EnhancedCode == smtp.NoEnhancedCode || se.EnhancedCode[0] == 0 {
			enh = fmt.Sprintf("%d.0.0", se.Code/100)
		}
		return Failure{Rcpt: rcpt, Status: enh, Reply: fmt.Sprintf("%d %s %s", se.Code, enh, oneLine(se.Message))}
	}
	return Failure{Rcpt: rcpt, Status: "4.4.1", Reply: "451 4.4.1 " + strings.TrimSpace(oneLine(err.Error()))}
}
