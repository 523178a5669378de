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
	"testing"

	"github.com/elemta/elemta/pkg/testenv"
	"github.com/elemta/elemta/registry"
	"github.com/elemta/elemta/registry/registrytest"
)

// BenchmarkScan compares, on the same clamd in the same run: the plugin
// through the executor (pooled IDSESSION connections, and one connection
// per scan), a bare INSTREAM loop, and clamdscan --stream (a process per
// message). The cache is off: every message goes to clamd.
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
				if reply := rawInstream(b, tcp, msg.Raw); reply != "stream: OK" {
					b.Fatal(reply)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msg/s")
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
