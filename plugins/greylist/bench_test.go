package greylist

import (
	"context"
	"fmt"
	"net/netip"
	"sync/atomic"
	"testing"

	"github.com/elemta/elemta/pkg/store/storetest"
	"github.com/elemta/elemta/registry"
)

// BenchmarkCheck measures greylist checks at RCPT (HandleStage, one store
// write each: delay is 1µs so after the first sight of each of 1024
// recipients every check passes and renews) per store, one caller and
// GOMAXPROCS×8 callers.
func BenchmarkCheck(b *testing.B) {
	storetest.BenchChecks(b, func(b *testing.B, storeKeys string) func() {
		n := newNode(b, storeKeys+"delay = 0.000001\n", b.TempDir(), storetest.NewClock(epoch))
		p, _ := n.m.Plugin("greylist")
		g := p.(*Greylist)
		pcs := make([]*registry.ProcessingContext, 1024)
		for i := range pcs {
			pcs[i] = newPC(b, registry.PhaseRcpt, registry.Envelope{ClientIP: netip.MustParseAddr("192.0.2.1"),
				MailFrom: "alice@sender.example", RcptTo: []string{fmt.Sprintf("r%d@rcpt.example", i)}})
		}
		ctx := context.Background()
		var seq atomic.Int64
		return func() {
			if _, err := g.HandleStage(ctx, registry.PreReception, pcs[seq.Add(1)%int64(len(pcs))]); err != nil {
				b.Fatal(err)
			}
		}
	})
}
