package e2e

import (
	"fmt"
	"io"
	"net/smtp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/elemta/elemta/pkg/testenv"
)

// BenchmarkAcceptAuthPlugins measures messages per second accepted by a
// whole `elemta serve` (delivery to the Maildirs running alongside) over
// loopback, with the sender-authentication plugins against the test
// unbound (spf at MAIL, dkim verify + dmarc + authres after DATA; the
// resolver's cache is warm after the first message) and with no plugins,
// so the difference is those plugins' share. Each client keeps one
// connection and sends one ~2.2 KB message after another.
func BenchmarkAcceptAuthPlugins(b *testing.B) {
	dns := testenv.Require(b, testenv.DNS)
	body := "From: <alice@example.test>\r\nTo: <postmaster@example.test>\r\nSubject: benchmark\r\nMessage-ID: <bench@example.test>\r\n" +
		"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n" + strings.Repeat("The quick brown fox jumps over the lazy dog.\r\n", 45)
	for _, plugins := range []string{`[]`, `["spf", "dkim", "dmarc", "authres"]`} {
		name := "none"
		if plugins != `[]` {
			name = "spf+dkim+dmarc+authres"
		}
		for _, clients := range []int{1, 10} {
			b.Run(fmt.Sprintf("plugins=%s/clients=%d", name, clients), func(b *testing.B) {
				s := start(b, fmt.Sprintf("[plugins]\nplugins = %s\n[dns]\nservers = [%q]\n", plugins, dns), nil)
				var left atomic.Int64
				left.Store(int64(b.N))
				var wg sync.WaitGroup
				errs := make(chan error, clients)
				b.ResetTimer()
				for range clients {
					wg.Add(1)
					go func() {
						defer wg.Done()
						c, err := smtp.Dial(s.addr)
						if err != nil {
							errs <- err
							return
						}
						defer c.Close()
						if err := c.Hello("mail.example.test"); err != nil {
							errs <- err
							return
						}
						for left.Add(-1) >= 0 {
							if err := sendOn(c, body); err != nil {
								errs <- err
								return
							}
						}
						_ = c.Quit()
					}()
				}
				wg.Wait()
				b.StopTimer()
				close(errs)
				for err := range errs {
					b.Fatal(err)
				}
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
			})
		}
	}
}

func sendOn(c *smtp.Client, body string) error {
	if err := c.Mail("alice@example.test"); err != nil {
		return err
	}
	if err := c.Rcpt("postmaster@example.test"); err != nil {
		return err
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := io.WriteString(w, body); err != nil {
		return err
	}
	return w.Close()
}
