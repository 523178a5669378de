package clamav

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"

	"github.com/elemta/elemta/pkg/headerfold"
	"github.com/elemta/elemta/pluginhost"
	"github.com/elemta/elemta/registry"
	"github.com/elemta/elemta/registry/registrytest"
)

// TestLimitsFaults: limit replies that the test clamd cannot produce
// cheaply, from a fake clamd. on_error is accept throughout: a limit must
// never fall through to it.
func TestLimitsFaults(t *testing.T) {
	registrytest.CheckLeaks(t)
	long := LimitsPrefix + strings.Repeat("L", 200)
	cases := []struct {
		name      string
		reply     string // after "stream: ", before " FOUND"
		early     bool   // reply at once, before the stream is read, and hang up
		msgSize   int
		wantLimit string
	}{
		{"MaxScanTime", LimitsPrefix + "MaxScanTime", false, 4096, "MaxScanTime"},
		{"email limit", LimitsPrefix + "EmailMIMEPartsPerMessage", false, 4096, "EmailMIMEPartsPerMessage"},
		{"no limit named", LimitsPrefix, false, 4096, "scan limits"},
		{"long name", long, false, 4096, strings.Repeat("L", maxLimitName)},
		{"before the whole stream was sent", LimitsPrefix + "MaxScanSize", true, 16 << 20, "MaxScanSize"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := registrytest.NewServer(t, func(c net.Conn) {
				if _, err := readCommand(c); err != nil {
					return
				}
				if !tc.early {
					if _, err := drainStream(c); err != nil {
						return
					}
				}
				_, _ = c.Write([]byte("stream: " + tc.reply + " FOUND\x00"))
			})
			doc := fmt.Sprintf("[plugins]\nplugins = [\"clamav\"]\n[plugins.clamav]\nservers = [%q]\ntimeout = 5\non_error = \"accept\"\nmax_idle_conns = 0\nadd_headers = true\n", f.Addr())
			m := registrytest.Load(t, doc, registry.Host{Hostname: "mx.example.test"})
			pc := registry.NewProcessingContext(sizedMessage(t, tc.msgSize), nil)
			sr, err := m.ExecuteStage(context.Background(), registry.PostReception, pc)
			if err != nil {
				t.Fatal(err)
			}
			res := sr.Results[0]
			if res.Err != nil || sr.Verdict.Action != registry.Quarantine {
				t.Fatalf("verdict %v, error %v; want quarantine (on_limits_exceeded), no error", sr.Verdict, res.Err)
			}
			if want := "Unscanned (" + tc.wantLimit + " exceeded)"; headerfold.Unfold(fieldValue(sr.AddHeaders, "X-Virus-Status")) != want {
				t.Errorf("X-Virus-Status %q, want %q", fieldValue(sr.AddHeaders, "X-Virus-Status"), want)
			}
			if !strings.Contains(res.Details, tc.reply) {
				t.Errorf("details %q do not name %q", res.Details, tc.reply)
			}
		})
	}
}

// TestLimitsKeepSession: a limit reply is a normal answer in an IDSESSION:
// the connection stays pooled and serves the next scan.
func TestLimitsKeepSession(t *testing.T) {
	registrytest.CheckLeaks(t)
	f := registrytest.NewServer(t, func(c net.Conn) {
		if cmd, err := readCommand(c); err != nil || cmd != "zIDSESSION" {
			return
		}
		for id := 1; ; id++ {
			cmd, err := readCommand(c)
			if err != nil || cmd != "zINSTREAM" {
				return
			}
			if _, err := drainStream(c); err != nil {
				return
			}
			if _, err := fmt.Fprintf(c, "%d: stream: %sMaxRecursion FOUND\x00", id, LimitsPrefix); err != nil {
				return
			}
		}
	})
	cfg := DefaultConfig()
	cfg.Servers = []string{f.Addr()}
	cfg.MaxIdleConns = 1
	s, err := New(cfg, registry.Host{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		_, err := s.ScanMessage(context.Background(), sizedMessage(t, 1024+i))
		var le *LimitError
		if !errors.As(err, &le) || le.Limit() != "MaxRecursion" || le.Server != "tcp:"+f.Addr() {
			t.Fatalf("scan %d: %v, want a LimitError for MaxRecursion from %s", i, err, f.Addr())
		}
	}
	if s.cache.c.Len() != 0 {
		t.Errorf("%d results cached, want none", s.cache.c.Len())
	}
	s.Close()
	if got := f.Accepts(); got != 1 {
		t.Errorf("%d connections for 3 scans, want 1", got)
	}
}

// TestLimitsConfig: config check reports a bad on_limits_exceeded with the
// file, the key and the valid values; on_size_limit follows it by default.
func TestLimitsConfig(t *testing.T) {
	_, err := pluginhost.ParseConfig("elemta.toml", []byte("[plugins]\nplugins = [\"clamav\"]\n[plugins.clamav]\non_limits_exceeded = \"drop\"\n"))
	for _, want := range []string{"elemta.toml", "on_limits_exceeded", `unknown action "drop"`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("ParseConfig error %v, want one naming %s", err, want)
		}
	}
	for _, tc := range []struct {
		doc    string
		action registry.Action
		isErr  bool
	}{
		{"", registry.Quarantine, false},
		{"on_limits_exceeded = \"reject\"\n", registry.Reject, false},
		{"on_limits_exceeded = \"reject\"\non_size_limit = \"tempfail\"\n", registry.TempFail, false},
		{"on_size_limit = \"error\"\n", 0, true},
	} {
		c, _ := registrytest.Settings[Config](t, "[plugins]\nplugins = [\"clamav\"]\n[plugins.clamav]\n"+tc.doc, "clamav")
		s, err := New(*c, registry.Host{})
		if err != nil {
			t.Fatal(err)
		}
		if s.sizeIsErr != tc.isErr || (!tc.isErr && s.sizeAction != tc.action) {
			t.Errorf("%q: size limit action %v (error %v), want %v (error %v)", tc.doc, s.sizeAction, s.sizeIsErr, tc.action, tc.isErr)
		}
	}
}
