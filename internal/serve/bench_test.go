package serve_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/smtp"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/elemta/elemta/internal/config"
	"github.com/elemta/elemta/internal/delivery"
	"github.com/elemta/elemta/internal/smtpd"
	"github.com/elemta/elemta/internal/spool"
	"github.com/elemta/elemta/pluginhost"
	_ "github.com/elemta/elemta/plugins/contentfilter" // the default config's plugin set
)

var benchMessage = "From: a@example.org\r\nTo: b@example.net\r\nSubject: benchmark\r\nMessage-ID: <bench@example.org>\r\n" +
	"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n" + strings.Repeat("The quick brown fox jumps over the lazy dog.\r\n", 45)

// It is an external test package so that it may import internal/config,
// which imports serve for the [server] table.

// BenchmarkAccept measures messages per second accepted (stages run,
// spooled with fsync, 250 sent) over loopback by concurrent clients, each
// sending one message after another on its own connection; delivery is
// not running. plugins=default is the embedded default config's plugin
// set, plugins=none has every stage empty. at=spool is the spool write;
// at=reception delivers each message into its Maildir before the 250
// instead (deliver_at_reception: the default config's plugins have no
// delivery stage), the whole cost of a local message.
func BenchmarkAccept(b *testing.B) {
	for _, at := range []string{"spool", "reception"} {
		for _, plugins := range []string{"none", "default"} {
			for _, clients := range []int{1, 10, 50} {
				b.Run(fmt.Sprintf("at=%s/plugins=%s/clients=%d", at, plugins, clients), func(b *testing.B) {
					benchAccept(b, at == "reception", plugins, clients)
				})
			}
		}
	}
}

func benchAccept(b *testing.B, atReception bool, plugins string, clients int) {
	var pcfg *pluginhost.Config
	if plugins == "default" {
		c, err := config.Default()
		if err != nil {
			b.Fatal(err)
		}
		pcfg = c.Plugins
	} else {
		var err error
		if pcfg, err = pluginhost.NewConfig(); err != nil {
			b.Fatal(err)
		}
	}
	mgr := pluginhost.NewManager(pcfg)
	if err := mgr.LoadPlugins(context.Background()); err != nil {
		b.Fatal(err)
	}
	defer mgr.Close()
	sp, _, err := spool.Open(filepath.Join(b.TempDir(), "spool"))
	if err != nil {
		b.Fatal(err)
	}
	defer sp.Close()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	scfg := smtpd.Config{Hostname: "mx.test", MaxMessageBytes: 10 << 20, MaxRecipients: 100, AllDomainsLocal: true}
	var worker *delivery.Worker
	if atReception {
		worker = delivery.New(delivery.Config{MaildirRoot: filepath.Join(b.TempDir(), "mail"), Hostname: "mx.test"}, mgr, sp, logger)
		scfg.Local = worker
	}
	srv := smtpd.New(scfg, mgr, sp, logger)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go func() { _ = srv.Serve(l) }()
	defer func() { _ = srv.Shutdown(context.Background()) }()

	var left atomic.Int64
	left.Store(int64(b.N))
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	cpu0 := cpuTime(b)
	b.ResetTimer()
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := smtp.Dial(l.Addr().String())
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			for left.Add(-1) >= 0 {
				if err := send(c); err != nil {
					errs <- err
					return
				}
			}
			_ = c.Quit()
		}()
	}
	wg.Wait()
	b.StopTimer()
	cpu := cpuTime(b) - cpu0
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	b.ReportMetric(float64(sp.DirSyncs())/float64(b.N), "dir-fsyncs/msg")
	b.ReportMetric(cpu.Seconds()*1000/float64(b.N), "cpu-ms/msg")
	if got := srv.Stats().Accepted; got != int64(b.N) {
		b.Fatalf("accepted %d of %d", got, b.N)
	}
	if worker != nil {
		b.ReportMetric(float64(worker.MaildirDirSyncs())/float64(b.N), "new-fsyncs/msg")
		if got := worker.Stats().AtReception; got != int64(b.N) {
			b.Fatalf("delivered at reception %d of %d", got, b.N)
		}
	}
}

// cpuTime is the process's user + system CPU time so far (the clients
// included: the same in every sub-benchmark).
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func send(c *smtp.Client) error {
	if err := c.Mail("a@example.org"); err != nil {
		return err
	}
	if err := c.Rcpt("b@example.net"); err != nil {
		return err
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := io.WriteString(w, benchMessage); err != nil {
		return err
	}
	return w.Close()
}
