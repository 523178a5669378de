package clamav

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/elemta/elemta/pkg/testenv"
	"github.com/elemta/elemta/registry"
	"github.com/elemta/elemta/registry/registrytest"
)

// seq numbers the scans of every benchmark below, so no two scans send the
// same bytes.
var seq atomic.Int64

// distinct writes the next sequence number over the first 20 bytes of
// msg's body, in place, so that clamd's own cache (it remembers the hash of
// every clean file) never answers: every scan below is a real one. The
// parsed header is not touched.
func distinct(msg *registry.Message) {
	body := msg.Body()
	copy(body[:min(20, len(body))], fmt.Sprintf("%019d\n", seq.Add(1)))
}

// BenchmarkScan compares, on the same clamd in the same run: the plugin
// through the executor (pooled IDSESSION connections, and one connection
// per scan), a bare INSTREAM loop, and clamdscan --stream (a process per
// message). The plugin's cache is off, and every scan sends a message no
// scan sent before (distinct), so clamd's cache never answers either.
// `ratio/…` runs the plugin (pooled) and the bare loop in the same loop,
// alternating which goes first, and reports plugin time / raw time.
func BenchmarkScan(b *testing.B) {
	tcp := testenv.Require(b, testenv.Clamd)
	for _, size := range []struct {
		name string
		n    int
	}{{"10KB", 10 << 10}, {"1MB", 1 << 20}} {
		msg := sizedMessage(b, size.n)
		for _, idle := range []int{4, 0} {
			b.Run(fmt.Sprintf("plugin-idle%d/%s", idle, size.name), func(b *testing.B) {
				doc := fmt.Sprintf("[plugins]\nplugins = [\"clamav\"]\n[plugins.clamav]\nservers = [%q]\ncache_size = 0\nmax_idle_conns = %d\n", tcp, idle)
				m := registrytest.Load(b, doc, registry.Host{})
				b.SetBytes(int64(size.n))
				for b.Loop() {
					distinct(msg)
					sr, err := m.ExecuteStage(context.Background(), registry.PostReception, registry.NewProcessingContext(msg, nil))
					if err != nil || sr.Results[0].Err != nil {
						b.Fatal(err, sr.Results[0].Err)
					}
				}
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msg/s")
			})
		}
		b.Run("raw-instream/"+size.name, func(b *testing.B) {
			b.SetBytes(int64(size.n))
			for b.Loop() {
				distinct(msg)
				if reply := rawInstream(b, tcp, msg.Raw); reply != "stream: OK" {
					b.Fatal(reply)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msg/s")
		})
		b.Run("ratio/"+size.name, func(b *testing.B) {
			doc := fmt.Sprintf("[plugins]\nplugins = [\"clamav\"]\n[plugins.clamav]\nservers = [%q]\ncache_size = 0\n", tcp)
			m := registrytest.Load(b, doc, registry.Host{})
			plugin := func() {
				distinct(msg)
				sr, err := m.ExecuteStage(context.Background(), registry.PostReception, registry.NewProcessingContext(msg, nil))
				if err != nil || sr.Results[0].Err != nil {
					b.Fatal(err, sr.Results[0].Err)
				}
			}
			raw := func() {
				distinct(msg)
				if reply := rawInstream(b, tcp, msg.Raw); reply != "stream: OK" {
					b.Fatal(reply)
				}
			}
			var tp, tr time.Duration
			i := 0
			for b.Loop() {
				first, second, t1, t2 := plugin, raw, &tp, &tr
				if i%2 == 1 {
					first, second, t1, t2 = raw, plugin, &tr, &tp
				}
				start := time.Now()
				first()
				mid := time.Now()
				second()
				*t1 += mid.Sub(start)
				*t2 += time.Since(mid)
				i++
			}
			b.ReportMetric(float64(tp)/float64(tr), "plugin/raw")
		})
		b.Run("clamdscan/"+size.name, func(b *testing.B) {
			dir := b.TempDir()
			host, port, _ := net.SplitHostPort(tcp)
			conf := filepath.Join(dir, "clamd.conf")
			file := filepath.Join(dir, "msg.eml")
			if err := os.WriteFile(conf, []byte("TCPSocket "+port+"\nTCPAddr "+host+"\n"), 0o644); err != nil {
				b.Fatal(err)
			}
			if err := os.WriteFile(file, msg.Raw, 0o644); err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(size.n))
			for b.Loop() {
				copy(msg.Body(), fmt.Sprintf("%019d\n", seq.Add(1)))
				if err := os.WriteFile(file, msg.Raw, 0o644); err != nil {
					b.Fatal(err)
				}
				out, err := exec.Command("clamdscan", "--no-summary", "--stream", "--config-file="+conf, file).CombinedOutput()
				if err != nil || !strings.Contains(string(out), "OK") {
					b.Fatalf("clamdscan: %v: %s", err, out)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msg/s")
		})
	}
}

// rawInstream is the least a client can do: connect, INSTREAM in 64 KiB
// chunks, read the reply.
func rawInstream(b *testing.B, addr string, data []byte) string {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	w := bufio.NewWriterSize(c, 64<<10+4)
	w.WriteString("zINSTREAM\x00")
	for len(data) > 0 {
		n := min(len(data), 64<<10)
		binary.Write(w, binary.BigEndian, uint32(n))
		w.Write(data[:n])
		data = data[n:]
	}
	w.Write([]byte{0, 0, 0, 0})
	if err := w.Flush(); err != nil {
		b.Fatal(err)
	}
	reply, err := bufio.NewReader(c).ReadString(0)
	if err != nil {
		b.Fatal(err)
	}
	return strings.TrimSuffix(reply, "\x00")
}
