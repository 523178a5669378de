// Package delivery takes messages from the spool, runs the pre-delivery
// stage, delivers each recipient's copy into a local Maildir under a
// configured root (<root>/<domain>/<local-part>/{tmp,new,cur}) or relays
// the message to a smarthost over SMTP, runs the
// post-delivery stage and settles the spool entry: complete, deferred with
// backoff, quarantined, or bounced with an RFC 3464 DSN to the sender.
//
// Delivery is idempotent: a copy's Maildir file name is derived from the
// queue id and the recipient's position, so after a crash between writing
// the copy and updating the spool, the retry finds the copy and does not
// write it again. Every message acknowledged with 250 reaches each
// recipient exactly once.
package delivery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/elemta/elemta/internal/domains"
	"github.com/elemta/elemta/internal/spool"
	"github.com/elemta/elemta/registry"
)

// Config tunes the worker. Zero values get the defaults noted.
type Config struct {
	// MaildirRoot is where mailboxes live (required).
	MaildirRoot string
	// Hostname names this MTA in Maildir file names and DSNs.
	Hostname string
	// Concurrency is how many messages are delivered at once (default 4).
	Concurrency int
	// RetryBase and RetryMax bound the backoff between attempts (default
	// 1 minute doubling to 1 hour); MaxAge is how long temporary failures
	// are retried before they bounce (default 5 days).
	RetryBase, RetryMax, MaxAge time.Duration
	// StageTimeout bounds one stage's run (default 2 minutes).
	StageTimeout time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Relay, when its Addr is set, sends mail for recipients outside
	// LocalDomains to a smarthost; with no LocalDomains, every recipient.
	Relay Relay
	// LocalDomains are delivered to the Maildirs even when Relay is set.
	LocalDomains []string
}

// Worker delivers spooled messages.
type Worker struct {
	cfg   Config
	local domains.Set
	mgr   *registry.Manager
	spool *spool.Spool
	log   *slog.Logger
}

// New returns a worker over sp running mgr's delivery stages.
func New(cfg Config, mgr *registry.Manager, sp *spool.Spool, logger *slog.Logger) *Worker {
	if cfg.Hostname == "" {
		cfg.Hostname = "localhost"
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 4
	}
	if cfg.RetryBase <= 0 {
		cfg.RetryBase = time.Minute
	}
	if cfg.RetryMax <= 0 {
		cfg.RetryMax = time.Hour
	}
	if cfg.MaxAge <= 0 {
		cfg.MaxAge = 5 * 24 * time.Hour
	}
	if cfg.StageTimeout <= 0 {
		cfg.StageTimeout = 2 * time.Minute
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Worker{cfg: cfg, local: domains.NewSet(cfg.LocalDomains), mgr: mgr, spool: sp, log: logger}
}

// Run delivers until ctx is cancelled: whatever is due, then it waits for
// the next due time or a new message. Deliveries in flight when ctx ends
// are finished before Run returns.
func (w *Worker) Run(ctx context.Context) error {
	for {
		if _, err := w.RunOnce(ctx); err != nil {
			w.log.Error("delivery pass", "err", err)
		}
		wait := time.Hour
		if next, ok := w.spool.NextDue(); ok {
			wait = max(next.Sub(w.cfg.Now()), 10*time.Millisecond)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-w.spool.Notify():
		case <-t.C:
		}
		t.Stop()
	}
}

// RunOnce delivers every entry due now and returns how many it handled.
// Once ctx is cancelled it claims nothing more.
func (w *Worker) RunOnce(ctx context.Context) (int, error) {
	var g errgroup.Group
	g.SetLimit(w.cfg.Concurrency)
	n := 0
	var errs []error
	for ctx.Err() == nil {
		batch, err := w.spool.Claim(w.cfg.Concurrency * 4)
		if err != nil {
			errs = append(errs, err)
		}
		if len(batch) == 0 {
			break
		}
		for _, e := range batch {
			n++
			g.Go(func() error {
				// In-flight work finishes even when ctx is cancelled.
				if err := w.Process(context.WithoutCancel(ctx), e); err != nil {
					// The outcome could not be recorded (spool write
					// failed): try again after the base delay, not in a
					// hot loop. Delivered copies are not written twice.
					w.log.Error("delivery", "id", e.ID, "err", err)
					w.spool.ReleaseUntil(e.ID, w.cfg.Now().Add(w.cfg.RetryBase))
				}
				return nil
			})
		}
		if err := g.Wait(); err != nil {
			errs = append(errs, err)
		}
	}
	return n, errors.Join(errs...)
}

// Outcome is what one delivery attempt did; post-delivery plugins find it
// with pc.Get(OutcomeKey).
type Outcome struct {
	Delivered []string
	Failed    []Failure
	Deferred  []Failure
}

// OutcomeKey is the ProcessingContext key of the attempt's *Outcome.
const OutcomeKey = "delivery.outcome"

// Failure is one recipient that was not delivered.
type Failure struct {
	Rcpt   string
	Status string // RFC 3463, "5.1.1"
	Reply  string // "550 5.1.1 ..." for the DSN's Diagnostic-Code
}

// errPerm marks permanent delivery errors.
type permError struct {
	status, text string
}

func (e *permError) Error() string { return e.status + " " + e.text }

// Process handles one claimed entry and settles it in the spool.
func (w *Worker) Process(ctx context.Context, e *spool.Entry) error {
	env := registry.Envelope{HELO: e.Envelope.HELO, MailFrom: e.Envelope.MailFrom, RcptTo: e.Pending(),
		AuthUser: e.Envelope.AuthUser, TLS: e.Envelope.TLS}
	msg, err := registry.ParseMessage(e.Message, env)
	if err != nil { // it parsed at reception; deliver it as it is
		msg = &registry.Message{Raw: e.Message, Envelope: env}
	}
	pc := registry.NewProcessingContext(msg, &registry.Session{ID: e.ID, Hostname: w.cfg.Hostname})
	out := &Outcome{}
	pc.Set(OutcomeKey, out)

	sr, err := w.stage(ctx, registry.PreDelivery, pc)
	data := e.Message
	switch {
	case err != nil:
		for _, r := range env.RcptTo {
			out.Deferred = append(out.Deferred, Failure{Rcpt: r, Status: "4.3.0", Reply: "451 4.3.0 " + err.Error()})
		}
	case sr.Verdict.Action == registry.Quarantine:
		_, _, text := sr.Verdict.Reply()
		w.log.Info("quarantined at pre-delivery", "id", e.ID, "plugin", sr.DecidedBy)
		return w.spool.Quarantine(e, sr.DecidedBy+": "+text)
	case sr.Verdict.Action == registry.Reject || sr.Verdict.Action == registry.TempFail:
		code, enh, text := sr.Verdict.Reply()
		f := Failure{Status: enh, Reply: fmt.Sprintf("%d %s %s", code, enh, text)}
		for _, r := range env.RcptTo {
			f.Rcpt = r
			if sr.Verdict.Action == registry.Reject {
				out.Failed = append(out.Failed, f)
			} else {
				out.Deferred = append(out.Deferred, f)
			}
		}
	default:
		if len(sr.AddHeaders) > 0 || len(sr.RemoveHeaders) > 0 {
			data = msg.Rewrite(sr.AddHeaders, sr.RemoveHeaders)
		}
		local := env.RcptTo
		if w.cfg.Relay.Addr != "" {
			var remote []string
			local, remote = w.route(env.RcptTo)
			if len(remote) > 0 {
				w.relay(ctx, e.Envelope.MailFrom, remote, data, out)
			}
		}
		for _, r := range local {
			idx := slices.Index(e.Envelope.RcptTo, r)
			err := w.deliverMaildir(e, r, idx, data)
			var perm *permError
			switch {
			case err == nil:
				out.Delivered = append(out.Delivered, r)
			case errors.As(err, &perm):
				out.Failed = append(out.Failed, Failure{Rcpt: r, Status: perm.status, Reply: "550 " + perm.status + " " + perm.text})
			default:
				out.Deferred = append(out.Deferred, Failure{Rcpt: r, Status: "4.3.0", Reply: "451 4.3.0 " + err.Error()})
			}
		}
	}

	// Temporary failures past MaxAge fail for good.
	if now := w.cfg.Now(); now.Sub(e.ReceivedAt) >= w.cfg.MaxAge {
		for _, f := range out.Deferred {
			f.Status = "5.4.7"
			f.Reply = "550 5.4.7 Delivery time expired; last error: " + f.Reply
			out.Failed = append(out.Failed, f)
		}
		out.Deferred = nil
	}

	if _, err := w.stage(ctx, registry.PostDelivery, pc); err != nil {
		w.log.Warn("post-delivery", "id", e.ID, "err", err)
	}

	for _, f := range out.Failed {
		e.Failed = append(e.Failed, f.Rcpt)
	}
	e.Delivered = append(e.Delivered, out.Delivered...)
	if len(out.Failed) > 0 && e.Envelope.MailFrom != "" {
		if err := w.bounce(e, out.Failed); err != nil {
			return err // the entry stays; the retry bounces again
		}
	}
	w.log.Info("delivery attempt", "id", e.ID, "delivered", len(out.Delivered), "failed", len(out.Failed), "deferred", len(out.Deferred))
	if len(out.Deferred) == 0 {
		return w.spool.Complete(e.ID)
	}
	e.Attempts++
	e.LastError = out.Deferred[0].Reply
	return w.spool.Defer(e, w.cfg.Now().Add(spool.Backoff(e.Attempts, w.cfg.RetryBase, w.cfg.RetryMax)))
}

func (w *Worker) stage(ctx context.Context, stage registry.Stage, pc *registry.ProcessingContext) (*registry.StageResult, error) {
	ctx, cancel := context.WithTimeout(ctx, w.cfg.StageTimeout)
	defer cancel()
	return w.mgr.ExecuteStage(ctx, stage, pc)
}

// mailbox returns the Maildir of rcpt under root, or a permanent error for
// an address that cannot name one safely.
// route splits recipients between the local Maildirs (LocalDomains) and
// the smarthost (everyone else).
func (w *Worker) route(rcpts []string) (local, remote []string) {
	for _, r := range rcpts {
		if w.local.HasAddress(r) {
			local = append(local, r)
		} else {
			remote = append(remote, r)
		}
	}
	return local, remote
}

func mailbox(root, rcpt string) (string, error) {
	at := strings.LastIndexByte(rcpt, '@')
	if at <= 0 || at == len(rcpt)-1 {
		return "", &permError{"5.1.3", "Bad destination mailbox address syntax"}
	}
	// The domain is lowercased and its root dot dropped: example.org.
	// and Example.ORG share example.org's Maildirs (the receiver's
	// local_domains check compares them the same way).
	local, domain := rcpt[:at], domains.Of(rcpt)
	if strings.EqualFold(local, "postmaster") {
		local = "postmaster" // case-insensitive by RFC 5321 §4.5.1; other local parts keep their case
	}
	for _, part := range []string{local, domain} {
		// Longer than NAME_MAX the directory can never be created: fail
		// now rather than retry until max_queue_age.
		if part == "" || part == "." || part == ".." || strings.HasPrefix(part, ".") || len(part) > 255 {
			return "", &permError{"5.1.3", "Bad destination mailbox address syntax"}
		}
		for _, c := range part {
			if c < 0x21 || c == 0x7f || c == '/' || c == '\\' || c == '"' {
				return "", &permError{"5.1.3", "Bad destination mailbox address syntax"}
			}
		}
	}
	return filepath.Join(root, domain, local), nil
}

// uniqueName is the copy's Maildir name: time.Eid_n.host (see maildir(5)),
// the same on every attempt.
func (w *Worker) uniqueName(e *spool.Entry, idx int) string {
	host := strings.NewReplacer("/", `\057`, ":", `\072`).Replace(w.cfg.Hostname)
	return fmt.Sprintf("%d.E%s_%d.%s", e.ReceivedAt.Unix(), e.ID, idx, host)
}

// deliverMaildir writes data as rcpt's copy: tmp/, fsync, link into new/,
// fsync new/. An existing copy (from an attempt cut short) counts as done.
func (w *Worker) deliverMaildir(e *spool.Entry, rcpt string, idx int, data []byte) error {
	box, err := mailbox(w.cfg.MaildirRoot, rcpt)
	if err != nil {
		return err
	}
	for _, d := range []string{"tmp", "new", "cur"} {
		if err := os.MkdirAll(filepath.Join(box, d), 0o700); err != nil {
			return fmt.Errorf("maildir %s: %w", box, err)
		}
	}
	name := w.uniqueName(e, idx)
	final := filepath.Join(box, "new", name)
	if _, err := os.Stat(final); err == nil {
		// Written by an attempt that crashed before completing the entry,
		// perhaps before new/ was synced: sync it now, before this attempt
		// reports the copy delivered.
		return syncDir(filepath.Join(box, "new"))
	}
	if m, _ := filepath.Glob(filepath.Join(box, "cur", name+"*")); len(m) > 0 {
		return nil // already delivered and seen by a reader
	}
	tmp := filepath.Join(box, "tmp", name)
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("maildir %s: %w", box, err)
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Link(tmp, final)
		if errors.Is(err, os.ErrExist) {
			err = nil
		}
	}
	_ = os.Remove(tmp)
	if err != nil {
		if errors.Is(err, syscall.EDQUOT) {
			return fmt.Errorf("maildir %s: mailbox full: %w", box, err)
		}
		return fmt.Errorf("maildir %s: %w", box, err)
	}
	return syncDir(filepath.Join(box, "new"))
}

// syncDir fsyncs a directory, making the names linked into it durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("maildir %s: %w", filepath.Dir(dir), err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("maildir %s: sync: %w", filepath.Dir(dir), err)
	}
	return nil
}

// bounce spools a DSN for failed to e's sender. Its queue id is derived
// from e's, so bouncing again after a crash replaces it rather than adding
// a second one.
func (w *Worker) bounce(e *spool.Entry, failed []Failure) error {
	now := w.cfg.Now()
	dsn := BuildDSN(w.cfg.Hostname, e, failed, now)
	id := fmt.Sprintf("%sb%d", e.ID, e.Attempts)
	if len(id) > 64 {
		id = spool.NewID(now)
	}
	_, err := w.spool.Put(&spool.Entry{ID: id, ReceivedAt: now,
		Envelope: spool.Envelope{MailFrom: "", RcptTo: []string{e.Envelope.MailFrom}}, Message: dsn}, false)
	if err != nil {
		return fmt.Errorf("bounce %s: %w", e.ID, err)
	}
	w.log.Info("bounced", "id", e.ID, "dsn", id, "to", e.Envelope.MailFrom, "rcpts", len(failed))
	return nil
}
