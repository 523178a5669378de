package clamav

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/elemta/elemta/pkg/testenv"
	"github.com/elemta/elemta/registry"
	"github.com/elemta/elemta/registry/registrytest"
)

// TestRealClamd runs the plugin through the executor at post-reception
// against the real clamd, over TCP and the unix socket, with and without
// pooled sessions.
func TestRealClamd(t *testing.T) {
	tcp := testenv.Require(t, testenv.Clamd)
	sock := testenv.Require(t, testenv.ClamdSocket)
	registrytest.CheckLeaks(t)
	transports := []struct{ name, key, addr string }{
		{"tcp", "servers", fmt.Sprintf("[%q]", tcp)},
		{"unix", "socket", fmt.Sprintf("%q", sock)},
	}
	messages := []struct {
		file    string
		status  registry.Status
		action  registry.Action
		virus   string
		xStatus string
	}{
		{"clean.eml", registry.StatusClean, registry.Accept, "", "Clean"},
		{"eicar-plain.eml", registry.StatusInfected, registry.Reject, "Eicar-Test-Signature", "Infected (Eicar-Test-Signature"},
		{"eicar-base64.eml", registry.StatusInfected, registry.Reject, "Eicar-Test-Signature", "Infected (Eicar-Test-Signature"},
	}
	for _, tr := range transports {
		for _, idle := range []int{0, 2} {
			t.Run(fmt.Sprintf("%s/max_idle_conns=%d", tr.name, idle), func(t *testing.T) {
				doc := fmt.Sprintf("[plugins]\nplugins = [\"clamav\"]\n[plugins.clamav]\n%s = %s\ntimeout = 10\nmax_idle_conns = %d\nadd_headers = true\ncache_size = 0\n", tr.key, tr.addr, idle)
				m := registrytest.Load(t, doc, registry.Host{Hostname: "mx.example.test"})
				for _, tc := range messages {
					t.Run(tc.file, func(t *testing.T) {
						pc := registry.NewProcessingContext(readMessage(t, tc.file), nil)
						sr, err := m.ExecuteStage(context.Background(), registry.PostReception, pc)
						if err != nil {
							t.Fatal(err)
						}
						res, ok := pc.Result("clamav")
						if !ok || res.Err != nil {
							t.Fatalf("clamav result %+v", res)
						}
						scan, ok := registry.Find[*registry.ScanResult](pc)
						if !ok || scan.Status != tc.status {
							t.Fatalf("scan result %+v, want status %s", scan, tc.status)
						}
						if tc.virus != "" && (len(scan.Threats) != 1 || !strings.HasPrefix(scan.Threats[0], tc.virus)) {
							t.Errorf("threats %v, want %s*", scan.Threats, tc.virus)
						}
						if sr.Verdict.Action != tc.action {
							t.Errorf("verdict %v, want %v", sr.Verdict, tc.action)
						}
						if tc.action == registry.Reject {
							if code, enh, _ := sr.Verdict.Reply(); code != 554 || enh != "5.7.1" {
								t.Errorf("reply %d %s, want 554 5.7.1", code, enh)
							}
						}
						if got := fieldValue(sr.AddHeaders, "X-Virus-Status"); !strings.HasPrefix(got, tc.xStatus) {
							t.Errorf("X-Virus-Status %q, want %q...", got, tc.xStatus)
						}
						if got := fieldValue(sr.AddHeaders, "X-Virus-Scanned"); got != "ClamAV on mx.example.test" {
							t.Errorf("X-Virus-Scanned %q", got)
						}
					})
				}
			})
		}
	}
}

func fieldValue(fs []registry.Field, name string) string {
	for _, f := range fs {
		if f.Name == name {
			return f.Value
		}
	}
	return ""
}

// TestHealthCheck pings the real clamd (PING and VERSION) and a dead one.
func TestHealthCheck(t *testing.T) {
	tcp := testenv.Require(t, testenv.Clamd)
	registrytest.CheckLeaks(t)
	dead := closedPort(t)
	for _, tc := range []struct {
		name    string
		servers string
		wantErr bool
	}{
		{"up", fmt.Sprintf("[%q]", tcp), false},
		{"one of two up", fmt.Sprintf("[%q, %q]", dead, tcp), false},
		{"down", fmt.Sprintf("[%q]", dead), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := registrytest.Load(t, "[plugins]\nplugins = [\"clamav\"]\n[plugins.clamav]\nservers = "+tc.servers+"\ntimeout = 5\n", registry.Host{})
			err := m.HealthCheck(context.Background(), "clamav")
			if (err != nil) != tc.wantErr {
				t.Fatalf("HealthCheck = %v, want error %v", err, tc.wantErr)
			}
		})
	}
	s, err := New(DefaultConfig(), registry.Host{})
	if err != nil {
		t.Fatal(err)
	}
	v, err := s.Version(context.Background(), server{"tcp", tcp})
	if err != nil || !strings.HasPrefix(v, "ClamAV ") {
		t.Fatalf("Version = %q, %v", v, err)
	}
}

// TestFailover: the first server is down; the scan goes to the second and
// the first is tried last until retry_after has passed on the host clock.
func TestFailover(t *testing.T) {
	tcp := testenv.Require(t, testenv.Clamd)
	registrytest.CheckLeaks(t)
	dead := registrytest.NewServer(t, func(c net.Conn) {}) // accepts and hangs up at once
	clock := newFakeClock()
	cfg := DefaultConfig()
	cfg.Servers = []string{dead.Addr(), tcp}
	cfg.CacheSize = 0
	cfg.RetryAfter = registry.Duration(10 * time.Second)
	s, err := New(cfg, registry.Host{Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	msg := readMessage(t, "eicar-plain.eml")
	steps := []struct {
		advance     time.Duration
		wantAccepts int // connections the dead server has seen after the scan
	}{
		{0, 1},               // tried first, fails, marked down
		{5 * time.Second, 1}, // still down: clamd answers without trying it
		{5 * time.Second, 2}, // retry_after passed: tried again
		{time.Nanosecond, 2}, // marked down again
	}
	for i, st := range steps {
		clock.Add(st.advance)
		sr, err := s.ScanMessage(context.Background(), msg)
		if err != nil || sr.Status != registry.StatusInfected {
			t.Fatalf("step %d: %+v, %v", i, sr, err)
		}
		if got := dead.Accepts(); got != st.wantAccepts {
			t.Errorf("step %d: dead server saw %d connections, want %d", i, got, st.wantAccepts)
		}
	}
}

// TestCache: a message scanned once is answered from the cache until the
// TTL passes on the host clock; trace fields added later do not change the key.
func TestCache(t *testing.T) {
	tcp := testenv.Require(t, testenv.Clamd)
	registrytest.CheckLeaks(t)
	clock := newFakeClock()
	cfg := DefaultConfig()
	cfg.Servers = []string{tcp}
	cfg.CacheTTL = registry.Duration(time.Hour)
	s, err := New(cfg, registry.Host{Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	msg := readMessage(t, "eicar-base64.eml")
	if _, cached, err := s.scan(context.Background(), msg); err != nil || cached {
		t.Fatalf("before Start (database version unknown): cached %v, %v; want a scan", cached, err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-s.cache.known:
	case <-time.After(10 * time.Second):
		t.Fatal("clamd's database version not known 10s after Start")
	}
	delivered := parse(t, append([]byte("Received: from mx.example.test by mx2.example.test; Wed, 25 Nov 2026 10:00:01 +0000\r\n"), msg.Raw...))
	steps := []struct {
		msg        *registry.Message
		advance    time.Duration
		wantCached bool
	}{
		{msg, 0, false},
		{msg, time.Hour - time.Nanosecond, true},
		{delivered, 0, true},
		{delivered, time.Nanosecond, false}, // exactly the TTL after the first scan: expired
	}
	for i, st := range steps {
		clock.Add(st.advance)
		sr, cached, err := s.scan(context.Background(), st.msg)
		if err != nil || sr.Status != registry.StatusInfected {
			t.Fatalf("step %d: %+v, %v", i, sr, err)
		}
		if cached != st.wantCached {
			t.Errorf("step %d: cached = %v, want %v", i, cached, st.wantCached)
		}
	}
}

// TestSizeLimit covers max_size at its boundary (checked before any I/O)
// and clamd's own StreamMaxLength (25M in the test environment), each with
// on_size_limit as an action and as "error" (then on_error applies).
func TestSizeLimit(t *testing.T) {
	tcp := testenv.Require(t, testenv.Clamd)
	registrytest.CheckLeaks(t)
	small := sizedMessage(t, 4096)
	huge := sizedMessage(t, 26<<20) // over clamd's StreamMaxLength 25M
	cases := []struct {
		name        string
		maxSize     int
		onSizeLimit string
		msg         *registry.Message
		wantAction  registry.Action
		wantErr     bool
	}{
		{"at max_size", 4096, "reject", small, registry.Accept, false},
		{"one byte over max_size, action", 4095, "reject", small, registry.Reject, false},
		{"one byte over max_size, error", 4095, "error", small, registry.TempFail, true},
		{"over clamd's limit, action", 64 << 20, "quarantine", huge, registry.Quarantine, false},
		{"over clamd's limit, error", 64 << 20, "error", huge, registry.TempFail, true},
		{"one byte over max_size, default: on_limits_exceeded", 4095, "", small, registry.Quarantine, false},
		{"over clamd's limit, default: on_limits_exceeded", 64 << 20, "", huge, registry.Quarantine, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			doc := fmt.Sprintf("[plugins]\nplugins = [\"clamav\"]\n[plugins.clamav]\nservers = [%q]\ntimeout = 20\non_error = \"tempfail\"\nmax_size = %d\n",
				tcp, tc.maxSize)
			if tc.onSizeLimit != "" {
				doc += fmt.Sprintf("on_size_limit = %q\n", tc.onSizeLimit)
			}
			m := registrytest.Load(t, doc, registry.Host{})
			start := time.Now()
			sr, err := m.ExecuteStage(context.Background(), registry.PostReception, registry.NewProcessingContext(tc.msg, nil))
			if err != nil {
				t.Fatal(err)
			}
			res := sr.Results[0]
			if sr.Verdict.Action != tc.wantAction || (res.Err != nil) != tc.wantErr {
				t.Fatalf("verdict %v err %v, want %v (error %v)", sr.Verdict, res.Err, tc.wantAction, tc.wantErr)
			}
			if tc.wantErr && !errors.Is(res.Err, ErrSizeLimit) {
				t.Errorf("error %v does not wrap ErrSizeLimit", res.Err)
			}
			if d := time.Since(start); d > 15*time.Second {
				t.Errorf("took %v", d)
			}
		})
	}
}

// TestChunkSize streams EICAR split across chunk boundaries with the
// smallest chunk size allowed.
func TestChunkSize(t *testing.T) {
	tcp := testenv.Require(t, testenv.Clamd)
	eicar := readMessage(t, "eicar-plain.eml")
	for _, chunk := range []int{MinChunkSize, 100 + MinChunkSize, 64 << 10} {
		t.Run(fmt.Sprint(chunk), func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.Servers = []string{tcp}
			cfg.ChunkSize = chunk
			cfg.CacheSize = 0
			s, err := New(cfg, registry.Host{})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			pad := strings.Repeat("padding line to move the test string over a chunk boundary\r\n", chunk/60)
			raw := strings.Replace(string(eicar.Raw), "\r\n\r\n", "\r\n\r\n"+pad[:len(pad)-30]+"\r\n", 1)
			sr, err := s.ScanMessage(context.Background(), parse(t, []byte(raw)))
			if err != nil || sr.Status != registry.StatusInfected {
				t.Fatalf("%+v, %v", sr, err)
			}
		})
	}
}

// TestSeedConfig: the design's example table loads as written.
func TestSeedConfig(t *testing.T) {
	doc := "[plugins]\nenabled = true\nplugins = [\"clamav\"]\n\n[plugins.clamav]\nsocket = \"/var/run/clamav/clamd.ctl\"\ntimeout = 30\n"
	c, pc := registrytest.Settings[Config](t, doc, "clamav")
	if c.Socket != "/var/run/clamav/clamd.ctl" || c.Timeout.D() != 30*time.Second || pc.Timeout != 30*time.Second {
		t.Fatalf("decoded %+v, executor timeout %v", c, pc.Timeout)
	}
	if _, err := New(*c, registry.Host{}); err != nil {
		t.Fatal(err)
	}
}

func TestConfigValidation(t *testing.T) {
	cases := []struct {
		name    string
		change  func(*Config)
		wantErr string
	}{
		{"defaults", func(*Config) {}, ""},
		{"chunk_size at minimum", func(c *Config) { c.ChunkSize = MinChunkSize }, ""},
		{"chunk_size below minimum", func(c *Config) { c.ChunkSize = MinChunkSize - 1 }, "chunk_size"},
		{"chunk_size at maximum", func(c *Config) { c.ChunkSize = MaxChunkSize }, ""},
		{"chunk_size above maximum", func(c *Config) { c.ChunkSize = MaxChunkSize + 1 }, "chunk_size"},
		{"max_size 0", func(c *Config) { c.MaxSize = 0 }, "max_size"},
		{"max_size 1", func(c *Config) { c.MaxSize = 1 }, ""},
		{"max_size 4G", func(c *Config) { c.MaxSize = 1<<32 - 1 }, ""},
		{"max_size over 4G", func(c *Config) { c.MaxSize = 1 << 32 }, "max_size"},
		{"max_reply_size at minimum", func(c *Config) { c.MaxReplySize = MinMaxReply }, ""},
		{"max_reply_size below", func(c *Config) { c.MaxReplySize = MinMaxReply - 1 }, "max_reply_size"},
		{"max_idle_conns negative", func(c *Config) { c.MaxIdleConns = -1 }, "max_idle_conns"},
		{"on_size_limit unknown", func(c *Config) { c.OnSizeLimit = "drop" }, "on_size_limit"},
		{"on_size_limit error", func(c *Config) { c.OnSizeLimit = "Error" }, ""},
		{"on_size_limit action", func(c *Config) { c.OnSizeLimit = "reject" }, ""},
		{"on_limits_exceeded reject", func(c *Config) { c.OnLimitsExceeded = registry.Reject }, ""},
		{"on_limits_exceeded out of range", func(c *Config) { c.OnLimitsExceeded = registry.Reject + 1 }, "on_limits_exceeded"},
		{"on_limits_exceeded negative", func(c *Config) { c.OnLimitsExceeded = -1 }, "on_limits_exceeded"},
		{"bad server", func(c *Config) { c.Servers = []string{"clamd"} }, "clamd address"},
		{"bad port", func(c *Config) { c.Servers = []string{"127.0.0.1:0"} }, "port"},
		{"unix server", func(c *Config) { c.Servers = []string{"unix:/run/clamd.sock", "tcp://[::1]:3310"} }, ""},
		{"timeout zero", func(c *Config) { c.Timeout = 0 }, "timeout"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			tc.change(&cfg)
			_, err := New(cfg, registry.Host{})
			if tc.wantErr == "" && err != nil {
				t.Fatalf("New: %v", err)
			}
			if tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("New: %v, want an error about %s", err, tc.wantErr)
			}
		})
	}
}

func TestParseScanReply(t *testing.T) {
	cases := []struct {
		line     string
		id       int
		infected bool
		virus    string
		wantErr  error
	}{
		{"stream: OK", 0, false, "", nil},
		{"stream: Eicar-Test-Signature FOUND", 0, true, "Eicar-Test-Signature", nil},
		{"3: stream: Win.Test.EICAR_HDB-1 FOUND", 3, true, "Win.Test.EICAR_HDB-1", nil},
		{"2: stream: OK", 3, false, "", ErrReply},
		{"INSTREAM size limit exceeded. ERROR", 0, false, "", ErrSizeLimit},
		{"INSTREAM size limit exceeded. ERROR", 4, false, "", ErrSizeLimit},
		{"stream: Evil\r\nX-Virus-Status: Clean FOUND", 0, true, "Evil??X-Virus-Status: Clean", nil},
		{"stream: FOUND", 0, false, "", ErrReply},
		{"stream: Heuristics.Limits.Exceeded.MaxRecursion FOUND", 0, false, "", nil},
		{"2: stream: Heuristics.Limits.Exceeded.MaxScanTime FOUND", 2, false, "", nil},
		{"stream: Heuristics.Limits.Exceed FOUND", 0, true, "Heuristics.Limits.Exceed", nil}, // not the family: a signature
		{"PONG", 0, false, "", ErrReply},
		{"", 0, false, "", ErrReply},
	}
	for _, tc := range cases {
		t.Run(tc.line, func(t *testing.T) {
			rep, err := parseScanReply(tc.line, tc.id)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil || rep.Infected != tc.infected || (tc.infected && rep.Viruses[0] != tc.virus) {
				t.Fatalf("%+v, %v", rep, err)
			}
			if exceeded := strings.Contains(tc.line, LimitsPrefix); rep.Exceeded != exceeded || (exceeded && rep.Infected) {
				t.Fatalf("%+v: Exceeded want %v, and never Infected with it", rep, exceeded)
			}
		})
	}
}
