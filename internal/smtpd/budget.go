// The budget of message bytes held in memory at once.

package smtpd

import (
	"sync/atomic"

	"github.com/emersion/go-smtp"
	"golang.org/x/sync/semaphore"
)

// fieldCost is what ParseMessage allocates per header field (a
// HeaderField), counted against the budget with the message's bytes.
const fieldCost = 64

// Replies of the budget.
var (
	errBudget     = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 1}, Message: "Insufficient system resources, try again later"}
	errBudgetSize = &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 3, 1}, Message: "Insufficient system storage for that SIZE now, try again later"}
	errNeverFits  = &smtp.SMTPError{Code: 552, EnhancedCode: smtp.EnhancedCode{5, 3, 4}, Message: "Message too big for system"}
)

// budget bounds the bytes of the messages held in memory at once (from
// the read-back after the transfer until the spool write): a message that
// does not fit now is refused with 451 4.3.1 instead of growing the
// process. A nil budget has no limit.
type budget struct {
	size int64
	sem  *semaphore.Weighted
	used atomic.Int64 // what sem holds, for the SIZE check at MAIL
}

func newBudget(size int64) *budget {
	if size <= 0 {
		return nil
	}
	return &budget{size: size, sem: semaphore.NewWeighted(size)}
}

// acquire reserves a message of msgBytes bytes (the client's) with
// fields header fields, without waiting. release gives it back.
func (b *budget) acquire(msgBytes, fields int64) (release func(), err error) {
	if b == nil {
		return func() {}, nil
	}
	if msgBytes > b.size {
		return nil, errNeverFits
	}
	n := min(msgBytes+fields*fieldCost, b.size)
	if !b.sem.TryAcquire(n) {
		return nil, errBudget
	}
	b.used.Add(n)
	var done atomic.Bool
	return func() {
		if done.CompareAndSwap(false, true) {
			b.used.Add(-n)
			b.sem.Release(n)
		}
	}, nil
}

// checkSize refuses at MAIL a message whose SIZE= (RFC 1870) says it
// cannot fit: never (552 5.3.4) or not now (452 4.3.1). It reserves
// nothing: SIZE is the client's word.
func (b *budget) checkSize(opts *smtp.MailOptions) error {
	if b == nil || opts == nil || opts.Size <= 0 {
		return nil
	}
	size := opts.Size
	if size > b.size {
		return errNeverFits
	}
	if size > b.size-b.used.Load() {
		return errBudgetSize
	}
	return nil
}
