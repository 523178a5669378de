package registry

import (
	"cmp"
	"context"
	"slices"
	"sync"
	"time"

	"github.com/elemta/elemta/internal/catalog"
)

// Phase says how far an SMTP session has got when pre-reception runs. The
// zero value, PhaseMessage, means the whole envelope and message are known
// (offline scans, and every stage after pre-reception).
type Phase int

// SMTP phases at which pre-reception runs.
const (
	PhaseMessage Phase = iota
	PhaseConnect
	PhaseHelo
	PhaseMail
	PhaseRcpt
	numPhases
)

// Phases lists every phase: PhaseMessage, then the SMTP phases in the order
// a session passes them.
func Phases() []Phase { return []Phase{PhaseMessage, PhaseConnect, PhaseHelo, PhaseMail, PhaseRcpt} }

// Session is what the host knows about the SMTP session a message came in.
type Session struct {
	ID       string
	Hostname string // our own name, as announced in the greeting
}

// Result is one plugin's outcome at one stage. Plugins fill the first group
// of fields; the executor fills the second.
type Result struct {
	Verdict Verdict
	// Score adds to the stage's spam score.
	Score float64
	// AddHeaders are prepended to the message, RemoveHeaders taken out,
	// when it is queued. A failed call's own are discarded; its result
	// removes the fields its config owns instead (HeaderOwner).
	AddHeaders    []Field
	RemoveHeaders []Removal
	// Data is the plugin's typed result for plugins that run later
	// (*SPFResult, *DKIMResult, *ScanResult, ...): see Find.
	Data any
	// Details is a short human-readable account for logs and `elemta scan`.
	Details string

	Plugin   string
	Stage    Stage
	Duration time.Duration
	Err      error
	TimedOut bool
	Panicked bool
}

// ProcessingContext carries a message through the stages. It is safe for
// concurrent use: plugins of one stage run at the same time.
type ProcessingContext struct {
	Message *Message
	Session *Session
	// Phase is set by the SMTP host for pre-reception; see Phase.
	Phase Phase

	mu      sync.RWMutex
	results []recorded
	values  map[string]any
}

// recorded is a result and the config position of its instance.
type recorded struct {
	res   *Result
	order int
}

// notOrdered is the config position of results added with AddResult: after
// every result the executor recorded.
const notOrdered = int(^uint(0) >> 1)

func init() {
	catalog.RecordResult = func(pc, res any, order int) { pc.(*ProcessingContext).record(res.(*Result), order) }
	catalog.ResultOrders = func(pc any) []int {
		p := pc.(*ProcessingContext)
		p.mu.RLock()
		defer p.mu.RUnlock()
		out := make([]int, len(p.results))
		for i, r := range p.results {
			out[i] = r.order
		}
		return out
	}
}

// NewProcessingContext returns a context for msg in session s (s may be nil).
func NewProcessingContext(msg *Message, s *Session) *ProcessingContext {
	if s == nil {
		s = &Session{}
	}
	return &ProcessingContext{Message: msg, Session: s}
}

// Results returns the results recorded so far, in the order they completed
// stage by stage (earlier stages first).
func (pc *ProcessingContext) Results() []*Result {
	pc.mu.RLock()
	defer pc.mu.RUnlock()
	out := make([]*Result, len(pc.results))
	for i, r := range pc.results {
		out[i] = r.res
	}
	return out
}

// Result returns the latest result of the named plugin.
func (pc *ProcessingContext) Result(plugin string) (*Result, bool) {
	pc.mu.RLock()
	defer pc.mu.RUnlock()
	for i := len(pc.results) - 1; i >= 0; i-- {
		if r := pc.results[i].res; r.Plugin == plugin {
			return r, true
		}
	}
	return nil, false
}

// AddResult records a result as if a plugin had returned it: for hosts
// that call capability methods directly, and for tests.
func (pc *ProcessingContext) AddResult(r *Result) { pc.record(r, notOrdered) }

func (pc *ProcessingContext) record(r *Result, order int) {
	pc.mu.Lock()
	if pc.results == nil {
		pc.results = make([]recorded, 0, 8) // a transaction's results, without regrowing
	}
	pc.results = append(pc.results, recorded{r, order})
	pc.mu.Unlock()
}

// Find returns the first of FindAll: the Data of type T published by the
// plugin instance that comes first in config order, for example
// Find[*registry.SPFResult](pc). This is how plugins read each other's
// outcomes without importing each other. Declare the type in
// Module.Consumes so that its producers run first.
func Find[T any](pc *ProcessingContext) (T, bool) {
	// FindAll's first, found without building FindAll's list (Find is
	// called several times per message): the latest result of each
	// instance that holds a T, the first of them in config order.
	pc.mu.RLock()
	defer pc.mu.RUnlock()
	best := -1
	for i := len(pc.results) - 1; i >= 0; i-- {
		r := pc.results[i]
		if _, ok := r.res.Data.(T); !ok || best >= 0 && r.order > pc.results[best].order {
			continue
		}
		latest := true
		for _, later := range pc.results[i+1:] {
			if _, ok := later.res.Data.(T); ok && later.res.Plugin == r.res.Plugin {
				latest = false
				break
			}
		}
		if latest {
			best = i // an earlier index of the same order comes first (seq)
		}
	}
	if best < 0 {
		var zero T
		return zero, false
	}
	return pc.results[best].res.Data.(T), true
}

// FindFrom returns the latest Data of type T published by the plugin
// instance named instance ("spf/strict"): for a plugin that reads its own
// earlier result, with its own Host.Instance, so that a second instance
// of it never takes the first one's.
func FindFrom[T any](pc *ProcessingContext, instance string) (T, bool) {
	pc.mu.RLock()
	defer pc.mu.RUnlock()
	for i := len(pc.results) - 1; i >= 0; i-- {
		if r := pc.results[i].res; r.Plugin == instance {
			if v, ok := r.Data.(T); ok {
				return v, true
			}
		}
	}
	var zero T
	return zero, false
}

// FindAll returns the Data of type T published by each plugin instance:
// its latest one, instances in config order (results added with AddResult
// come last, in the order they were added, the latest one for each
// Result.Plugin). Use it for a type several plugins publish, such as
// *ScanResult from both clamav and rspamd. The order never depends on
// which plugin finished first.
func FindAll[T any](pc *ProcessingContext) []T {
	pc.mu.RLock()
	defer pc.mu.RUnlock()
	type found struct {
		v          T
		order, seq int
	}
	var all []found
	seen := map[string]bool{}
	for i := len(pc.results) - 1; i >= 0; i-- {
		r := pc.results[i]
		v, ok := r.res.Data.(T)
		if !ok || seen[r.res.Plugin] {
			continue
		}
		seen[r.res.Plugin] = true
		all = append(all, found{v, r.order, i})
	}
	slices.SortFunc(all, func(a, b found) int { return cmp.Or(cmp.Compare(a.order, b.order), cmp.Compare(a.seq, b.seq)) })
	out := make([]T, len(all))
	for i, f := range all {
		out[i] = f.v
	}
	return out
}

// Set stores a session value under key (for host code and plugins that
// keep per-message state across stages).
func (pc *ProcessingContext) Set(key string, v any) {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	if pc.values == nil {
		pc.values = map[string]any{}
	}
	pc.values[key] = v
}

// Get returns the value stored under key.
func (pc *ProcessingContext) Get(key string) (any, bool) {
	pc.mu.RLock()
	defer pc.mu.RUnlock()
	v, ok := pc.values[key]
	return v, ok
}

type pcKey struct{}

// WithProcessingContext returns ctx carrying pc. ExecuteStage hands every
// plugin such a context, so capability methods that take only a message
// (DMARCPlugin.CheckDMARC, ARCPlugin.SealMessage) can still read the
// results of the plugins that ran before them. Hosts calling capability
// methods directly wrap their context the same way.
func WithProcessingContext(ctx context.Context, pc *ProcessingContext) context.Context {
	return context.WithValue(ctx, pcKey{}, pc)
}

// ProcessingContextFrom returns the ProcessingContext ctx carries, if any.
func ProcessingContextFrom(ctx context.Context) (*ProcessingContext, bool) {
	pc, ok := ctx.Value(pcKey{}).(*ProcessingContext)
	return pc, ok && pc != nil
}
