package clamav

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Errors a caller can test with errors.Is.
var (
	// ErrSizeLimit: the message is larger than max_size, or clamd answered
	// "INSTREAM size limit exceeded" (its StreamMaxLength).
	ErrSizeLimit = errors.New("clamd: stream size limit exceeded")
	// ErrNoServer: every configured clamd failed or is marked down.
	ErrNoServer = errors.New("clamd: no server available")
	// ErrReply: clamd's reply could not be understood.
	ErrReply = errors.New("clamd: unexpected reply")
	// ErrLimitsExceeded: clamd stopped scanning part of the message at one
	// of its scan limits (MaxRecursion, MaxFiles, MaxFileSize, MaxScanSize,
	// MaxScanTime, the email limits) and said so with a
	// "Heuristics.Limits.Exceeded.*" name (clamd.conf AlertExceedsMax yes).
	ErrLimitsExceeded = errors.New("clamd: scan limits exceeded")
)

// LimitsPrefix starts the names clamd reports, with AlertExceedsMax, for a
// scan cut short by one of its limits: "Heuristics.Limits.Exceeded.MaxFiles".
const LimitsPrefix = "Heuristics.Limits.Exceeded."

// scanReply is what clamd said about one stream.
type scanReply struct {
	Infected bool
	// Exceeded: clamd reported a scan limit (Viruses holds its
	// "Heuristics.Limits.Exceeded.*" name), not malware: part of the message
	// was not scanned. Infected is then false.
	Exceeded bool
	Viruses  []string
	Server   string // address of the clamd that answered
}

// server is one clamd address: network "unix" or "tcp".
type server struct {
	network, address string
}

func (s server) String() string { return s.network + ":" + s.address }

// parseServer accepts "/path", "unix:/path", "unix:///path", "host:port",
// "tcp://host:port" and "tcp:host:port".
func parseServer(s string) (server, error) {
	s = strings.TrimSpace(s)
	switch {
	case s == "":
		return server{}, errors.New("empty clamd address")
	case strings.HasPrefix(s, "unix://"):
		return server{"unix", strings.TrimPrefix(s, "unix://")}, nil
	case strings.HasPrefix(s, "unix:"):
		return server{"unix", strings.TrimPrefix(s, "unix:")}, nil
	case strings.HasPrefix(s, "/"):
		return server{"unix", s}, nil
	}
	addr := strings.TrimPrefix(strings.TrimPrefix(s, "tcp://"), "tcp:")
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return server{}, fmt.Errorf("clamd address %q: want a unix socket path or host:port: %w", s, err)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 || host == "" {
		return server{}, fmt.Errorf("clamd address %q: want host:port with a port from 1 to 65535", s)
	}
	return server{"tcp", addr}, nil
}

// clientOptions are the client's limits, all set by the plugin's config.
type clientOptions struct {
	ConnectTimeout time.Duration // dialing one server
	IOTimeout      time.Duration // whole exchange when the context has no earlier deadline
	ChunkSize      int           // INSTREAM chunk size
	MaxReply       int           // longest reply accepted
	MaxIdle        int           // pooled IDSESSION connections per server; 0: one connection per scan
	IdleTimeout    time.Duration // a pooled connection idle longer is closed, not reused
	RetryAfter     time.Duration // a failed server is skipped this long while others remain
	Now            func() time.Time
}

// client speaks clamd's protocol (clamd(8), "COMMANDS") to one or more
// servers, in order, failing over to the next on connection and protocol
// errors. Every exchange runs under a deadline taken from the context (or
// IOTimeout) and is interrupted when the context is cancelled.
type client struct {
	opt     clientOptions
	servers []*serverState
}

type serverState struct {
	srv server

	mu        sync.Mutex
	idle      []*conn
	downUntil time.Time
	closed    bool
}

// conn is one connection to clamd; in session mode (IDSESSION) it carries
// several requests, numbered from 1.
type conn struct {
	net.Conn
	r       *bufio.Reader
	session bool
	lastID  int
	idleAt  time.Time
}

func newClient(servers []server, opt clientOptions) *client {
	c := &client{opt: opt}
	for _, s := range servers {
		c.servers = append(c.servers, &serverState{srv: s})
	}
	return c
}

// Scan streams data to the first clamd that answers and returns its verdict.
func (c *client) Scan(ctx context.Context, data []byte) (*scanReply, error) {
	var errs []error
	now := c.opt.Now()
	order := c.order(now)
	for _, s := range order {
		if err := ctx.Err(); err != nil {
			errs = append(errs, err)
			break
		}
		rep, err := c.scanOn(ctx, s, data)
		if err == nil {
			s.markUp()
			return rep, nil
		}
		if errors.Is(err, ErrSizeLimit) {
			s.markUp()
			return nil, err // the same message is too big for the next server too
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break // our deadline, not the server's fault
		}
		s.markDown(c.opt.Now().Add(c.opt.RetryAfter))
	}
	return nil, fmt.Errorf("%w: %w", ErrNoServer, errors.Join(errs...))
}

// order returns the servers to try: those not marked down first, in
// config order, then the ones marked down (a last resort, not skipped:
// with every server down, trying beats failing blind).
func (c *client) order(now time.Time) []*serverState {
	up := make([]*serverState, 0, len(c.servers))
	var down []*serverState
	for _, s := range c.servers {
		s.mu.Lock()
		d := now.Before(s.downUntil)
		s.mu.Unlock()
		if d {
			down = append(down, s)
		} else {
			up = append(up, s)
		}
	}
	return append(up, down...)
}

func (s *serverState) markDown(until time.Time) {
	s.mu.Lock()
	s.downUntil = until
	s.mu.Unlock()
}

func (s *serverState) markUp() {
	s.mu.Lock()
	s.downUntil = time.Time{}
	s.mu.Unlock()
}

// scanOn scans on one server. A pooled connection that fails before clamd
// answered anything (clamd closed the idle session) is replaced once by a
// fresh one.
func (c *client) scanOn(ctx context.Context, s *serverState, data []byte) (*scanReply, error) {
	for attempt := 0; ; attempt++ {
		cn, reused, err := c.get(ctx, s)
		if err != nil {
			return nil, err
		}
		rep, answered, err := c.instream(ctx, cn, data)
		if err == nil {
			c.put(s, cn)
			rep.Server = s.srv.String()
			return rep, nil
		}
		cn.Close()
		if reused && !answered && attempt == 0 && ctx.Err() == nil && !errors.Is(err, ErrSizeLimit) {
			continue
		}
		return nil, fmt.Errorf("scan on %s: %w", s.srv, err)
	}
}

// get returns a pooled connection or dials a new one.
func (c *client) get(ctx context.Context, s *serverState) (cn *conn, reused bool, err error) {
	now := c.opt.Now()
	s.mu.Lock()
	for len(s.idle) > 0 {
		cn = s.idle[len(s.idle)-1]
		s.idle = s.idle[:len(s.idle)-1]
		if now.Sub(cn.idleAt) < c.opt.IdleTimeout {
			s.mu.Unlock()
			return cn, true, nil
		}
		cn.Close()
	}
	s.mu.Unlock()

	nc, err := c.dial(ctx, s.srv)
	if err != nil {
		return nil, false, err
	}
	cn = &conn{Conn: nc, r: bufio.NewReaderSize(nc, 512)}
	if c.opt.MaxIdle > 0 {
		cn.session = true
		stop := c.deadline(ctx, cn)
		_, err = cn.Write([]byte("zIDSESSION\x00"))
		if !stop() || err != nil {
			cn.Close()
			return nil, false, fmt.Errorf("start session on %s: %w", s.srv, firstErr(ctx.Err(), err))
		}
	}
	return cn, false, nil
}

// put returns a healthy session connection to the pool, or closes it.
func (c *client) put(s *serverState, cn *conn) {
	if !cn.session {
		cn.Close()
		return
	}
	cn.idleAt = c.opt.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || len(s.idle) >= c.opt.MaxIdle {
		cn.endSession()
		return
	}
	s.idle = append(s.idle, cn)
}

func (cn *conn) endSession() {
	_ = cn.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
	_, _ = cn.Write([]byte("zEND\x00"))
	cn.Close()
}

func (c *client) dial(ctx context.Context, s server) (net.Conn, error) {
	d := net.Dialer{Timeout: c.opt.ConnectTimeout}
	nc, err := d.DialContext(ctx, s.network, s.address)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", s, err)
	}
	return nc, nil
}

// deadline sets cn's deadline to the context's (or now+IOTimeout, whichever
// is earlier) and makes cancelling ctx interrupt any blocked read or write.
// The returned stop reports false when ctx was cancelled meanwhile: the
// connection's deadline is then in the past and it must not be reused.
func (c *client) deadline(ctx context.Context, cn net.Conn) (stop func() bool) {
	dl := time.Now().Add(c.opt.IOTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(dl) {
		dl = d
	}
	_ = cn.SetDeadline(dl)
	return context.AfterFunc(ctx, func() { _ = cn.SetDeadline(time.Unix(1, 0)) })
}

// instream sends data with INSTREAM and reads the verdict. answered
// reports whether clamd sent any byte back (then a retry would not help).
func (c *client) instream(ctx context.Context, cn *conn, data []byte) (rep *scanReply, answered bool, err error) {
	stop := c.deadline(ctx, cn)
	defer func() {
		if !stop() && err == nil {
			err = ctx.Err()
		}
	}()
	id := 0
	if cn.session {
		cn.lastID++
		id = cn.lastID
	}
	werr := c.writeStream(cn, data)
	if werr != nil {
		// clamd stops reading and answers "INSTREAM size limit exceeded"
		// when the stream passes its StreamMaxLength: read what it said
		// before reporting the write error.
		line, rerr := c.readReply(cn)
		if rerr != nil {
			return nil, false, fmt.Errorf("send stream: %w", firstErr(ctx.Err(), werr))
		}
		rep, err := parseScanReply(line, id)
		if err != nil {
			return nil, true, err
		}
		if !rep.Infected && !rep.Exceeded {
			// clamd did not get the whole stream: "OK" covers only part of it.
			return nil, true, fmt.Errorf("%w: %q before the whole stream was sent: %w", ErrReply, line, werr)
		}
		return rep, true, nil
	}
	line, err := c.readReply(cn)
	if err != nil {
		return nil, len(line) > 0, fmt.Errorf("read reply: %w", firstErr(ctx.Err(), err))
	}
	rep, err = parseScanReply(line, id)
	return rep, true, err
}

// writeStream writes "zINSTREAM\0", the chunks and the terminating
// zero-length chunk, stopping at the first write error.
func (c *client) writeStream(cn *conn, data []byte) error {
	var hdr [4]byte
	if _, err := cn.Write([]byte("zINSTREAM\x00")); err != nil {
		return err
	}
	for len(data) > 0 {
		n := min(len(data), c.opt.ChunkSize)
		binary.BigEndian.PutUint32(hdr[:], uint32(n))
		bufs := net.Buffers{hdr[:], data[:n]}
		if _, err := bufs.WriteTo(cn); err != nil {
			return err
		}
		data = data[n:]
	}
	_, err := cn.Write([]byte{0, 0, 0, 0})
	return err
}

// readReply reads one NUL-terminated reply of at most MaxReply bytes.
func (c *client) readReply(cn *conn) (string, error) {
	var buf bytes.Buffer
	for {
		b, err := cn.r.ReadByte()
		if err != nil {
			return buf.String(), err
		}
		if b == 0 {
			return buf.String(), nil
		}
		if buf.Len() >= c.opt.MaxReply {
			return buf.String(), fmt.Errorf("%w: reply longer than %d bytes without a terminating NUL", ErrReply, c.opt.MaxReply)
		}
		buf.WriteByte(b)
	}
}

// parseScanReply understands "stream: OK", "stream: NAME FOUND" and
// "... ERROR", each prefixed with "<id>: " in session mode. A NAME that
// starts with LimitsPrefix is a scan limit, not malware.
func parseScanReply(line string, id int) (*scanReply, error) {
	if id > 0 {
		prefix := strconv.Itoa(id) + ": "
		if !strings.HasPrefix(line, prefix) {
			if strings.HasSuffix(line, " ERROR") { // session-level errors carry no id
				return nil, replyError(line)
			}
			return nil, fmt.Errorf("%w: want reply to request %d, got %.80q", ErrReply, id, line)
		}
		line = line[len(prefix):]
	}
	switch {
	case strings.HasSuffix(line, " ERROR"):
		return nil, replyError(line)
	case line == "stream: OK":
		return &scanReply{}, nil
	case len(line) > len("stream: ")+len(" FOUND") && strings.HasPrefix(line, "stream: ") && strings.HasSuffix(line, " FOUND"):
		// The name ends up in replies and X-Virus-Status: no control characters.
		name := strings.TrimSpace(strings.Map(func(r rune) rune {
			if r < ' ' || r == 0x7f {
				return '?'
			}
			return r
		}, line[len("stream: "):len(line)-len(" FOUND")]))
		if name == "" {
			break
		}
		if strings.HasPrefix(name, LimitsPrefix) {
			return &scanReply{Exceeded: true, Viruses: []string{name}}, nil
		}
		return &scanReply{Infected: true, Viruses: []string{name}}, nil
	}
	return nil, fmt.Errorf("%w: %.80q", ErrReply, line)
}

func replyError(line string) error {
	if strings.Contains(line, "size limit exceeded") {
		return fmt.Errorf("%w: clamd: %s", ErrSizeLimit, line)
	}
	return fmt.Errorf("clamd: %s", line)
}

// command sends a one-shot command (PING, VERSION) to one server.
func (c *client) command(ctx context.Context, s server, cmd string) (string, error) {
	nc, err := c.dial(ctx, s)
	if err != nil {
		return "", err
	}
	defer nc.Close()
	cn := &conn{Conn: nc, r: bufio.NewReaderSize(nc, 512)}
	stop := c.deadline(ctx, cn)
	defer stop()
	if _, err := cn.Write([]byte("z" + cmd + "\x00")); err != nil {
		return "", fmt.Errorf("%s on %s: %w", cmd, s, firstErr(ctx.Err(), err))
	}
	line, err := c.readReply(cn)
	if err != nil {
		return "", fmt.Errorf("%s on %s: read reply: %w", cmd, s, firstErr(ctx.Err(), err))
	}
	return line, nil
}

// Close closes the pooled connections. The client stays usable: later
// scans dial new connections but pool none.
func (c *client) Close() {
	for _, s := range c.servers {
		s.mu.Lock()
		idle := s.idle
		s.idle, s.closed = nil, true
		s.mu.Unlock()
		for _, cn := range idle {
			cn.endSession()
		}
	}
}

func firstErr(errs ...error) error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}
