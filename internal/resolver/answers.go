package resolver

import (
	"errors"
	"net"
	"sync/atomic"
)

// answerCounts counts lookups by outcome (Stats).
type answerCounts struct {
	questions, notFound, timeouts, failures atomic.Uint64
}

func (a *answerCounts) count(err error) {
	a.questions.Add(1)
	if err == nil {
		return
	}
	var de *net.DNSError
	switch {
	case errors.As(err, &de) && de.IsNotFound:
		a.notFound.Add(1)
	case errors.As(err, &de) && de.IsTimeout:
		a.timeouts.Add(1)
	default:
		a.failures.Add(1)
	}
}
