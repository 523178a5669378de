package resolver

import (
	"context"
	"errors"
	"net"
)

// Errors come back the way *net.Resolver returns them, as a bare
// *net.DNSError (never wrapped: blitiri.com.ar/go/spf and go-msgauth check
// with a type assertion, not errors.As):
//   - NXDOMAIN and NODATA: IsNotFound (Err "no such host"), as net.Resolver
//     does for both; SPF maps it to "none", DMARC to "no policy", DKIM to
//     permfail;
//   - SERVFAIL, REFUSED and other error codes, unreachable servers, timeouts:
//     IsTemporary (and IsTimeout for timeouts), so SPF gives temperror and
//     DKIM/DMARC tempfail. net.Resolver marks REFUSED permanent; for mail a
//     retry later is the safer answer;
//   - the caller's context ending: IsTimeout for a deadline, Err "operation
//     was canceled" for a cancel; UnwrapErr holds the context's error, so
//     errors.Is(err, context.DeadlineExceeded) works.
//
// UnwrapErr carries the cause, so errors.Is/As see through the DNSError.

const errNoSuchHost = "no such host"

// IsNotFound reports whether err says the name or the record type does not
// exist (NXDOMAIN or NODATA).
func IsNotFound(err error) bool {
	var de *net.DNSError
	return errors.As(err, &de) && de.IsNotFound
}

// IsTemporary reports whether err is a failure worth retrying later
// (SERVFAIL, timeout, unreachable server), as opposed to an answer.
func IsTemporary(err error) bool {
	var de *net.DNSError
	return errors.As(err, &de) && (de.IsTemporary || de.IsTimeout)
}

func notFoundError(name, server string) *net.DNSError {
	return &net.DNSError{Err: errNoSuchHost, Name: name, Server: server, IsNotFound: true}
}

// temporaryError describes a failed exchange; cause is kept for Unwrap.
func temporaryError(name, server string, cause error) *net.DNSError {
	de := &net.DNSError{Err: cause.Error(), Name: name, Server: server, IsTemporary: true, UnwrapErr: cause}
	var ne net.Error
	if errors.As(cause, &ne) && ne.Timeout() || errors.Is(cause, context.DeadlineExceeded) {
		de.IsTimeout = true
	}
	return de
}

// contextError is what a caller whose context ended gets, like net.Resolver.
func contextError(name string, err error) *net.DNSError {
	de := &net.DNSError{Name: name, UnwrapErr: err}
	if errors.Is(err, context.DeadlineExceeded) {
		de.Err = "i/o timeout"
		de.IsTimeout = true
		de.IsTemporary = true
	} else {
		de.Err = "operation was canceled"
	}
	return de
}
