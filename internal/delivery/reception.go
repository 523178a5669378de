// Delivery at reception: a message for local Maildirs only, written into
// them before the 250 instead of through the spool.

package delivery

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"

	"github.com/elemta/elemta/internal/spool"
	"github.com/elemta/elemta/registry"
)

// DeliversNow reports whether a message for rcpts may be delivered at
// reception (DeliverNow): every recipient is delivered to a Maildir (none
// for the smarthost) and the plugin manager current now has no plugin at
// the pre-delivery or post-delivery stage (those run on a spooled
// message). A reload that adds such a plugin applies to the next message
// asked about.
func (w *Worker) DeliversNow(rcpts []string) bool {
	if len(rcpts) == 0 {
		return false
	}
	if w.cfg.Relay.Addr != "" {
		if _, remote := w.route(rcpts); len(remote) > 0 {
			return false
		}
	}
	m := w.plugins.Current()
	return len(m.Waves(registry.PreDelivery)) == 0 && len(m.Waves(registry.PostDelivery)) == 0
}

// DeliverNow delivers e, a message just received and not spooled (its ID
// and ReceivedAt set, msg its content), to every recipient's Maildir as a
// delivery attempt would: each copy fsynced, file and new/, under the name
// the attempt would give it. It returns once every copy is durable.
//
// When a copy cannot be written (a temporary error, or a permanent one the
// receiver should have refused at RCPT), it stops and spools e with the
// recipients delivered so far marked Delivered: the worker delivers the
// others (it finds a copy already written under its name and does not
// write it again), retries or bounces them as for any spooled message.
// spooled says so. The error is non-nil only when the message is neither
// delivered nor spooled (the spool write failed too): the copies written
// are then removed from new/, best effort, so that the client's retry of
// the refused message does not give those recipients a second copy.
func (w *Worker) DeliverNow(e *spool.Entry, msg io.WriterTo) (spooled bool, err error) {
	rcpts := e.Envelope.RcptTo
	var written []string // paths in new/
	for i, r := range rcpts {
		path, derr := w.deliverMaildir(e, r, slices.Index(rcpts, r), msg, true)
		if path != "" { // linked into new/ (not synced when derr is set)
			written = append(written, path)
		}
		if derr == nil {
			continue
		}
		return w.spoolRest(e, msg, i, written, derr)
	}
	w.stats.count(&Outcome{Delivered: rcpts})
	w.stats.atReception.Add(1)
	return false, nil
}

// spoolRest spools e for its recipients from the n-th on, the first n
// delivered at reception (their copies at written), after cause stopped
// the delivery.
func (w *Worker) spoolRest(e *spool.Entry, msg io.WriterTo, n int, written []string, cause error) (bool, error) {
	rcpts := e.Envelope.RcptTo
	e.Delivered = append([]string(nil), rcpts[:n]...)
	e.LastError = "451 4.3.0 at reception: " + cause.Error()
	if _, _, err := w.spool.PutMessage(e, false, msg); err != nil {
		for _, p := range written {
			if rerr := os.Remove(p); rerr == nil {
				_ = syncDir(filepath.Dir(p))
			}
		}
		return false, fmt.Errorf("deliver %s at reception: %w; then spool: %w", e.ID, cause, err)
	}
	out := &Outcome{Delivered: e.Delivered}
	for _, r := range rcpts[n:] {
		out.Deferred = append(out.Deferred, Failure{Rcpt: r, Status: "4.3.0", Reply: e.LastError})
	}
	w.stats.count(out)
	w.log.Warn("delivery at reception failed, message spooled", "id", e.ID, "delivered", n, "spooled_for", len(rcpts)-n, "err", cause)
	return true, nil
}
