package resolver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/miekg/dns"
)

// ednsSize is the UDP payload size we advertise (DNS flag day 2020): large
// enough for a DKIM RSA-2048 key, small enough to avoid fragmentation.
const ednsSize = 1232

// errMismatch marks a response whose id or question is not the query's.
var errMismatch = errors.New("response does not match the query")

// exchange sends q to server over UDP, and again over TCP when the answer
// comes back truncated. Each transport gets its own timeout, and neither
// outlives ctx.
func (r *Resolver) exchange(ctx context.Context, server string, q *dns.Msg) (*dns.Msg, error) {
	resp, err := r.exchangeOver(ctx, "udp", server, q)
	if err != nil || !resp.Truncated {
		return resp, err
	}
	return r.exchangeOver(ctx, "tcp", server, q)
}

func (r *Resolver) exchangeOver(ctx context.Context, network, server string, q *dns.Msg) (*dns.Msg, error) {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	r.exchanges.Add(1)

	var d net.Dialer
	conn, err := d.DialContext(ctx, network, server)
	if err != nil {
		return nil, fmt.Errorf("dial %s %s: %w", network, server, err)
	}
	defer conn.Close()
	// The deadline bounds every read and write; AfterFunc also unblocks them
	// the moment ctx is canceled without a deadline.
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	msg := q.Copy()
	msg.Id = dns.Id()
	co := &dns.Conn{Conn: conn, UDPSize: ednsSize}
	if err := co.WriteMsg(msg); err != nil {
		return nil, ioError(ctx, "write", network, server, err)
	}
	for {
		resp, err := co.ReadMsg()
		if err != nil {
			var ne net.Error
			if network == "udp" && !errors.As(err, &ne) && ctx.Err() == nil {
				continue // a garbled datagram: keep waiting for the real answer
			}
			return nil, ioError(ctx, "read", network, server, err)
		}
		if err := matches(msg, resp); err != nil {
			if network == "udp" {
				continue // stale or spoofed datagram: ignore it, as resolvers do
			}
			return nil, fmt.Errorf("read %s %s: %w", network, server, err)
		}
		return resp, nil
	}
}

// ioError names the operation. Running out of time, by the per-query
// timeout or the caller's deadline, reads "i/o timeout" (os.ErrDeadlineExceeded,
// a net.Error whose Timeout() is true), as in net.Resolver's errors.
func ioError(ctx context.Context, op, network, server string, err error) error {
	var ne net.Error
	if ctx.Err() == context.DeadlineExceeded || errors.As(err, &ne) && ne.Timeout() {
		err = os.ErrDeadlineExceeded
	} else if ctx.Err() != nil {
		err = ctx.Err()
	}
	return fmt.Errorf("%s %s %s: %w", op, network, server, err)
}

// matches checks that resp answers q: same id, a response, same question
// (type, class, and the name compared in its canonical form: same wire
// labels, ASCII case-insensitive). A name with a byte that presentation
// format escapes (a space, `;`, non-ASCII) prints differently in the reply
// than it may have been written in the query; it is the same name.
func matches(q, resp *dns.Msg) error {
	if resp.Id != q.Id || !resp.Response {
		return errMismatch
	}
	if len(resp.Question) == 0 {
		// Some servers leave the question out of error responses.
		if resp.Rcode != dns.RcodeSuccess {
			return nil
		}
		return errMismatch
	}
	a, b := resp.Question[0], q.Question[0]
	if a.Qtype != b.Qtype || a.Qclass != b.Qclass {
		return errMismatch
	}
	an, aok := canonicalName(a.Name)
	bn, bok := canonicalName(b.Name)
	if !aok || !bok || an != bn {
		return errMismatch
	}
	return nil
}
