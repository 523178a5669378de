package resolver

import (
	"context"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// TestAnswerCounts: each question is counted once, by outcome.
func TestAnswerCounts(t *testing.T) {
	for _, tc := range []struct {
		name    string
		handler dns.HandlerFunc
		lookup  string
		want    Stats
	}{
		{"found", testZone(t).handler(), "example.org", Stats{Questions: 1}},
		{"not found", testZone(t).handler(), "nosuch.example.org", Stats{Questions: 1, NotFound: 1}},
		{"SERVFAIL", rcodeHandler(dns.RcodeServerFailure), "example.org", Stats{Questions: 1, Failures: 1}},
		{"timeout", silentHandler, "example.org", Stats{Questions: 1, Timeouts: 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newTestResolver(t, Config{Timeout: registryDuration(100 * time.Millisecond), Attempts: 1}, newClock(), newFakeServer(t, tc.handler))
			_, _ = r.LookupTXT(context.Background(), tc.lookup)
			got := r.Stats()
			if got.Questions != tc.want.Questions || got.NotFound != tc.want.NotFound || got.Timeouts != tc.want.Timeouts || got.Failures != tc.want.Failures {
				t.Errorf("questions/notfound/timeouts/failures = %d/%d/%d/%d, want %d/%d/%d/%d", got.Questions, got.NotFound, got.Timeouts, got.Failures,
					tc.want.Questions, tc.want.NotFound, tc.want.Timeouts, tc.want.Failures)
			}
		})
	}
}
