package delivery

import "sync/atomic"

// Stats counts the worker's delivery attempts and their outcomes since it
// started (the host's metrics read it at each scrape).
type Stats struct {
	// Attempts counts settled attempts (a cancelled or parked one is not
	// settled); Completed those that left nothing to retry, Deferred those
	// put back for a retry.
	Attempts, Completed, Deferred int64
	// Recipients by outcome of their attempt: delivered (Maildir or
	// smarthost), failed for good, deferred.
	RcptDelivered, RcptFailed, RcptDeferred int64
	// DSNs counts the DSN messages spooled for failed recipients (none for
	// the null sender).
	DSNs int64
	// AtReception counts the messages delivered whole at reception
	// (DeliverNow), never spooled. Each is also one completed attempt with
	// its recipients delivered; one that fell back to the spool is an
	// attempt deferred, its delivered recipients counted delivered and the
	// rest deferred (the worker's attempt counts them again).
	AtReception int64
}

type stats struct {
	attempts, completed, deferred           atomic.Int64
	rcptDelivered, rcptFailed, rcptDeferred atomic.Int64
	dsns, atReception                       atomic.Int64
}

// Stats returns the counters so far.
func (w *Worker) Stats() Stats {
	s := &w.stats
	return Stats{Attempts: s.attempts.Load(), Completed: s.completed.Load(), Deferred: s.deferred.Load(),
		RcptDelivered: s.rcptDelivered.Load(), RcptFailed: s.rcptFailed.Load(), RcptDeferred: s.rcptDeferred.Load(),
		DSNs: s.dsns.Load(), AtReception: s.atReception.Load()}
}

// count records a settled attempt.
func (s *stats) count(out *Outcome) {
	s.attempts.Add(1)
	s.rcptDelivered.Add(int64(len(out.Delivered)))
	s.rcptFailed.Add(int64(len(out.Failed)))
	s.rcptDeferred.Add(int64(len(out.Deferred)))
	if len(out.Deferred) == 0 {
		s.completed.Add(1)
	} else {
		s.deferred.Add(1)
	}
}

// MaildirDirSyncs reports how many fsyncs of Maildirs' new/ directories the
// worker has made (copies linked into one mailbox at the same time share
// one: fewer than the copies when sessions deliver concurrently).
func (w *Worker) MaildirDirSyncs() uint64 { return w.newDirs.Count() }
