package clamav

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	clamd "github.com/dutchcoders/go-clamd"
	"github.com/elemta/elemta/pkg/testenv"
	"github.com/elemta/elemta/registry"
	"github.com/elemta/elemta/registry/registrytest"
)

// TestFaults: every daemon fault gives the configured on_error verdict
// within the plugin's timeout, leaves no goroutine behind and never crashes.
func TestFaults(t *testing.T) {
	registrytest.CheckLeaks(t)
	// Long enough to stream 16 MiB and read a 1 MiB reply on a loaded 2-core
	// machine under the race detector; no case waits for it unless it must.
	const timeout = 2 * time.Second
	cases := []struct {
		name   string
		server func(t *testing.T) string
		want   string // in the error
	}{
		{"daemon stopped", closedPort, "connection refused"},
		{"accepts then never answers", func(t *testing.T) string {
			return registrytest.NewServer(t, func(c net.Conn) { _, _ = io.Copy(io.Discard, c) }).Addr()
		}, "timeout"},
		{"answers garbage", func(t *testing.T) string {
			return registrytest.NewServer(t, func(c net.Conn) {
				_, _ = readCommand(c)
				_, _ = drainStream(c)
				_, _ = c.Write([]byte("HTTP/1.1 400 Bad Request\r\n\r\n\x00"))
			}).Addr()
		}, "unexpected reply"},
		{"endless reply", func(t *testing.T) string {
			return registrytest.NewServer(t, func(c net.Conn) {
				_, _ = readCommand(c)
				_, _ = drainStream(c)
				_, _ = c.Write(bytes.Repeat([]byte("A"), 1<<20))
			}).Addr()
		}, "without a terminating NUL"},
		{"hangs up mid-stream", func(t *testing.T) string {
			return registrytest.NewServer(t, func(c net.Conn) { _, _ = readCommand(c) }).Addr()
		}, "send stream|read reply"}, // the hang-up shows on a write or, once the kernel buffered the rest, on the read
		{"answers OK before the stream ends", func(t *testing.T) string {
			return registrytest.NewServer(t, func(c net.Conn) {
				_, _ = readCommand(c)
				_, _ = c.Write([]byte("stream: OK\x00"))
			}).Addr()
		}, "before the whole stream was sent"},
		{"refuses as too large", func(t *testing.T) string {
			return registrytest.NewServer(t, func(c net.Conn) {
				_, _ = readCommand(c)
				_, _ = drainStream(c)
				_, _ = c.Write([]byte("INSTREAM size limit exceeded. ERROR\x00"))
			}).Addr()
		}, "size limit"},
	}
	msg := sizedMessage(t, 16<<20) // more than loopback buffers hold, so a hang-up is noticed mid-stream
	for _, tc := range cases {
		for _, onError := range []registry.Action{registry.TempFail, registry.Reject, registry.Accept} {
			t.Run(tc.name+"/"+onError.String(), func(t *testing.T) {
				addr := tc.server(t)
				// on_size_limit = "error": the size refusal goes through on_error like the other faults
				doc := fmt.Sprintf("[plugins]\nplugins = [\"clamav\"]\n[plugins.clamav]\nservers = [%q]\ntimeout = %q\non_error = %q\nmax_idle_conns = 0\non_size_limit = \"error\"\n",
					addr, timeout, onError)
				m := registrytest.Load(t, doc, registry.Host{})
				start := time.Now()
				sr, err := m.ExecuteStage(context.Background(), registry.PostReception, registry.NewProcessingContext(msg, nil))
				elapsed := time.Since(start)
				if err != nil {
					t.Fatal(err)
				}
				res := sr.Results[0]
				if res.Err == nil || !slices.ContainsFunc(strings.Split(tc.want, "|"), func(w string) bool {
					return strings.Contains(strings.ReplaceAll(res.Err.Error(), "timed out", "timeout"), w)
				}) {
					t.Fatalf("error %v, want one about %q", res.Err, tc.want)
				}
				if sr.Verdict.Action != onError {
					t.Errorf("verdict %v, want on_error %v", sr.Verdict, onError)
				}
				if elapsed > timeout+time.Second {
					t.Errorf("took %v, timeout %v", elapsed, timeout)
				}
			})
		}
	}
}

// TestMaxReplySize: a reply of exactly max_reply_size bytes is read, one
// byte more is refused.
func TestMaxReplySize(t *testing.T) {
	registrytest.CheckLeaks(t)
	const limit = 64
	for _, tc := range []struct {
		name    string
		virus   int // length of the virus name, making the reply that long
		wantErr bool
	}{
		{"at limit", limit - len("stream: ") - len(" FOUND"), false},
		{"one over", limit - len("stream: ") - len(" FOUND") + 1, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reply := "stream: " + strings.Repeat("V", tc.virus) + " FOUND"
			f := registrytest.NewServer(t, func(c net.Conn) {
				_, _ = readCommand(c)
				_, _ = drainStream(c)
				_, _ = c.Write([]byte(reply + "\x00"))
			})
			cfg := DefaultConfig()
			cfg.Servers = []string{f.Addr()}
			cfg.MaxReplySize = limit
			cfg.MaxIdleConns = 0
			s, err := New(cfg, registry.Host{})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			sr, err := s.ScanMessage(context.Background(), sizedMessage(t, 100))
			if (err != nil) != tc.wantErr {
				t.Fatalf("reply of %d bytes: %+v, %v", len(reply), sr, err)
			}
		})
	}
}

// TestStaleSession: clamd closes an idle IDSESSION connection; the next
// scan notices before any reply and retries once on a new connection.
func TestStaleSession(t *testing.T) {
	registrytest.CheckLeaks(t)
	f := registrytest.NewServer(t, func(c net.Conn) {
		if cmd, _ := readCommand(c); cmd != "zIDSESSION" {
			return
		}
		_, _ = readCommand(c)
		_, _ = drainStream(c)
		_, _ = c.Write([]byte("1: stream: OK\x00"))
		// then hang up, as clamd does after its IdleTimeout
	})
	cfg := DefaultConfig()
	cfg.Servers = []string{f.Addr()}
	cfg.CacheSize = 0
	s, err := New(cfg, registry.Host{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i := range 3 {
		sr, err := s.ScanMessage(context.Background(), sizedMessage(t, 100))
		if err != nil || sr.Status != registry.StatusClean {
			t.Fatalf("scan %d: %+v, %v", i, sr, err)
		}
	}
	if got := f.Accepts(); got != 3 {
		t.Errorf("fake saw %d connections, want 3 (each scan's pooled connection was stale)", got)
	}
}

// TestSessionReuse: with the real clamd, consecutive scans share one
// IDSESSION connection.
func TestSessionReuse(t *testing.T) {
	tcp := testenv.Require(t, testenv.Clamd)
	registrytest.CheckLeaks(t)
	var dials atomic.Int32
	// A loopback relay in front of clamd counts connections.
	relay := registrytest.NewServer(t, func(c net.Conn) {
		dials.Add(1)
		up, err := net.Dial("tcp", tcp)
		if err != nil {
			return
		}
		defer up.Close()
		go func() { _, _ = io.Copy(up, c); up.Close() }()
		_, _ = io.Copy(c, up)
	})
	cfg := DefaultConfig()
	cfg.Servers = []string{relay.Addr()}
	cfg.CacheSize = 0
	s, err := New(cfg, registry.Host{})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"clean.eml", "eicar-plain.eml", "clean.eml", "eicar-base64.eml"} {
		if _, err := s.ScanMessage(context.Background(), readMessage(t, name)); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	if got := dials.Load(); got != 1 {
		t.Errorf("%d connections for 4 scans, want 1", got)
	}
}

// The tests below show the defects of github.com/dutchcoders/go-clamd that
// made us write client.go (see README.md, "Why not go-clamd").

// TestGoClamdLeaksGoroutines: ScanStream starts a goroutine that waits on
// the abort channel and never ends unless the caller closes it, even after
// a successful scan whose result was read (upstream issue #9).
func TestGoClamdLeaksGoroutines(t *testing.T) {
	tcp := testenv.Require(t, testenv.Clamd)
	c := clamd.NewClamd("tcp://" + tcp)
	abort := make(chan bool)
	defer close(abort) // ends the leaked goroutines when the test is over
	const scans = 5
	before := countStacks("go-clamd.(*Clamd).ScanStream")
	for range scans {
		ch, err := c.ScanStream(bytes.NewReader(clamd.EICAR), abort)
		if err != nil {
			t.Fatal(err)
		}
		for r := range ch { // read every result: the reader goroutine ends
			if r.Status != clamd.RES_FOUND {
				t.Fatalf("go-clamd: %+v", r)
			}
		}
	}
	// One goroutine per scan blocks on abort forever; a second one per scan
	// (closing the connection) may still be on its way out.
	if leaked := countStacks("go-clamd.(*Clamd).ScanStream") - before; leaked < scans {
		t.Fatalf("go-clamd left %d goroutines after %d finished scans, want at least %d (defect fixed upstream?)", leaked, scans, scans)
	}
}

// TestGoClamdHasNoDeadline: against a server that accepts and never
// answers, go-clamd's result channel stays silent (it has no context and
// sets no read deadline), while our client returns at its deadline.
func TestGoClamdHasNoDeadline(t *testing.T) {
	f := registrytest.NewServer(t, func(c net.Conn) { _, _ = io.Copy(io.Discard, c) })
	abort := make(chan bool)
	defer close(abort)
	ch, err := clamd.NewClamd("tcp://"+f.Addr()).ScanStream(bytes.NewReader([]byte("hello")), abort)
	if err != nil {
		t.Fatal(err)
	}
	const bound = 500 * time.Millisecond
	ours := make(chan error, 1)
	go func() {
		cfg := DefaultConfig()
		cfg.Servers = []string{f.Addr()}
		s, _ := New(cfg, registry.Host{})
		ctx, cancel := context.WithTimeout(context.Background(), bound/5)
		defer cancel()
		_, err := s.ScanMessage(ctx, sizedMessage(t, 100))
		ours <- err
	}()
	select {
	case r := <-ch:
		t.Fatalf("go-clamd answered %+v from a silent server (defect fixed upstream?)", r)
	case err := <-ours:
		if err == nil {
			t.Fatal("our client reported success from a silent server")
		}
	case <-time.After(bound):
		t.Fatal("neither client returned")
	}
	f.Close() // unblocks go-clamd's reader
}

// TestGoClamdIgnoresWriteErrors: the server hangs up after the command;
// go-clamd keeps reading the whole input and writing it into the dead
// connection (sendChunk's and ScanStream's write errors are dropped). Our
// client stops at the first failed write.
func TestGoClamdIgnoresWriteErrors(t *testing.T) {
	hangup := func(c net.Conn) {
		_, _ = c.Read(make([]byte, 16))
		c.(*net.TCPConn).SetLinger(0) // reset: later writes fail at once
	}
	const size = 8 << 20
	f := registrytest.NewServer(t, hangup)
	abort := make(chan bool)
	defer close(abort)
	var read countingReader
	read.r = bytes.NewReader(make([]byte, size))
	_, err := clamd.NewClamd("tcp://"+f.Addr()).ScanStream(&read, abort)
	if err == nil {
		t.Fatal("go-clamd: no error from a dead connection")
	}
	if read.n != size {
		t.Fatalf("go-clamd read %d of %d bytes after the server hung up, want all of them (defect fixed upstream?)", read.n, size)
	}

	cfg := DefaultConfig()
	cfg.Servers = []string{registrytest.NewServer(t, hangup).Addr()}
	cfg.MaxIdleConns = 0
	cfg.MaxSize = size * 2
	s, _ := New(cfg, registry.Host{})
	cn, err := s.client.dial(context.Background(), s.client.servers[0].srv)
	if err != nil {
		t.Fatal(err)
	}
	defer cn.Close()
	w := &countingConn{Conn: cn}
	werr := s.client.writeStream(&conn{Conn: w}, make([]byte, size))
	if werr == nil || w.n >= size {
		t.Fatalf("our client wrote %d of %d bytes, error %v: want it to stop early with an error", w.n, size, werr)
	}
}

type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

type countingConn struct {
	net.Conn
	n int
}

func (c *countingConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.n += n
	return n, err
}

// countStacks counts goroutines other than the caller whose stack contains fn.
func countStacks(fn string) int {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	n := 0
	for _, s := range strings.Split(string(buf), "\n\n")[1:] { // [0] is the caller
		if strings.Contains(s, fn) {
			n++
		}
	}
	return n
}
