package smtpd

import (
	"bytes"
	"errors"
	"io"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/elemta/elemta/internal/spool"
)

// fakeLocal is a LocalDelivery for fault injection: it records what it is
// given and answers as told (the real one, delivery.Worker, is tested in
// internal/delivery and internal/serve).
type fakeLocal struct {
	accept  bool
	spooled bool
	err     error

	mu   sync.Mutex
	got  []*spool.Entry
	msgs []string
}

var _ LocalDelivery = (*fakeLocal)(nil)

func (f *fakeLocal) DeliversNow([]string) bool { return f.accept }

func (f *fakeLocal) DeliverNow(e *spool.Entry, msg io.WriterTo) (bool, error) {
	var b bytes.Buffer
	if _, err := msg.WriteTo(&b); err != nil {
		return false, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.got = append(f.got, e)
	f.msgs = append(f.msgs, b.String())
	return f.spooled, f.err
}

func TestLocalDelivery(t *testing.T) {
	data := step{send: "DATA", code: 354}
	tests := []struct {
		name      string
		local     *fakeLocal
		extra     string
		code      int
		text      string
		delivered int // calls of DeliverNow
		queued    int
		tempFail  int64
	}{
		{name: "delivered now", local: &fakeLocal{accept: true}, code: 250, text: "queued as", delivered: 1},
		{name: "delivered, one copy spooled", local: &fakeLocal{accept: true, spooled: true}, code: 250, text: "queued as", delivered: 1},
		{name: "neither delivered nor spooled", local: &fakeLocal{accept: true, err: errors.New("disk on fire")}, code: 451, text: "4.3.0", delivered: 1, tempFail: 1},
		{name: "not accepted: spooled", local: &fakeLocal{}, code: 250, text: "queued as", queued: 1},
		{name: "quarantined: held, not delivered", local: &fakeLocal{accept: true}, extra: "X-Test-Verdict: quarantine\r\n", code: 250, text: "queued as"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := start(t, Config{Local: tt.local})
			converse(t, h.addr, append(hello("a@example.org", "b@example.net", "c@example.net"), data,
				step{send: msg(tt.extra), raw: true, code: tt.code, text: tt.text}))
			require.Len(t, tt.local.got, tt.delivered)
			assert.Len(t, h.spool.List(), tt.queued)
			st := h.srv.Stats()
			assert.Equal(t, tt.tempFail, st.TempFailed)
			if tt.delivered == 0 {
				return
			}
			e := tt.local.got[0]
			assert.NotEmpty(t, e.ID)
			assert.False(t, e.ReceivedAt.IsZero(), "the time that names the copies is set")
			assert.Equal(t, []string{"b@example.net", "c@example.net"}, e.Envelope.RcptTo)
			assert.Contains(t, tt.local.msgs[0], "Received: from ")
			assert.Contains(t, tt.local.msgs[0], e.ID+"; ", "Received names the queue id the copies are named by")
			if tt.code == 250 {
				assert.Equal(t, int64(1), st.Accepted)
			}
		})
	}
}
