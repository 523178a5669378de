package pluginhost

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"reflect"
	"time"

	"github.com/elemta/elemta/registry"
)

// remoteLog is a worker's slog.Handler: each record crosses to the host,
// which logs it with the instance's logger, attributes (groups flattened
// to "group.key") and level kept.
type remoteLog struct {
	w      *worker
	level  slog.Level
	attrs  []logAttr
	prefix string // open groups, "g1.g2."
}

func (h *remoteLog) Enabled(_ context.Context, l slog.Level) bool { return l >= h.level }

func (h *remoteLog) Handle(_ context.Context, r slog.Record) error {
	lf := &logFrame{Time: r.Time, Level: int(r.Level), Msg: r.Message, Attrs: append([]logAttr(nil), h.attrs...)}
	r.Attrs(func(a slog.Attr) bool {
		lf.Attrs = flatten(lf.Attrs, h.prefix, a)
		return true
	})
	return h.w.k.send(&frame{Kind: kindLog, Log: lf})
}

func (h *remoteLog) WithAttrs(as []slog.Attr) slog.Handler {
	n := *h
	n.attrs = append([]logAttr(nil), h.attrs...)
	for _, a := range as {
		n.attrs = flatten(n.attrs, h.prefix, a)
	}
	return &n
}

func (h *remoteLog) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	n := *h
	n.prefix = h.prefix + name + "."
	return &n
}

func flatten(out []logAttr, prefix string, a slog.Attr) []logAttr {
	v := a.Value.Resolve()
	if v.Kind() == slog.KindGroup {
		p := prefix
		if a.Key != "" {
			p += a.Key + "."
		}
		for _, g := range v.Group() {
			out = flatten(out, p, g)
		}
		return out
	}
	if a.Key == "" {
		return out
	}
	return append(out, logAttr{Key: prefix + a.Key, Value: v.String()})
}

// remoteResolver is a worker's registry.Resolver: every lookup goes to the
// host's resolver, so the worker shares the host's cache, static zone and
// test resolvers, and keeps the Resolver error contract (a bare
// *net.DNSError; the context's error through UnwrapErr).
type remoteResolver struct{ w *worker }

var _ registry.Resolver = remoteResolver{}

func (r remoteResolver) lookup(ctx context.Context, method, name string) (*dnsFrame, error) {
	q := &dnsFrame{Method: method, Name: name}
	if d, ok := ctx.Deadline(); ok {
		q.Deadline = d
	}
	a, err := r.w.request(ctx, &frame{Kind: kindDNS, DNS: q})
	if err != nil {
		return nil, ctxDNSError(ctx, name, err)
	}
	if a.DNS == nil {
		return nil, &net.DNSError{Err: "no answer from the plugin host", Name: name, IsTemporary: true}
	}
	if a.DNS.Err != nil {
		e := a.DNS.Err
		if ctx.Err() != nil {
			e.UnwrapErr = ctx.Err()
		}
		return nil, e
	}
	return a.DNS, nil
}

// ctxDNSError is the error of a lookup that could not be asked or whose
// context ended: as *net.Resolver reports them.
func ctxDNSError(ctx context.Context, name string, err error) error {
	switch {
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(ctx.Err(), context.DeadlineExceeded):
		return &net.DNSError{Err: "i/o timeout", Name: name, IsTimeout: true, IsTemporary: true, UnwrapErr: context.DeadlineExceeded}
	case errors.Is(err, context.Canceled) || errors.Is(ctx.Err(), context.Canceled):
		return &net.DNSError{Err: "operation was canceled", Name: name, UnwrapErr: context.Canceled}
	}
	return &net.DNSError{Err: err.Error(), Name: name, IsTemporary: true}
}

func (r remoteResolver) LookupTXT(ctx context.Context, name string) ([]string, error) {
	a, err := r.lookup(ctx, "TXT", name)
	if err != nil {
		return nil, err
	}
	return a.TXT, nil
}

func (r remoteResolver) LookupMX(ctx context.Context, name string) ([]*net.MX, error) {
	a, err := r.lookup(ctx, "MX", name)
	if err != nil {
		return nil, err
	}
	return a.MX, nil
}

func (r remoteResolver) LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error) {
	a, err := r.lookup(ctx, "IP", host)
	if err != nil {
		return nil, err
	}
	return a.IPs, nil
}

func (r remoteResolver) LookupAddr(ctx context.Context, addr string) ([]string, error) {
	a, err := r.lookup(ctx, "PTR", addr)
	if err != nil {
		return nil, err
	}
	return a.Names, nil
}

// answerDNS runs a worker's lookup on the host's resolver.
func answerDNS(ctx context.Context, res registry.Resolver, q *dnsFrame) *dnsFrame {
	if !q.Deadline.IsZero() {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, q.Deadline)
		defer cancel()
	}
	a := &dnsFrame{Method: q.Method, Name: q.Name}
	var err error
	switch q.Method {
	case "TXT":
		a.TXT, err = res.LookupTXT(ctx, q.Name)
	case "MX":
		a.MX, err = res.LookupMX(ctx, q.Name)
	case "IP":
		a.IPs, err = res.LookupIPAddr(ctx, q.Name)
	case "PTR":
		a.Names, err = res.LookupAddr(ctx, q.Name)
	default:
		err = &net.DNSError{Err: "unknown lookup " + q.Method, Name: q.Name}
	}
	if err != nil {
		var de *net.DNSError
		if errors.As(err, &de) {
			c := *de
			c.UnwrapErr = nil // an error value gob cannot carry; the worker sets its own context's
			a.Err = &c
		} else {
			a.Err = &net.DNSError{Err: err.Error(), Name: q.Name, IsTemporary: true}
		}
	}
	return a
}

func isNilValue(v any) bool {
	if v == nil {
		return true
	}
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Pointer, reflect.Interface, reflect.Map, reflect.Slice:
		return rv.IsNil()
	}
	return false
}

var _ = time.Now
