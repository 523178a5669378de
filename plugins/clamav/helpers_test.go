package clamav

import (
	"bytes"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/elemta/elemta/registry"
	"github.com/elemta/elemta/registry/registrytest"
)

// fakeClock is a clock the test moves by hand.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// readMessage parses testdata/name.
func readMessage(t testing.TB, name string) *registry.Message {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return parse(t, raw)
}

func parse(t testing.TB, raw []byte) *registry.Message {
	t.Helper()
	m, err := registry.ParseMessage(raw, registry.Envelope{MailFrom: "alice@example.test", RcptTo: []string{"bob@example.test"}})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// sizedMessage returns a clean message of exactly n bytes (n >= 64).
func sizedMessage(t testing.TB, n int) *registry.Message {
	t.Helper()
	head := "Subject: size test\r\n\r\n"
	body := bytes.Repeat([]byte("abcdefghijklmnopqrstuvwxyz0123456789 the quick brown fox jumps\r\n"), n/64+1)
	raw := append([]byte(head), body...)[:n]
	return parse(t, raw)
}

// closedPort returns a loopback address nothing listens on.
func closedPort(t *testing.T) string { return registrytest.ClosedAddr(t) }

// readCommand reads one NUL-terminated command ("zINSTREAM").
func readCommand(c net.Conn) (string, error) {
	var b []byte
	one := make([]byte, 1)
	for {
		if _, err := c.Read(one); err != nil {
			return string(b), err
		}
		if one[0] == 0 {
			return string(b), nil
		}
		b = append(b, one[0])
	}
}

// drainStream reads INSTREAM chunks up to the zero-length one and returns
// how many data bytes came.
func drainStream(c net.Conn) (int, error) {
	total := 0
	var hdr [4]byte
	for {
		if _, err := io.ReadFull(c, hdr[:]); err != nil {
			return total, err
		}
		n := int(uint32(hdr[0])<<24 | uint32(hdr[1])<<16 | uint32(hdr[2])<<8 | uint32(hdr[3]))
		if n == 0 {
			return total, nil
		}
		buf := make([]byte, n)
		if _, err := io.ReadFull(c, buf); err != nil {
			return total, err
		}
		total += n
	}
}
