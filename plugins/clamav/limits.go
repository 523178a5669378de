package clamav

import (
	"fmt"
	"strings"
)

// LimitError is clamd's report that it stopped scanning part of a message
// at one of its limits. It wraps ErrLimitsExceeded.
type LimitError struct {
	Name   string // "Heuristics.Limits.Exceeded.MaxRecursion"
	Server string // the clamd that said so
}

func (e *LimitError) Error() string {
	return fmt.Sprintf("%v: %s on %s: part of the message was not scanned", ErrLimitsExceeded, e.Name, e.Server)
}

func (e *LimitError) Unwrap() error { return ErrLimitsExceeded }

// maxLimitName bounds the limit's name in SMTP replies and X-Virus-Status.
const maxLimitName = 64

// Limit is the name of the limit, "MaxRecursion", at most 64 bytes.
func (e *LimitError) Limit() string {
	l := strings.TrimPrefix(e.Name, LimitsPrefix)
	if l == "" {
		return "scan limits"
	}
	if len(l) > maxLimitName {
		l = l[:maxLimitName]
	}
	return l
}
