package delivery

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/elemta/elemta/internal/dirsync"
	"github.com/elemta/elemta/internal/domains"
	mbox "github.com/elemta/elemta/internal/mailbox"
	"github.com/elemta/elemta/internal/spool"
	"github.com/elemta/elemta/pluginhost"
	"github.com/elemta/elemta/registry"
)

// Config tunes the worker. Zero values get the defaults noted.
type Config struct {
	// MaildirRoot is where mailboxes live (required).
	MaildirRoot string
	// Hostname names this MTA in Maildir file names and DSNs.
	Hostname string
	// Concurrency is how many messages go through the pre-delivery stage
	// and the Maildirs at once (default 4).
	Concurrency int
	// RelayConcurrency is how many smarthost transactions run at once
	// (default 4), apart from Concurrency: a stalled smarthost holds
	// these, never the local deliveries. RelayQueue is how many messages
	// may wait for one (default 4 × RelayConcurrency); a message finding
	// it full is put back without counting an attempt, due again when the
	// queue has room (after RetryBase at the latest).
	RelayConcurrency, RelayQueue int
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
	// plugins hands out the manager each stage runs on (swapped by a
	// config reload).
	plugins *pluginhost.Live
	spool   *spool.Spool
	log     *slog.Logger
	// newDirs group-commits the fsyncs of Maildirs' new/ directories:
	// concurrent copies into one mailbox (sessions delivering at
	// reception, delivery workers) share them.
	newDirs *dirsync.Set

	// stop ends claiming (Shutdown); abort cancels the deliveries in
	// flight (Shutdown's deadline).
	stop, abort     context.Context
	stopFn, abortFn context.CancelFunc
	mu              sync.Mutex
	active          int // passes (Run, RunOnce) running
	stopped         bool
	idle            chan struct{} // closed once stopped with no pass running
	idleOnce        sync.Once
	stats           stats
}

// New returns a worker over sp running mgr's delivery stages.
func New(cfg Config, mgr *pluginhost.Manager, sp *spool.Spool, logger *slog.Logger) *Worker {
	return NewLive(cfg, pluginhost.Pin(mgr), sp, logger)
}

// NewLive returns a worker running the delivery stages of the manager
// plugins holds when each stage starts (pre-delivery and post-delivery of
// one attempt may run on two managers across a reload).
func NewLive(cfg Config, plugins *pluginhost.Live, sp *spool.Spool, logger *slog.Logger) *Worker {
	if cfg.Hostname == "" {
		cfg.Hostname = "localhost"
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 4
	}
	if cfg.RelayConcurrency <= 0 {
		cfg.RelayConcurrency = 4
	}
	if cfg.RelayQueue <= 0 {
		cfg.RelayQueue = 4 * cfg.RelayConcurrency
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
	cfg.Relay.Timeouts = cfg.Relay.Timeouts.withDefaults()
	w := &Worker{cfg: cfg, local: domains.NewSet(cfg.LocalDomains), plugins: plugins, spool: sp, log: logger, newDirs: dirsync.NewSet(syncDir), idle: make(chan struct{})}
	w.stop, w.stopFn = context.WithCancel(context.Background())
	w.abort, w.abortFn = context.WithCancel(context.Background())
	return w
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

// attempt is one delivery attempt of a claimed entry, handed from the
// local phase to the relay phase when it has remote recipients.
type attempt struct {
	e      *spool.Entry
	pc     *registry.ProcessingContext
	out    *Outcome
	data   []byte   // the message as delivered (pre-delivery changes applied)
	remote []string // recipients for the smarthost
}

// Process runs one whole attempt on a claimed entry, the relay phase
// included, and settles it in the spool. An attempt cut short by ctx is
// not recorded: the entry is released as it was and Process returns an
// error wrapping errAborted.
func (w *Worker) Process(ctx context.Context, e *spool.Entry) error {
	a, err := w.localPhase(ctx, e)
	if err != nil || a == nil {
		return err
	}
	return w.relayPhase(ctx, a)
}

// localPhase runs the pre-delivery stage and the Maildir deliveries. It
// settles the entry and returns nil unless recipients remain for the
// smarthost; then the attempt is returned for relayPhase, still claimed.
func (w *Worker) localPhase(ctx context.Context, e *spool.Entry) (*attempt, error) {
	env := registry.Envelope{HELO: e.Envelope.HELO, MailFrom: e.Envelope.MailFrom, RcptTo: e.Pending(),
		AuthUser: e.Envelope.AuthUser, TLS: e.Envelope.TLS}
	msg, err := registry.ParseMessage(e.Message, env)
	if err != nil { // it parsed at reception; deliver it as it is
		msg = &registry.Message{Raw: e.Message, Envelope: env}
	}
	pc := registry.NewProcessingContext(msg, &registry.Session{ID: e.ID, Hostname: w.cfg.Hostname})
	a := &attempt{e: e, pc: pc, out: &Outcome{}, data: e.Message}
	pc.Set(OutcomeKey, a.out)
	out := a.out

	sr, err := w.stage(ctx, registry.PreDelivery, pc)
	switch {
	case err != nil && ctx.Err() != nil:
		return nil, w.release(e)
	case err != nil:
		for _, r := range env.RcptTo {
			out.Deferred = append(out.Deferred, Failure{Rcpt: r, Status: "4.3.0", Reply: "451 4.3.0 " + err.Error()})
		}
	case sr.Verdict.Action == registry.Quarantine:
		_, _, text := sr.Verdict.Reply()
		w.log.Info("quarantined at pre-delivery", "id", e.ID, "plugin", sr.DecidedBy)
		return nil, w.spool.Quarantine(e, sr.DecidedBy+": "+text)
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
			a.data = msg.Rewrite(sr.AddHeaders, sr.RemoveHeaders)
		}
		local := env.RcptTo
		if w.cfg.Relay.Addr != "" {
			local, a.remote = w.route(env.RcptTo)
		}
		// Local copies first: they never wait for the smarthost.
		for _, r := range local {
			idx := slices.Index(e.Envelope.RcptTo, r)
			_, err := w.deliverMaildir(e, r, idx, rawMessage(a.data), false)
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
		if len(a.remote) > 0 {
			return a, nil
		}
	}
	return nil, w.finish(ctx, a)
}

// relayPhase sends the attempt's remote recipients to the smarthost and
// settles the entry.
func (w *Worker) relayPhase(ctx context.Context, a *attempt) error {
	if ctx.Err() != nil {
		return w.release(a.e)
	}
	if err := w.relay(ctx, a.e, a.remote, a.data, a.out); err != nil {
		return w.release(a.e)
	}
	return w.finish(ctx, a)
}

// release gives back an entry whose attempt was cut short, unchanged:
// no attempt counted, no DSN; local copies it wrote are found by the
// retry, which is due at once (after a restart, at the stored time).
func (w *Worker) release(e *spool.Entry) error {
	w.spool.Release(e.ID)
	w.log.Info("delivery attempt cancelled", "id", e.ID)
	return fmt.Errorf("delivery %s: %w", e.ID, errAborted)
}

// park gives back an attempt whose remote recipients found the relay
// queue full: nothing is recorded (the local copies are found again). The
// entry is due again when the queue has room, after RetryBase at the
// latest.
func (w *Worker) park(a *attempt) {
	w.spool.ReleaseUntil(a.e.ID, w.cfg.Now().Add(w.cfg.RetryBase))
	w.log.Info("relay queue full, message put back", "id", a.e.ID, "retry_in", w.cfg.RetryBase.String())
}

// finish settles an attempt: expiry, the post-delivery stage, the DSN,
// then complete or defer.
func (w *Worker) finish(ctx context.Context, a *attempt) error {
	e, out := a.e, a.out
	// Temporary failures past MaxAge fail for good.
	if now := w.cfg.Now(); now.Sub(e.ReceivedAt) >= w.cfg.MaxAge {
		for _, f := range out.Deferred {
			f.Status = "5.4.7"
			f.Reply = "550 5.4.7 Delivery time expired; last error: " + f.Reply
			out.Failed = append(out.Failed, f)
		}
		out.Deferred = nil
	}

	if _, err := w.stage(ctx, registry.PostDelivery, a.pc); err != nil {
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
	w.stats.count(out)
	w.log.Info("delivery attempt", "id", e.ID, "delivered", len(out.Delivered), "failed", len(out.Failed), "deferred", len(out.Deferred))
	if len(out.Deferred) == 0 {
		return w.spool.Complete(e.ID)
	}
	e.Attempts++
	e.LastError = out.Deferred[0].Reply
	return w.spool.Defer(e, w.cfg.Now().Add(spool.Backoff(e.Attempts, w.cfg.RetryBase, w.cfg.RetryMax)))
}

func (w *Worker) stage(ctx context.Context, stage registry.Stage, pc *registry.ProcessingContext) (*pluginhost.StageResult, error) {
	ctx, cancel := context.WithTimeout(ctx, w.cfg.StageTimeout)
	defer cancel()
	lease := w.plugins.Acquire()
	defer lease.Release()
	return lease.Manager().ExecuteStage(ctx, stage, pc)
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
	box, err := mbox.Path(root, rcpt) // the receiver refuses at RCPT what this refuses
	if err != nil {
		return "", &permError{"5.1.3", "Bad destination mailbox address syntax"}
	}
	return box, nil
}

// uniqueName is the copy's Maildir name: time.Eid_n.host (see maildir(5)),
// the same on every attempt, and at reception (DeliverNow).
func (w *Worker) uniqueName(e *spool.Entry, idx int) string {
	host := strings.NewReplacer("/", `\057`, ":", `\072`).Replace(w.cfg.Hostname)
	return fmt.Sprintf("%d.E%s_%d.%s", e.ReceivedAt.Unix(), e.ID, idx, host)
}

// rawMessage is a message held whole, written in one call (and any number
// of times, unlike a bytes.Reader).
type rawMessage []byte

func (m rawMessage) WriteTo(w io.Writer) (int64, error) {
	n, err := w.Write(m)
	return int64(n), err
}

// writeBuffers buffer the writes of a message written from its pieces
// (registry.Message.Rewriter: one write per header field).
var writeBuffers = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 32<<10) }}

// deliverMaildir writes msg as rcpt's copy: tmp/, fsync, link into new/,
// fsync new/ (shared with the copies linked there meanwhile), and returns
// the copy's path in new/. An existing copy (from an attempt cut short)
// counts as done; fresh skips looking for one (a queue id never used
// before: DeliverNow).
func (w *Worker) deliverMaildir(e *spool.Entry, rcpt string, idx int, msg io.WriterTo, fresh bool) (string, error) {
	box, err := mailbox(w.cfg.MaildirRoot, rcpt)
	if err != nil {
		return "", err
	}
	for _, d := range []string{"tmp", "new", "cur"} {
		if err := os.MkdirAll(filepath.Join(box, d), 0o700); err != nil {
			return "", fmt.Errorf("maildir %s: %w", box, err)
		}
	}
	name := w.uniqueName(e, idx)
	final := filepath.Join(box, "new", name)
	if !fresh {
		if _, err := os.Stat(final); err == nil {
			// Written by an attempt that crashed before completing the
			// entry, perhaps before new/ was synced: sync it now, before
			// this attempt reports the copy delivered.
			return final, w.newDirs.Sync(filepath.Join(box, "new"))
		}
		if m, _ := filepath.Glob(filepath.Join(box, "cur", name+"*")); len(m) > 0 {
			return final, nil // already delivered and seen by a reader
		}
	}
	tmp := filepath.Join(box, "tmp", name)
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return "", fmt.Errorf("maildir %s: %w", box, err)
	}
	err = writeMessage(f, msg)
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
			return "", fmt.Errorf("maildir %s: mailbox full: %w", box, err)
		}
		return "", fmt.Errorf("maildir %s: %w", box, err)
	}
	return final, w.newDirs.Sync(filepath.Join(box, "new"))
}

// writeMessage writes msg to f: in one write when it is held whole,
// through a pooled buffer otherwise.
func writeMessage(f *os.File, msg io.WriterTo) error {
	if raw, ok := msg.(rawMessage); ok {
		_, err := f.Write(raw)
		return err
	}
	bw := writeBuffers.Get().(*bufio.Writer)
	bw.Reset(f)
	defer func() { bw.Reset(nil); writeBuffers.Put(bw) }()
	if _, err := msg.WriteTo(bw); err != nil {
		return err
	}
	return bw.Flush()
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
		Envelope: spool.Envelope{MailFrom: "", RcptTo: []string{e.Envelope.MailFrom}, SMTPUTF8: globalDSN(e, failed)}, Message: dsn}, false)
	if err != nil {
		return fmt.Errorf("bounce %s: %w", e.ID, err)
	}
	w.stats.dsns.Add(1)
	w.log.Info("bounced", "id", e.ID, "dsn", id, "to", e.Envelope.MailFrom, "rcpts", len(failed))
	return nil
}
