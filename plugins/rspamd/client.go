package rspamd

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"
)

// Errors a caller can test with errors.Is.
var (
	// ErrSizeLimit: the message is larger than max_size, or rspamd refused
	// it as too large.
	ErrSizeLimit = errors.New("message size limit exceeded")
	// ErrReply: rspamd's reply could not be understood.
	ErrReply = errors.New("unexpected reply from rspamd")
)

// Request is a message and its envelope as rspamd's protocol carries them.
type Request struct {
	Message  []byte
	IP       string
	Helo     string
	From     string
	Rcpt     []string
	QueueID  string
	User     string
	Hostname string // the client's resolved name
	MTAName  string // our own name
}

// Reply is rspamd's /checkv2 answer (the parts Elemta uses).
type Reply struct {
	IsSkipped     bool                       `json:"is_skipped"`
	Score         float64                    `json:"score"`
	RequiredScore float64                    `json:"required_score"`
	Action        string                     `json:"action"`
	Symbols       map[string]Symbol          `json:"symbols"`
	Messages      map[string]json.RawMessage `json:"messages"`
	Subject       string                     `json:"subject"`
	MessageID     string                     `json:"message-id"`
	Milter        *Milter                    `json:"milter"`
}

// Symbol is one rule that matched.
type Symbol struct {
	Name        string   `json:"name"`
	Score       float64  `json:"score"`
	Description string   `json:"description"`
	Options     []string `json:"options"`
}

// Milter holds the header changes rspamd asks for.
type Milter struct {
	AddHeaders    map[string]json.RawMessage `json:"add_headers"`
	RemoveHeaders map[string]int             `json:"remove_headers"`
}

// MilterHeader is one field of milter.add_headers.
type MilterHeader struct {
	Name  string
	Value string
	Order int
}

// SMTPMessage returns messages.smtp_message, or "".
func (r *Reply) SMTPMessage() string {
	var s string
	if raw, ok := r.Messages["smtp_message"]; ok && json.Unmarshal(raw, &s) == nil {
		return s
	}
	return ""
}

// SymbolNames returns the matched symbols, sorted.
func (r *Reply) SymbolNames() []string {
	names := make([]string, 0, len(r.Symbols))
	for n := range r.Symbols {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// AddHeaders decodes milter.add_headers, whose values are a string, an
// object {"value", "order"} or a list of those, sorted by order then name.
func (m *Milter) addHeaders() ([]MilterHeader, error) {
	if m == nil {
		return nil, nil
	}
	type entry struct {
		Value string `json:"value"`
		Order int    `json:"order"`
	}
	var out []MilterHeader
	for name, raw := range m.AddHeaders {
		var s string
		var e entry
		var list []entry
		switch {
		case json.Unmarshal(raw, &s) == nil:
			out = append(out, MilterHeader{Name: name, Value: s})
		case json.Unmarshal(raw, &e) == nil:
			out = append(out, MilterHeader{Name: name, Value: e.Value, Order: e.Order})
		case json.Unmarshal(raw, &list) == nil:
			for _, e := range list {
				out = append(out, MilterHeader{Name: name, Value: e.Value, Order: e.Order})
			}
		default:
			return nil, fmt.Errorf("%w: milter.add_headers[%q] is %.60s", ErrReply, name, raw)
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].Order != out[j].Order {
			return out[i].Order < out[j].Order
		}
		return out[i].Name < out[j].Name
	})
	return out, nil
}

// httpClient posts messages to rspamd over kept-alive connections.
type httpClient struct {
	url       string
	password  string
	maxReply  int64
	maxLists  int64
	transport *http.Transport
	client    *http.Client
}

func newHTTPClient(cfg Config) *httpClient {
	d := &net.Dialer{Timeout: cfg.ConnectTimeout.D()}
	tr := &http.Transport{
		DialContext:         d.DialContext,
		MaxIdleConns:        cfg.MaxIdleConns,
		MaxIdleConnsPerHost: cfg.MaxIdleConns,
		IdleConnTimeout:     cfg.IdleTimeout.D(),
		DisableCompression:  true,
		DisableKeepAlives:   cfg.MaxIdleConns == 0,
	}
	return &httpClient{
		url:       strings.TrimSuffix(cfg.URL, "/") + "/checkv2",
		password:  cfg.Password,
		maxReply:  cfg.MaxReplySize,
		maxLists:  cfg.MaxReplyListsSize,
		transport: tr,
		client:    &http.Client{Transport: tr},
	}
}

// Check posts req to /checkv2 and decodes the reply.
func (c *httpClient) Check(ctx context.Context, req *Request) (*Reply, error) {
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url, bytes.NewReader(req.Message))
	if err != nil {
		return nil, fmt.Errorf("build request: %w", err)
	}
	h := hr.Header
	set := func(k, v string) {
		if v != "" {
			h[k] = []string{headerValue(v)}
		}
	}
	set("IP", req.IP)
	set("Helo", req.Helo)
	set("From", req.From)
	set("Queue-Id", req.QueueID)
	set("User", req.User)
	set("Hostname", req.Hostname)
	set("MTA-Name", req.MTAName)
	set("Password", c.password)
	for _, r := range req.Rcpt {
		h["Rcpt"] = append(h["Rcpt"], headerValue(r))
	}
	h["Content-Type"] = []string{"message/rfc822"}
	// A scan has no side effects: let the transport resend it when a kept-alive
	// connection turns out closed. The empty value is not sent.
	h["Idempotency-Key"] = nil

	resp, err := c.client.Do(hr)
	if err != nil {
		return nil, fmt.Errorf("POST %s: %w", c.url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusRequestEntityTooLarge {
		return nil, fmt.Errorf("POST %s: %w: %s", c.url, ErrSizeLimit, resp.Status)
	}
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 200))
		return nil, fmt.Errorf("POST %s: %w: %s: %.200q", c.url, ErrReply, resp.Status, body)
	}
	rep, err := decodeReply(resp.Body, c.maxReply, c.maxLists)
	if err != nil {
		return nil, fmt.Errorf("POST %s: %w", c.url, err)
	}
	if _, ok := DefaultActions()[rep.Action]; !ok {
		return nil, fmt.Errorf("POST %s: %w: unknown action %q", c.url, ErrReply, rep.Action)
	}
	return rep, nil
}

// headerValue replaces the control characters net/http refuses in a
// request header (all but TAB) with '?'. The envelope comes from the SMTP
// client (go-smtp keeps a HELO such as "a\x01b"); refused, it would fail
// the whole check and hand the message to on_error (accept by default).
func headerValue(v string) string {
	return strings.Map(func(r rune) rune {
		if r < ' ' && r != '\t' || r == 0x7f {
			return '?'
		}
		return r
	}, v)
}

// Ping asks rspamd's /ping, which answers "pong".
func (c *httpClient) Ping(ctx context.Context) error {
	u := strings.TrimSuffix(c.url, "checkv2") + "ping"
	hr, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := c.client.Do(hr)
	if err != nil {
		return fmt.Errorf("GET %s: %w", u, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64))
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(string(body), "pong") {
		return fmt.Errorf("GET %s: %w: %s %.40q", u, ErrReply, strconv.Itoa(resp.StatusCode), body)
	}
	return nil
}

func (c *httpClient) Close() { c.transport.CloseIdleConnections() }
