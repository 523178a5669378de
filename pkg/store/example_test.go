package store_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/elemta/elemta/pkg/store"
)

// A rate of 2 events per minute on a bbolt file: the third event in the
// same instant is refused, and allowed again half a minute later.
func Example() {
	dir, err := os.MkdirTemp("", "store-example")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	st, err := store.Open(store.Options{Kind: store.KindBolt, Bolt: store.BoltOptions{Path: filepath.Join(dir, "state.db")}})
	if err != nil {
		panic(err)
	}
	defer st.Close()

	ctx := context.Background()
	rate := store.Rate{Count: 2, Window: time.Minute}
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	for _, at := range []time.Time{now, now, now, now.Add(30 * time.Second)} {
		res, err := st.Take(ctx, "client:192.0.2.0/24", at, rate)
		if err != nil {
			panic(err)
		}
		fmt.Println(res.Allowed, res.RetryAfter)
	}
	// Output:
	// true 0s
	// true 0s
	// false 30s
	// true 0s
}
