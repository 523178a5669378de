package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Client talks to a running server's admin listener (the CLI's --server).
type Client struct {
	base  string
	token string
	http  *http.Client
}

// maxReply bounds a reply the client reads.
const maxReply = 64 << 20

// NewClient returns a client of addr: "host:port", "http://host:port",
// "https://host:port" or "unix:/path/to/socket". token, when set, is
// sent as a bearer token.
func NewClient(addr, token string) (*Client, error) {
	c := &Client{token: token, http: &http.Client{Timeout: time.Minute}}
	switch {
	case strings.HasPrefix(addr, "unix:"):
		sock := strings.TrimPrefix(addr, "unix:")
		if sock == "" {
			return nil, fmt.Errorf("server %q: no socket path", addr)
		}
		c.base = "http://elemta-admin"
		c.http.Transport = &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		}}
	case strings.HasPrefix(addr, "http://") || strings.HasPrefix(addr, "https://"):
		u, err := url.Parse(addr)
		if err != nil || u.Host == "" {
			return nil, fmt.Errorf("server %q: not a URL of a host", addr)
		}
		c.base = strings.TrimSuffix(addr, "/")
	default:
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return nil, fmt.Errorf("server %q: want host:port, http://host:port or unix:/path", addr)
		}
		c.base = "http://" + addr
	}
	return c, nil
}

// Do sends a request and decodes the JSON reply into out; a reply other
// than 2xx is an error carrying the server's message.
func (c *Client) Do(ctx context.Context, method, path string, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, nil)
	if err != nil {
		return err
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("admin %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxReply))
	if err != nil {
		return fmt.Errorf("admin %s %s: read reply: %w", method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		var e ErrorBody
		if json.Unmarshal(body, &e) == nil && e.Error != "" {
			return fmt.Errorf("admin %s %s: %s: %s", method, path, resp.Status, e.Error)
		}
		return fmt.Errorf("admin %s %s: %s: %s", method, path, resp.Status, bytes.TrimSpace(body))
	}
	if out == nil {
		return nil
	}
	if b, ok := out.(*[]byte); ok {
		*b = body
		return nil
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("admin %s %s: decode reply: %w", method, path, err)
	}
	return nil
}
