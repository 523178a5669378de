package rspamd

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/elemta/elemta/pkg/testenv"
	"github.com/elemta/elemta/registry"
	"github.com/elemta/elemta/registry/registrytest"
)

// sized returns a plain-text message of n bytes with a valid header.
func sized(n int) []byte {
	head := string(readFileB("normal.eml"))
	head = head[:strings.Index(head, "\r\n\r\n")+4]
	body := bytes.Repeat([]byte("Hello Bob, here are the minutes of the meeting we had on Tuesday.\r\n"), n/66+1)
	return append([]byte(head), body...)[:n]
}

func readFileB(name string) []byte {
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		panic(err)
	}
	return b
}

// BenchmarkCheck compares, on the same rspamd in the same run: the plugin
// through the executor, a bare POST /checkv2 loop, and rspamc (a process
// per message).
func BenchmarkCheck(b *testing.B) {
	url := testenv.Require(b, testenv.Rspamd)
	for _, size := range []struct {
		name string
		n    int
	}{{"10KB", 10 << 10}, {"1MB", 1 << 20}} {
		raw := sized(size.n)
		msg := message(b, raw, testEnvelope)
		b.Run("plugin/"+size.name, func(b *testing.B) {
			m := registrytest.Load(b, fmt.Sprintf("[plugins]\nplugins = [\"rspamd\"]\n[plugins.rspamd]\nurl = %q\n", url), testHost)
			b.SetBytes(int64(size.n))
			for b.Loop() {
				sr, err := m.ExecuteStage(context.Background(), registry.PostReception, registry.NewProcessingContext(msg, nil))
				if err != nil || sr.Results[0].Err != nil {
					b.Fatal(err, sr.Results[0].Err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msg/s")
		})
		b.Run("raw-http/"+size.name, func(b *testing.B) {
			b.SetBytes(int64(size.n))
			for b.Loop() {
				req, _ := http.NewRequest(http.MethodPost, url+"/checkv2", bytes.NewReader(raw))
				req.Header.Set("IP", "127.0.0.1")
				req.Header.Set("From", testEnvelope.MailFrom)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					b.Fatal(err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					b.Fatal(resp.Status)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msg/s")
		})
		b.Run("rspamc/"+size.name, func(b *testing.B) {
			file := filepath.Join(b.TempDir(), "msg.eml")
			if err := os.WriteFile(file, raw, 0o644); err != nil {
				b.Fatal(err)
			}
			host := strings.TrimPrefix(url, "http://")
			b.SetBytes(int64(size.n))
			for b.Loop() {
				out, err := exec.Command("rspamc", "-h", host, "-i", "127.0.0.1", "-F", testEnvelope.MailFrom, file).CombinedOutput()
				if err != nil || !strings.Contains(string(out), "Action:") {
					b.Fatalf("rspamc: %v: %s", err, out)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msg/s")
		})
	}
}
