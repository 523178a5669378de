package ratelimit

import (
	"context"
	"fmt"
	"net/netip"
	"sync/atomic"
	"testing"

	"github.com/elemta/elemta/pkg/store/storetest"
	"github.com/elemta/elemta/registry"
)

// BenchmarkCheck measures rate-limit checks at MAIL (HandleStage: one GCRA
// take, one store write, always allowed) spread over 1024 client
// addresses, per store, one caller and GOMAXPROCS×8 callers.
func BenchmarkCheck(b *testing.B) {
	storetest.BenchChecks(b, func(b *testing.B, storeKeys string) func() {
		n := newNode(b, storeKeys+"max_sessions_per_client = 0\n"+limit("msgs", `"ip"`, 1_000_000, "1s", ""),
			b.TempDir(), storetest.NewClock(epoch))
		r := n.plugin()
		pcs := make([]*registry.ProcessingContext, 1024)
		for i := range pcs {
			pcs[i] = newPC(b, "s", registry.PhaseMail, registry.Envelope{
				ClientIP: netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), MailFrom: "a@s.example"})
		}
		ctx := context.Background()
		var seq atomic.Int64
		return func() {
			res, err := r.HandleStage(ctx, registry.PreReception, pcs[seq.Add(1)%int64(len(pcs))])
			if err != nil || res.Verdict.Action != registry.Accept {
				b.Fatal(fmt.Sprint(err, res))
			}
		}
	})
}
