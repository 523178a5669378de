package rspamd

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/elemta/elemta/pkg/headerfold"
	"github.com/elemta/elemta/pkg/testenv"
	"github.com/elemta/elemta/registry"
	"github.com/elemta/elemta/registry/registrytest"
)

// TestRealRspamd runs the plugin through the executor at post-reception
// against the real rspamd.
func TestRealRspamd(t *testing.T) {
	url := testenv.Require(t, testenv.Rspamd)
	registrytest.CheckLeaks(t)
	failEnv := testEnvelope
	failEnv.MailFrom = "alice@fail.example.test"
	cases := []struct {
		name        string
		file        string
		env         registry.Envelope
		extra       string // more config
		wantAction  registry.Action
		wantText    string
		wantScore   func(float64) bool
		wantSymbol  string
		wantHeaders []string // added fields, by name
	}{
		{name: "GTUBE rejects", file: "gtube.eml", env: testEnvelope, wantAction: registry.Reject, wantText: "Gtube pattern",
			wantScore: func(s float64) bool { return s >= 15 }, wantSymbol: "GTUBE"},
		{name: "normal mail accepted with a score", file: "normal.eml", env: testEnvelope, wantAction: registry.Accept,
			wantScore: func(s float64) bool { return s != 0 && s < 5 }, wantSymbol: "R_SPF_ALLOW"},
		// SPF fail plus DMARC p=reject for From: scores "add header" in rspamd's default config.
		{name: "envelope reaches rspamd (SPF fail): add header", file: "normal.eml", env: failEnv, wantAction: registry.Accept,
			wantScore: func(s float64) bool { return s > 5 }, wantSymbol: "R_SPF_FAIL", wantHeaders: []string{"X-Spam", "X-Spam-Score", "X-Spam-Action"}},
		{name: "add header mapped to quarantine", file: "spammy.eml", env: failEnv, extra: "actions = { \"add header\" = \"quarantine\" }\n",
			wantAction: registry.Quarantine, wantScore: func(s float64) bool { return s > 5 }, wantSymbol: "MISSING_MID", wantHeaders: []string{"X-Spam", "X-Spam-Score", "X-Spam-Action"}},
		{name: "add header without spam headers", file: "spammy.eml", env: failEnv, extra: "spam_headers = false\n",
			wantAction: registry.Accept, wantScore: func(s float64) bool { return s > 5 }, wantSymbol: "MISSING_MID"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := registrytest.Load(t, fmt.Sprintf("[plugins]\nplugins = [\"rspamd\"]\n[plugins.rspamd]\nurl = %q\ntimeout = 10\n%s", url, tc.extra), testHost)
			pc := registry.NewProcessingContext(message(t, readFile(t, tc.file), tc.env), &registry.Session{ID: "4Q7x1"})
			sr, err := m.ExecuteStage(context.Background(), registry.PostReception, pc)
			if err != nil {
				t.Fatal(err)
			}
			res := sr.Results[0]
			if res.Err != nil {
				t.Fatal(res.Err)
			}
			if sr.Verdict.Action != tc.wantAction {
				t.Errorf("verdict %v, want %v (%s)", sr.Verdict, tc.wantAction, res.Details)
			}
			if _, _, text := sr.Verdict.Reply(); tc.wantText != "" && text != tc.wantText {
				t.Errorf("reply text %q, want %q", text, tc.wantText)
			}
			scan, ok := registry.Find[*registry.ScanResult](pc)
			if !ok || scan.Score != res.Score || !tc.wantScore(res.Score) || sr.Score != res.Score {
				t.Errorf("score %v (scan result %+v, stage %v)", res.Score, scan, sr.Score)
			}
			if !slices.Contains(scan.Threats, tc.wantSymbol) {
				t.Errorf("symbols %v, want %s among them", scan.Threats, tc.wantSymbol)
			}
			var added []string
			for _, f := range sr.AddHeaders {
				added = append(added, f.Name)
			}
			if !slices.Equal(added, tc.wantHeaders) {
				t.Errorf("added %v, want %v", added, tc.wantHeaders)
			}
		})
	}
}

// TestAntispamInterface uses the plugin as the original module did.
func TestAntispamInterface(t *testing.T) {
	url := testenv.Require(t, testenv.Rspamd)
	registrytest.CheckLeaks(t)
	m := registrytest.Load(t, fmt.Sprintf("[plugins]\nplugins = [\"rspamd\"]\n[plugins.rspamd]\nurl = %q\n", url), testHost)
	as, err := m.GetAntispamPlugin("rspamd")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		file   string
		status registry.Status
	}{{"gtube.eml", registry.StatusInfected}, {"normal.eml", registry.StatusClean}} {
		t.Run(tc.file, func(t *testing.T) {
			msg := message(t, readFile(t, tc.file), testEnvelope)
			sr, err := as.ScanMessage(context.Background(), msg)
			if err != nil || sr.Status != tc.status || len(sr.Threats) == 0 {
				t.Fatalf("ScanMessage = %+v, %v; want %s with symbols", sr, err, tc.status)
			}
			score, err := as.GetScore(context.Background(), msg)
			if err != nil || score != sr.Score {
				t.Fatalf("GetScore = %v, %v; ScanMessage said %v", score, err, sr.Score)
			}
		})
	}
	if err := m.HealthCheck(context.Background(), "rspamd"); err != nil {
		t.Errorf("HealthCheck: %v", err)
	}
}

// TestKeepAlive: consecutive checks share one connection when the server
// keeps it open. rspamd 3.4's normal worker answers every request with
// "Connection: close", so against it each check is a connection of its own;
// the test pins that down so a change in rspamd shows up here.
func TestKeepAlive(t *testing.T) {
	upstream := strings.TrimPrefix(testenv.Require(t, testenv.Rspamd), "http://")
	registrytest.CheckLeaks(t)
	_, keepAlive := startCapture(t, 200, []byte(`{"action":"no action","score":0.5,"required_score":15,"symbols":{}}`))
	for _, tc := range []struct {
		name      string
		upstream  string
		wantDials int32
	}{
		{"server keeping connections open", strings.TrimPrefix(keepAlive, "http://"), 1},
		{"rspamd 3.4 (Connection: close)", upstream, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var dials atomic.Int32
			relay := startRaw(t, func(c net.Conn) {
				dials.Add(1)
				up, err := net.Dial("tcp", tc.upstream)
				if err != nil {
					return
				}
				defer up.Close()
				go func() { _, _ = io.Copy(up, c); up.Close() }()
				_, _ = io.Copy(c, up)
			})
			m := registrytest.Load(t, fmt.Sprintf("[plugins]\nplugins = [\"rspamd\"]\n[plugins.rspamd]\nurl = %q\n", relay.url()), testHost)
			for i, f := range []string{"normal.eml", "gtube.eml", "normal.eml", "spammy.eml"} {
				sr, err := m.ExecuteStage(context.Background(), registry.PostReception, registry.NewProcessingContext(message(t, readFile(t, f), testEnvelope), nil))
				if err != nil || sr.Results[0].Err != nil {
					t.Fatalf("check %d: %v %v", i, err, sr.Results[0].Err)
				}
			}
			if got := dials.Load(); got != tc.wantDials {
				t.Errorf("%d connections for 4 checks, want %d", got, tc.wantDials)
			}
		})
	}
}

// TestMaxSize: a message of max_size bytes is checked by the real rspamd;
// one byte more gets on_size_limit without being sent.
func TestMaxSize(t *testing.T) {
	url := testenv.Require(t, testenv.Rspamd)
	registrytest.CheckLeaks(t)
	raw := readFile(t, "normal.eml")
	for _, tc := range []struct {
		name        string
		maxSize     int
		onSizeLimit string
		wantAction  registry.Action
		wantErr     bool
	}{
		{"at max_size", len(raw), "reject", registry.Accept, false},
		{"one over, action", len(raw) - 1, "reject", registry.Reject, false},
		{"one over, error", len(raw) - 1, "error", registry.TempFail, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := registrytest.Load(t, fmt.Sprintf("[plugins]\nplugins = [\"rspamd\"]\n[plugins.rspamd]\nurl = %q\nmax_size = %d\non_size_limit = %q\non_error = \"tempfail\"\n",
				url, tc.maxSize, tc.onSizeLimit), testHost)
			sr, err := m.ExecuteStage(context.Background(), registry.PostReception, registry.NewProcessingContext(message(t, raw, testEnvelope), nil))
			if err != nil {
				t.Fatal(err)
			}
			res := sr.Results[0]
			if sr.Verdict.Action != tc.wantAction || (res.Err != nil) != tc.wantErr {
				t.Fatalf("verdict %v, err %v; want %v, error %v", sr.Verdict, res.Err, tc.wantAction, tc.wantErr)
			}
			if tc.wantErr && !errors.Is(res.Err, ErrSizeLimit) {
				t.Errorf("error %v does not wrap ErrSizeLimit", res.Err)
			}
		})
	}
}

// capture is a loopback HTTP server that records the last request's
// headers and answers with a fixed reply.
type capture struct {
	mu     sync.Mutex
	header http.Header
	body   []byte
}

func startCapture(t *testing.T, status int, reply []byte) (*capture, string) {
	t.Helper()
	c := &capture{}
	srv := startRaw(t, func(conn net.Conn) {
		br := bufio.NewReader(conn)
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			body, _ := io.ReadAll(req.Body)
			c.mu.Lock()
			c.header, c.body = req.Header, body
			c.mu.Unlock()
			fmt.Fprintf(conn, "HTTP/1.1 %d X\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", status, len(reply), reply)
		}
	})
	return c, srv.url()
}

// TestRequestAndMilterHeaders checks what goes on the wire and how
// milter.add_headers/remove_headers of a reply become header changes.
func TestRequestAndMilterHeaders(t *testing.T) {
	registrytest.CheckLeaks(t)
	c, url := startCapture(t, 200, readFile(t, "milter-reply.json"))
	m := registrytest.Load(t, fmt.Sprintf("[plugins]\nplugins = [\"rspamd\"]\n[plugins.rspamd]\nurl = %q\npassword = \"s3cret\"\n", url), testHost)
	env := testEnvelope
	env.AuthUser = "alice"
	raw := "X-Spamd-Bar: old1\r\nX-Spamd-Bar: old2\r\nX-Rspamd-Server: x\r\n" + string(readFile(t, "normal.eml"))
	msg := message(t, []byte(raw), env)
	sr, err := m.ExecuteStage(context.Background(), registry.PostReception, registry.NewProcessingContext(msg, &registry.Session{ID: "4Q7x1"}))
	if err != nil || sr.Results[0].Err != nil {
		t.Fatal(err, sr.Results[0].Err)
	}
	c.mu.Lock()
	h, body := c.header, c.body
	c.mu.Unlock()
	for _, tc := range []struct {
		key  string
		want []string
	}{
		{"Ip", []string{"127.0.0.1"}},
		{"Helo", []string{"mail.example.test"}},
		{"From", []string{"alice@example.test"}},
		{"Rcpt", []string{"bob@example.test", "carol@example.test"}},
		{"Queue-Id", []string{"4Q7x1"}},
		{"User", []string{"alice"}},
		{"Mta-Name", []string{"mx.example.test"}},
		{"Password", []string{"s3cret"}},
		{"Idempotency-Key", nil},
	} {
		if got := h.Values(tc.key); !slices.Equal(got, tc.want) {
			t.Errorf("request header %s = %q, want %q", tc.key, got, tc.want)
		}
	}
	if string(body) != raw {
		t.Errorf("request body differs from the message")
	}
	wantAdd := []registry.Field{
		{Name: "X-Spam", Value: "Yes"}, {Name: "X-Spam-Score", Value: "6.50 / 15.00"}, {Name: "X-Spam-Action", Value: "add header"},
		{Name: "X-Spamd-Bar", Value: "++++++"}, {Name: "X-Spamd-Result", Value: "default: False [6.50 / 15.00]"},
		{Name: "X-Rspamd-Server", Value: "b"}, {Name: "X-Rspamd-Server", Value: "a"},
	}
	if !slices.Equal(sr.AddHeaders, wantAdd) {
		t.Errorf("added\n%v\nwant\n%v", sr.AddHeaders, wantAdd)
	}
	wantRemove := []registry.Removal{
		{Name: "X-Spam", Index: -1}, {Name: "X-Spam-Score", Index: -1}, {Name: "X-Spam-Action", Index: -1},
		{Name: "X-Rspamd-Server", Index: 0}, {Name: "X-Spam", Index: -1}, {Name: "X-Spamd-Bar", Index: 1},
	}
	if !slices.Equal(sr.RemoveHeaders, wantRemove) {
		t.Errorf("removed\n%v\nwant\n%v", sr.RemoveHeaders, wantRemove)
	}
	if out := string(msg.Rewrite(sr.AddHeaders, sr.RemoveHeaders)); !strings.Contains(out, "X-Spamd-Bar: old1\r\n") || strings.Contains(out, "old2") || strings.Contains(out, "X-Rspamd-Server: x") {
		t.Errorf("rewritten message:\n%s", out)
	}
}

// TestActionMapping: every rspamd action, default mapping, with the reply
// text rspamd gave.
func TestActionMapping(t *testing.T) {
	registrytest.CheckLeaks(t)
	for _, tc := range []struct {
		action     string
		smtp       string
		wantAction registry.Action
		wantCode   int
		wantText   string
		wantAdd    []string
	}{
		{ActionNoAction, "", registry.Accept, 250, "OK", nil},
		{ActionGreylist, "", registry.TempFail, 451, "Try again later", nil},
		{ActionSoftReject, "Rate limit exceeded", registry.TempFail, 451, "Rate limit exceeded", nil},
		{ActionAddHeader, "", registry.Accept, 250, "OK", []string{"X-Spam", "X-Spam-Score", "X-Spam-Action"}},
		{ActionRewriteSubject, "", registry.Accept, 250, "OK", []string{"Subject"}},
		{ActionReject, "", registry.Reject, 554, "Spam message rejected", nil},
		{ActionReject, "Go away", registry.Reject, 554, "Go away", nil},
	} {
		t.Run(tc.action+"/"+tc.smtp, func(t *testing.T) {
			reply := fmt.Sprintf(`{"action":%q,"score":1,"required_score":15,"symbols":{},"messages":{"smtp_message":%q}}`, tc.action, tc.smtp)
			if tc.smtp == "" {
				reply = fmt.Sprintf(`{"action":%q,"score":1,"required_score":15,"symbols":{}}`, tc.action)
			}
			_, url := startCapture(t, 200, []byte(reply))
			m := registrytest.Load(t, fmt.Sprintf("[plugins]\nplugins = [\"rspamd\"]\n[plugins.rspamd]\nurl = %q\n", url), testHost)
			sr, err := m.ExecuteStage(context.Background(), registry.PostReception, registry.NewProcessingContext(message(t, readFile(t, "normal.eml"), testEnvelope), nil))
			if err != nil || sr.Results[0].Err != nil {
				t.Fatal(err, sr.Results[0].Err)
			}
			code, _, text := sr.Verdict.Reply()
			if sr.Verdict.Action != tc.wantAction || code != tc.wantCode || text != tc.wantText {
				t.Errorf("verdict %v, want %v %d %q", sr.Verdict, tc.wantAction, tc.wantCode, tc.wantText)
			}
			var added []string
			for _, f := range sr.AddHeaders {
				added = append(added, f.Name)
				if f.Name == "Subject" && f.Value != "*** SPAM *** Lunch" {
					t.Errorf("Subject %q", f.Value)
				}
			}
			if !slices.Equal(added, tc.wantAdd) {
				t.Errorf("added %v, want %v", added, tc.wantAdd)
			}
		})
	}
}

// TestFaults: every daemon fault gives the configured on_error verdict
// within the timeout, leaves no goroutine behind and never crashes.
func TestFaults(t *testing.T) {
	registrytest.CheckLeaks(t)
	const timeout = 300 * time.Millisecond
	httpReply := func(status int, body string) func(net.Conn) {
		return func(c net.Conn) {
			br := bufio.NewReader(c)
			if req, err := http.ReadRequest(br); err == nil {
				_, _ = io.Copy(io.Discard, req.Body)
				fmt.Fprintf(c, "HTTP/1.1 %d X\r\nContent-Length: %d\r\n\r\n%s", status, len(body), body)
			}
		}
	}
	cases := []struct {
		name   string
		url    func(t *testing.T) string
		config string
		want   string
	}{
		{"daemon stopped", closedURL, "", "connection refused"},
		{"accepts then never answers", func(t *testing.T) string {
			return startRaw(t, func(c net.Conn) { _, _ = io.Copy(io.Discard, c) }).url()
		}, "", "deadline exceeded"},
		{"answers garbage", func(t *testing.T) string {
			return startRaw(t, func(c net.Conn) {
				_, _ = c.Read(make([]byte, 512))
				_, _ = c.Write([]byte("220 mail.example.test ESMTP\r\n"))
			}).url()
		}, "", "malformed HTTP"},
		{"answers non-JSON", func(t *testing.T) string { return startRaw(t, httpReply(200, "<html>oops</html>")).url() }, "", "decode JSON"},
		{"answers an unknown action", func(t *testing.T) string {
			return startRaw(t, httpReply(200, `{"action":"explode","score":1}`)).url()
		}, "", "unknown action"},
		{"answers 500", func(t *testing.T) string { return startRaw(t, httpReply(500, "internal error")).url() }, "", "500"},
		{"refuses as too large", func(t *testing.T) string { return startRaw(t, httpReply(413, "too big")).url() }, "", "size limit"},
		{"reply over max_reply_size", func(t *testing.T) string {
			return startRaw(t, httpReply(200, `{"action":"no action","score":0,"x":"`+strings.Repeat("a", 2000)+`"}`)).url()
		}, "max_reply_size = 1024\n", "max_reply_size"},
	}
	msg := message(t, readFile(t, "normal.eml"), testEnvelope)
	for _, tc := range cases {
		for _, onError := range []registry.Action{registry.TempFail, registry.Reject, registry.Accept} {
			t.Run(tc.name+"/"+onError.String(), func(t *testing.T) {
				m := registrytest.Load(t, fmt.Sprintf("[plugins]\nplugins = [\"rspamd\"]\n[plugins.rspamd]\nurl = %q\ntimeout = %q\non_error = %q\n%s",
					tc.url(t), timeout, onError, tc.config), testHost)
				start := time.Now()
				sr, err := m.ExecuteStage(context.Background(), registry.PostReception, registry.NewProcessingContext(msg, nil))
				elapsed := time.Since(start)
				if err != nil {
					t.Fatal(err)
				}
				res := sr.Results[0]
				if res.Err == nil || !strings.Contains(res.Err.Error(), tc.want) {
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
	const limit = 1024
	base := `{"action":"no action","score":0,"pad":""}`
	for _, tc := range []struct {
		name    string
		size    int
		wantErr bool
	}{{"at limit", limit, false}, {"one over", limit + 1, true}} {
		t.Run(tc.name, func(t *testing.T) {
			reply := strings.Replace(base, `""`, `"`+strings.Repeat("p", tc.size-len(base))+`"`, 1)
			_, url := startCapture(t, 200, []byte(reply))
			cfg := DefaultConfig()
			cfg.URL = url
			cfg.MaxReplySize = limit
			s, err := New(cfg, registry.Host{})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			_, err = s.ScanMessage(context.Background(), message(t, readFile(t, "normal.eml"), testEnvelope))
			if (err != nil) != tc.wantErr {
				t.Fatalf("reply of %d bytes: %v", len(reply), err)
			}
		})
	}
}

func TestMilterAddHeadersGarbage(t *testing.T) {
	m := &Milter{AddHeaders: map[string]json.RawMessage{"X-A": json.RawMessage(`12`)}}
	if _, err := m.addHeaders(); !errors.Is(err, ErrReply) {
		t.Fatalf("err %v, want ErrReply", err)
	}
}

// TestSeedConfig: the design's example table loads as written.
func TestSeedConfig(t *testing.T) {
	doc := "[plugins]\nenabled = true\nplugins = [\"rspamd\"]\n\n[plugins.rspamd]\nurl = \"http://rspamd:11333\"\ntimeout = 10\n"
	c, pc := registrytest.Settings[Config](t, doc, "rspamd")
	if c.URL != "http://rspamd:11333" || c.Timeout.D() != 10*time.Second || pc.Timeout != 10*time.Second {
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
		{"url without scheme", func(c *Config) { c.URL = "rspamd:11333" }, "url"},
		{"max_size 0", func(c *Config) { c.MaxSize = 0 }, "max_size"},
		{"max_size 1", func(c *Config) { c.MaxSize = 1 }, ""},
		{"max_reply_size at minimum", func(c *Config) { c.MaxReplySize = 1024 }, ""},
		{"max_reply_size below", func(c *Config) { c.MaxReplySize = 1023 }, "max_reply_size"},
		{"max_reply_lists_size at minimum", func(c *Config) { c.MaxReplyListsSize = 0 }, ""},
		{"max_reply_lists_size below", func(c *Config) { c.MaxReplyListsSize = -1 }, "max_reply_lists_size"},
		{"max_idle_conns negative", func(c *Config) { c.MaxIdleConns = -1 }, "max_idle_conns"},
		{"max_idle_conns 0", func(c *Config) { c.MaxIdleConns = 0 }, ""},
		{"unknown action", func(c *Config) { c.Actions = map[string]registry.Action{"spam": registry.Reject} }, "unknown rspamd action"},
		{"known action", func(c *Config) { c.Actions = map[string]registry.Action{"Greylist": registry.Accept} }, ""},
		{"on_size_limit unknown", func(c *Config) { c.OnSizeLimit = "drop" }, "on_size_limit"},
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

// TestReplyHeaderInjection: header values and names from rspamd's reply
// (milter.add_headers, subject) cannot end the field they go into and
// start fields of their own.
func TestReplyHeaderInjection(t *testing.T) {
	registrytest.CheckLeaks(t)
	for _, tc := range []struct {
		name    string
		reply   string
		wantAdd []registry.Field
	}{
		{"CR LF in a milter value",
			`{"action":"no action","score":0,"milter":{"add_headers":{"X-A":"v\r\nX-Injected: yes"}}}`,
			[]registry.Field{{Name: "X-A", Value: "v  X-Injected: yes"}}},
		{"folded milter value",
			`{"action":"no action","score":0,"milter":{"add_headers":{"X-Spamd-Result":{"value":"default: False\n\tBAYES_HAM","order":0}}}}`,
			[]registry.Field{{Name: "X-Spamd-Result", Value: "default: False \tBAYES_HAM"}}},
		{"CR LF in a milter name",
			`{"action":"no action","score":0,"milter":{"add_headers":{"X-Injected: yes\r\nX-B":"v","X-C":"w"}}}`,
			[]registry.Field{{Name: "X-C", Value: "w"}}},
		{"colon in a milter name",
			`{"action":"no action","score":0,"milter":{"add_headers":{"X-D: e":"v"}}}`,
			nil},
		{"CR LF in a rewritten subject",
			`{"action":"rewrite subject","score":9,"subject":"[SPAM] Lunch\r\nX-Injected: yes"}`,
			[]registry.Field{{Name: "Subject", Value: "[SPAM] Lunch  X-Injected: yes"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, url := startCapture(t, 200, []byte(tc.reply))
			m := registrytest.Load(t, fmt.Sprintf("[plugins]\nplugins = [\"rspamd\"]\n[plugins.rspamd]\nurl = %q\n", url), testHost)
			msg := message(t, readFile(t, "normal.eml"), testEnvelope)
			sr, err := m.ExecuteStage(context.Background(), registry.PostReception, registry.NewProcessingContext(msg, nil))
			if err != nil || sr.Results[0].Err != nil {
				t.Fatal(err, sr.Results[0].Err)
			}
			if !slices.Equal(sr.AddHeaders, tc.wantAdd) {
				t.Errorf("added %q, want %q", sr.AddHeaders, tc.wantAdd)
			}
			if out := string(msg.Rewrite(sr.AddHeaders, sr.RemoveHeaders)); strings.Contains(out, "\nX-Injected") || strings.Contains(out, "\nX-B") {
				t.Errorf("rewritten message has an injected field:\n%s", out)
			}
		})
	}
}

// TestEnvelopeControlCharacters: control characters in client-supplied
// envelope values (go-smtp keeps them in HELO) do not make the request
// invalid, which would skip the check and apply on_error.
func TestEnvelopeControlCharacters(t *testing.T) {
	registrytest.CheckLeaks(t)
	for _, tc := range []struct {
		name string
		env  func(*registry.Envelope)
		key  string
		want []string
	}{
		{"SOH in HELO", func(e *registry.Envelope) { e.HELO = "mail\x01.example.test" }, "Helo", []string{"mail?.example.test"}},
		{"DEL in MAIL FROM", func(e *registry.Envelope) { e.MailFrom = "a\x7fb@example.test" }, "From", []string{"a?b@example.test"}},
		{"CR LF in a recipient", func(e *registry.Envelope) { e.RcptTo = []string{"b@example.test\r\nX: y"} }, "Rcpt", []string{"b@example.test??X: y"}},
		{"TAB is kept", func(e *registry.Envelope) { e.AuthUser = "al\tice" }, "User", []string{"al\tice"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, url := startCapture(t, 200, []byte(`{"action":"reject","score":20}`))
			m := registrytest.Load(t, fmt.Sprintf("[plugins]\nplugins = [\"rspamd\"]\n[plugins.rspamd]\nurl = %q\non_error = \"accept\"\n", url), testHost)
			env := testEnvelope
			tc.env(&env)
			sr, err := m.ExecuteStage(context.Background(), registry.PostReception, registry.NewProcessingContext(message(t, readFile(t, "normal.eml"), env), nil))
			if err != nil || sr.Results[0].Err != nil {
				t.Fatal(err, sr.Results[0].Err)
			}
			if sr.Verdict.Action != registry.Reject {
				t.Errorf("verdict %v, want rspamd's reject", sr.Verdict)
			}
			c.mu.Lock()
			got := c.header.Values(tc.key)
			c.mu.Unlock()
			if !slices.Equal(got, tc.want) {
				t.Errorf("request header %s = %q, want %q", tc.key, got, tc.want)
			}
		})
	}
}

// TestLongMilterHeaderFolded: rspamd's longest field, an X-Spamd-Result
// listing many symbols, is folded at white space to lines of at most 78
// characters, and unfolds to rspamd's value.
func TestLongMilterHeaderFolded(t *testing.T) {
	registrytest.CheckLeaks(t)
	var syms []string
	for i := range 40 {
		syms = append(syms, fmt.Sprintf("SYMBOL_NUMBER_%02d(0.10)[some.host.example,192.0.2.%d]", i, i))
	}
	value := "default: False [4.00 / 15.00]; " + strings.Join(syms, "; ")
	reply, err := json.Marshal(map[string]any{"action": "no action", "score": 4,
		"milter": map[string]any{"add_headers": map[string]any{"X-Spamd-Result": value}}})
	if err != nil {
		t.Fatal(err)
	}
	_, url := startCapture(t, 200, reply)
	m := registrytest.Load(t, fmt.Sprintf("[plugins]\nplugins = [\"rspamd\"]\n[plugins.rspamd]\nurl = %q\n", url), testHost)
	msg := message(t, readFile(t, "normal.eml"), testEnvelope)
	sr, err := m.ExecuteStage(context.Background(), registry.PostReception, registry.NewProcessingContext(msg, nil))
	if err != nil || sr.Results[0].Err != nil {
		t.Fatal(err, sr.Results[0].Err)
	}
	if len(sr.AddHeaders) != 1 {
		t.Fatalf("added %q", sr.AddHeaders)
	}
	f := sr.AddHeaders[0]
	if got := headerfold.Unfold(f.Value); got != value {
		t.Errorf("unfolds to\n%s\nwant\n%s", got, value)
	}
	for _, line := range strings.Split(f.Name+": "+f.Value, "\r\n") {
		if len(line) > headerfold.Width {
			t.Errorf("line of %d characters: %q", len(line), line)
		}
	}
}
