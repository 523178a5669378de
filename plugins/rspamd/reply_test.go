package rspamd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/elemta/elemta/pkg/testenv"
	"github.com/elemta/elemta/registry"
	"github.com/elemta/elemta/registry/registrytest"
)

// urlFlood is a 2 MB message with 10,500 distinct URLs whose host names
// are 190 octets long: rspamd lists 10,241 of them in its reply.
func urlFlood() []byte {
	var b bytes.Buffer
	b.WriteString("From: a@example.test\r\nTo: b@example.test\r\nSubject: offer\r\nMessage-ID: <flood@example.test>\r\n\r\n")
	label := strings.Repeat("a", 60)
	for i := range 10500 {
		fmt.Fprintf(&b, "http://%s.%s.%s.x%d.com/\r\n", label, label, label, i)
	}
	return b.Bytes()
}

// TestURLFloodRealRspamd: a message that makes rspamd's reply larger than
// max_reply_size, through its urls list, is still classified. Before, the
// reply was refused and on_error (accept by default) let the message
// through unchecked.
func TestURLFloodRealRspamd(t *testing.T) {
	url := testenv.Require(t, testenv.Rspamd)
	registrytest.CheckLeaks(t)
	raw := urlFlood()

	// The premise: rspamd's reply to this message is over the default
	// max_reply_size.
	resp, err := http.Post(url+"/checkv2", "message/rfc822", bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(body)) <= DefaultConfig().MaxReplySize {
		t.Fatalf("rspamd's reply is %d bytes, not over max_reply_size: the test no longer shows anything", len(body))
	}

	// Every action rejects, so a classified message is rejected and one
	// that escaped to on_error (accept) is not.
	m := registrytest.Load(t, fmt.Sprintf("[plugins]\nplugins = [\"rspamd\"]\n[plugins.rspamd]\nurl = %q\ntimeout = 20\n"+
		"actions = { \"no action\" = \"reject\", \"greylist\" = \"reject\", \"add header\" = \"reject\", \"rewrite subject\" = \"reject\", \"soft reject\" = \"reject\" }\n", url), testHost)
	pc := registry.NewProcessingContext(message(t, raw, testEnvelope), nil)
	sr, err := m.ExecuteStage(context.Background(), registry.PostReception, pc)
	if err != nil {
		t.Fatal(err)
	}
	if res := sr.Results[0]; res.Err != nil {
		t.Fatalf("check failed (on_error applies): %v", res.Err)
	}
	if sr.Verdict.Action != registry.Reject {
		t.Errorf("verdict %v, want the action mapping's reject", sr.Verdict)
	}

	// The lists still have a bound.
	m = registrytest.Load(t, fmt.Sprintf("[plugins]\nplugins = [\"rspamd\"]\n[plugins.rspamd]\nurl = %q\ntimeout = 20\nmax_reply_lists_size = 65536\n", url), testHost)
	sr, err = m.ExecuteStage(context.Background(), registry.PostReception, registry.NewProcessingContext(message(t, raw, testEnvelope), nil))
	if err != nil {
		t.Fatal(err)
	}
	if res := sr.Results[0]; res.Err == nil || !strings.Contains(res.Err.Error(), "max_reply_lists_size") {
		t.Fatalf("error %v, want one about max_reply_lists_size", res.Err)
	}
}

func TestDecodeReply(t *testing.T) {
	list := `["` + strings.Repeat("h", 3000) + `"]` // 3004 bytes
	tests := []struct {
		name     string
		reply    string
		maxLists int64
		want     string // error substring; "" for none
	}{
		{"lists skipped, not counted in max_reply_size", `{"action":"add header","urls":` + list + `,"emails":` + list + `,"score":7.5}`, 2 * 3005, ""},
		{"lists one byte over max_reply_lists_size", `{"action":"add header","urls":` + list + `,"emails":` + list + `,"score":7.5}`, 2*3005 - 1, "max_reply_lists_size"},
		{"lists nested", `{"action":"no action","urls":[{"a":[1,{"b":"c"}]},"x"],"score":1}`, 100, ""},
		{"not an object", `["no action"]`, 100, "not an object"},
		{"data after the object", `{"action":"no action"} {"action":"reject"}`, 100, "data after"},
		{"truncated", `{"action":"no action","urls":["x"`, 100, "decode JSON"},
		{"a member that is no JSON", `{"action":no}`, 100, "decode JSON"},
		{"the last of duplicate members counts", `{"action":"reject","action":"no action"}`, 100, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rep, err := decodeReply(strings.NewReader(tc.reply), 1024, tc.maxLists)
			if tc.want != "" {
				if err == nil || !errors.Is(err, ErrReply) || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("error %v, want ErrReply about %q", err, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if rep.Action == "" || rep.Action == "reject" {
				t.Errorf("action %q", rep.Action)
			}
		})
	}
	rep, err := decodeReply(strings.NewReader(`{"action":"add header","urls":`+list+`,"score":7.5,"symbols":{"X":{"name":"X","score":1}}}`), 1024, 4096)
	if err != nil || rep.Score != 7.5 || rep.Action != "add header" || len(rep.Symbols) != 1 {
		t.Fatalf("reply %+v, %v", rep, err)
	}
}
