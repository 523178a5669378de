package admin

import (
	"bytes"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/elemta/elemta/internal/metrics"
	"github.com/elemta/elemta/internal/spool"
	"github.com/elemta/elemta/registry"
)

// PluginStatus is one loaded plugin instance in GET /api/v1/plugins.
type PluginStatus struct {
	Name      string             `json:"name"`
	Calls     int64              `json:"calls"`
	Errors    int64              `json:"errors"`
	Timeouts  int64              `json:"timeouts"`
	Panics    int64              `json:"panics"`
	Rejects   int64              `json:"rejects"`
	TotalMS   float64            `json:"total_ms"`
	MeanMS    float64            `json:"mean_ms"`
	LastError *metrics.LastError `json:"last_error,omitempty"`
}

func (s *Server) plugins(w http.ResponseWriter, _ *http.Request) {
	var last map[string]metrics.LastError
	if s.deps.Metrics != nil {
		last = s.deps.Metrics.LastErrors()
	}
	out := []PluginStatus{}
	for _, st := range s.deps.Plugins().Stats() {
		p := PluginStatus{Name: st.Name, Calls: st.Calls, Errors: st.Errors, Timeouts: st.Timeouts, Panics: st.Panics,
			Rejects: st.Rejects, TotalMS: ms(st.Total)}
		if st.Calls > 0 {
			p.MeanMS = ms(st.Total / time.Duration(st.Calls))
		}
		if le, ok := last[st.Name]; ok {
			p.LastError = &le
		}
		out = append(out, p)
	}
	writeJSON(w, http.StatusOK, out)
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// TestResult is the answer of POST /api/v1/test/{name}: the instance's
// health check in the running server.
type TestResult struct {
	Name       string  `json:"name"`
	OK         bool    `json:"ok"`
	Error      string  `json:"error,omitempty"`
	DurationMS float64 `json:"duration_ms"`
}

func (s *Server) testPlugin(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if _, ok := s.deps.Plugins().Plugin(name); !ok {
		writeError(w, http.StatusNotFound, "plugin %s is not loaded", name)
		return
	}
	c := timed(func() error { return s.deps.Plugins().HealthCheck(r.Context(), name) })
	writeJSON(w, http.StatusOK, TestResult{Name: name, OK: c.OK, Error: c.Error, DurationMS: c.DurationMS})
}

// StageStatus is one stage in GET /api/v1/stages.
type StageStatus struct {
	Stage string `json:"stage"`
	// Waves are the plugin instances of each dependency wave, in run order.
	Waves [][]string `json:"waves"`
	metrics.StageStats
}

func (s *Server) stages(w http.ResponseWriter, _ *http.Request) {
	stats := map[string]metrics.StageStats{}
	if s.deps.Metrics != nil {
		for _, st := range s.deps.Metrics.StageStats() {
			stats[st.Stage] = st
		}
	}
	out := []StageStatus{}
	for _, st := range registry.Stages() {
		ss := StageStatus{Stage: st.String(), Waves: s.deps.Plugins().Waves(st), StageStats: stats[st.String()]}
		ss.StageStats.Stage = st.String()
		if ss.Waves == nil {
			ss.Waves = [][]string{}
		}
		out = append(out, ss)
	}
	writeJSON(w, http.StatusOK, out)
}

// reload runs a config reload: 200 with the report when the new config
// serves, 422 with the report and the file:line error when the old one
// serves on.
func (s *Server) reload(w http.ResponseWriter, r *http.Request) {
	if s.deps.Reload == nil {
		writeError(w, http.StatusNotFound, "reload is not available")
		return
	}
	rep, err := s.deps.Reload(r.Context())
	if err != nil {
		writeJSON(w, http.StatusUnprocessableEntity, map[string]any{"error": err.Error(), "report": rep})
		return
	}
	writeJSON(w, http.StatusOK, rep)
}

func (s *Server) config(w http.ResponseWriter, _ *http.Request) {
	if s.deps.Config == nil {
		writeError(w, http.StatusNotFound, "no config")
		return
	}
	c, err := s.deps.Config()
	if err != nil {
		writeError(w, http.StatusInternalServerError, "config: %v", err)
		return
	}
	writeJSON(w, http.StatusOK, c)
}

// QueueItem is one entry in GET /api/v1/queue.
type QueueItem struct {
	ID string `json:"id"`
	// State is "queued", "delivering" (an attempt holds it now) or "held".
	State       string    `json:"state"`
	ReceivedAt  time.Time `json:"received_at"`
	NextAttempt time.Time `json:"next_attempt"`
	From        string    `json:"from"`
	Recipients  int       `json:"recipients"`
	Pending     int       `json:"pending"`
	Attempts    int       `json:"attempts"`
	Size        int       `json:"size"`
	LastError   string    `json:"last_error,omitempty"`
	Error       string    `json:"error,omitempty"` // the entry could not be read
}

// QueueList is the answer of GET /api/v1/queue.
type QueueList struct {
	Total     int         `json:"total"`
	Truncated bool        `json:"truncated,omitempty"`
	Items     []QueueItem `json:"items"`
}

func (s *Server) queueList(w http.ResponseWriter, r *http.Request) {
	sp := s.spool(w)
	if sp == nil {
		return
	}
	limit := s.cfg.MaxQueueList
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			writeError(w, http.StatusBadRequest, "limit %q: a positive number", v)
			return
		}
		limit = min(n, limit)
	}
	held, err := sp.Held()
	if err != nil {
		writeError(w, http.StatusInternalServerError, "%v", err)
		return
	}
	queued := sp.List()
	out := QueueList{Total: len(queued) + len(held), Items: []QueueItem{}}
	add := func(id, state string, get func(string) (*spool.Entry, error)) bool {
		if len(out.Items) >= limit {
			out.Truncated = true
			return false
		}
		it := QueueItem{ID: id, State: state}
		if e, err := get(id); err != nil {
			it.Error = err.Error()
		} else {
			it.ReceivedAt, it.NextAttempt, it.From, it.Recipients = e.ReceivedAt, e.NextAttempt, e.Envelope.MailFrom, len(e.Envelope.RcptTo)
			it.Pending, it.Attempts, it.Size, it.LastError = len(e.Pending()), e.Attempts, len(e.Message), e.LastError
		}
		out.Items = append(out.Items, it)
		return true
	}
	for _, q := range queued {
		state := "queued"
		if q.Claimed {
			state = "delivering"
		}
		if !add(q.ID, state, sp.Get) {
			break
		}
	}
	for _, id := range held {
		if !add(id, "held", sp.GetHeld) {
			break
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// QueueEntry is the answer of GET /api/v1/queue/{id}: the entry without
// its message, and the message's header section.
type QueueEntry struct {
	*spool.Entry
	State  string `json:"state"`
	Size   int    `json:"size"`
	Header string `json:"header"`
	// Message is left out (it can be large and is the sender's data).
	Message struct{} `json:"message,omitzero"`
}

// maxHeaderShown bounds the header section GET /api/v1/queue/{id} returns.
const maxHeaderShown = 64 << 10

func (s *Server) queueShow(w http.ResponseWriter, r *http.Request) {
	sp := s.spool(w)
	if sp == nil {
		return
	}
	id, state := r.PathValue("id"), "queued"
	e, err := sp.Get(id)
	if errors.Is(err, spool.ErrNotFound) {
		state = "held"
		e, err = sp.GetHeld(id)
	}
	if err != nil {
		s.opError(w, err)
		return
	}
	header := e.Message
	if i := bytes.Index(header, []byte("\r\n\r\n")); i >= 0 {
		header = header[:i+2]
	}
	if len(header) > maxHeaderShown {
		header = header[:maxHeaderShown]
	}
	writeJSON(w, http.StatusOK, QueueEntry{Entry: e, State: state, Size: len(e.Message), Header: string(header)})
}

// OpResult is the answer of a queue operation.
type OpResult struct {
	ID     string `json:"id,omitempty"`
	Op     string `json:"op"`
	Done   bool   `json:"done"`
	Count  int    `json:"count,omitempty"`
	Detail string `json:"detail,omitempty"`
}

func (s *Server) queueOp(w http.ResponseWriter, r *http.Request) {
	sp := s.spool(w)
	if sp == nil {
		return
	}
	id, op := r.PathValue("id"), r.PathValue("op")
	var err error
	switch op {
	case "hold":
		err = sp.Hold(id)
	case "release":
		err = sp.Unhold(id)
	case "retry":
		err = sp.RetryNow(id)
	default:
		writeError(w, http.StatusNotFound, "unknown queue operation %q (hold, release, retry)", op)
		return
	}
	if err != nil {
		s.opError(w, err)
		return
	}
	s.deps.Log.Info("admin: queue "+op, "id", id, "client", r.RemoteAddr)
	writeJSON(w, http.StatusOK, OpResult{ID: id, Op: op, Done: true})
}

func (s *Server) queueFlush(w http.ResponseWriter, r *http.Request) {
	sp := s.spool(w)
	if sp == nil {
		return
	}
	n := 0
	for _, it := range sp.List() {
		if !it.Claimed && sp.RetryNow(it.ID) == nil {
			n++
		}
	}
	s.deps.Log.Info("admin: queue flush", "entries", n, "client", r.RemoteAddr)
	writeJSON(w, http.StatusOK, OpResult{Op: "flush", Done: true, Count: n})
}

// queueDelete removes an entry for good; the request must repeat the id
// as ?confirm=<id>.
func (s *Server) queueDelete(w http.ResponseWriter, r *http.Request) {
	sp := s.spool(w)
	if sp == nil {
		return
	}
	id := r.PathValue("id")
	if r.URL.Query().Get("confirm") != id {
		writeError(w, http.StatusBadRequest, "deleting %s loses the message for good (no delivery, no DSN): repeat its id as ?confirm=%s", id, id)
		return
	}
	if err := sp.Delete(id); err != nil {
		s.opError(w, err)
		return
	}
	s.deps.Log.Warn("admin: queue entry deleted", "id", id, "client", r.RemoteAddr)
	writeJSON(w, http.StatusOK, OpResult{ID: id, Op: "delete", Done: true})
}

func (s *Server) spool(w http.ResponseWriter) *spool.Spool {
	if s.deps.Spool == nil {
		writeError(w, http.StatusNotFound, "no spool: this process does not serve mail")
		return nil
	}
	return s.deps.Spool()
}

func (s *Server) opError(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, spool.ErrNotFound):
		writeError(w, http.StatusNotFound, "%v", err)
	case errors.Is(err, spool.ErrClaimed):
		writeError(w, http.StatusConflict, "%v", err)
	default:
		writeError(w, http.StatusInternalServerError, "%v", err)
	}
}
