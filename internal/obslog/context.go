package obslog

import (
	"context"
	"log/slog"

	"github.com/elemta/elemta/registry"
)

// sessionHandler adds session=<id> to a record logged with a context the
// executor made (registry.WithProcessingContext): a plugin's
// Logger.InfoContext(ctx, ...) lines name the SMTP session (its queue id
// prefix) they belong to.
type sessionHandler struct{ slog.Handler }

func (h sessionHandler) Handle(ctx context.Context, r slog.Record) error {
	if pc, ok := registry.ProcessingContextFrom(ctx); ok && pc.Session != nil && pc.Session.ID != "" {
		r = r.Clone()
		r.AddAttrs(slog.String("session", pc.Session.ID))
	}
	return h.Handler.Handle(ctx, r)
}

func (h sessionHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return sessionHandler{h.Handler.WithAttrs(as)}
}

func (h sessionHandler) WithGroup(name string) slog.Handler {
	return sessionHandler{h.Handler.WithGroup(name)}
}

var _ slog.Handler = sessionHandler{}
