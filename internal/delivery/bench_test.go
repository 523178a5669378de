package delivery

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/elemta/elemta/internal/spool"
)

// BenchmarkRunOnceLocal: one pass delivering b.N queued messages (one
// recipient each) to the Maildirs, fsyncs included.
func BenchmarkRunOnceLocal(b *testing.B) {
	e := setup(b)
	for range b.N {
		_, err := e.spool.Put(&spool.Entry{Envelope: spool.Envelope{MailFrom: "a@example.org", RcptTo: []string{"b@example.net"}},
			Message: []byte("From: <a@example.org>\r\nSubject: hello\r\n\r\nBody.\r\n")}, false)
		require.NoError(b, err)
	}
	b.ResetTimer()
	n, err := e.w.RunOnce(context.Background())
	require.NoError(b, err)
	require.Equal(b, b.N, n)
}
