package pluginhost

import (
	"context"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/elemta/elemta/registry"
)

func accepting(name string) stagePlugin {
	return stagePlugin{name: name, fn: verdictPlugin(registry.AcceptVerdict())}
}

func TestLiveSwapClosesOldAfterLastRelease(t *testing.T) {
	m1, m2 := testManager(t, "", accepting("one")), testManager(t, "", accepting("two"))
	live := NewLive(m1)
	lease := live.Acquire()
	second := lease.Retain()
	old, closed, err := live.Swap(m2)
	require.NoError(t, err)
	assert.Same(t, m1, old)

	next := live.Acquire()
	assert.Same(t, m2, next.Manager(), "a lease taken after the swap runs on the new manager")
	_, err = lease.Manager().ExecuteStage(context.Background(), registry.PostReception, testContext(t))
	require.NoError(t, err, "the old manager serves its holders")

	lease.Release()
	lease.Release() // twice: counted once
	select {
	case <-closed:
		t.Fatal("old manager closed while a retained lease still holds it")
	default:
	}
	second.Release()
	require.NoError(t, <-closed)
	_, err = m1.ExecuteStage(context.Background(), registry.PostReception, testContext(t))
	assert.ErrorIs(t, err, ErrClosed)
	next.Release()

	require.NoError(t, live.Close())
	_, err = m2.ExecuteStage(context.Background(), registry.PostReception, testContext(t))
	assert.ErrorIs(t, err, ErrClosed, "Close closes the current manager")
	after := live.Acquire()
	after.Release()
	after.Release()
	assert.Same(t, m2, after.Manager())
	_, _, err = live.Swap(m1)
	assert.ErrorIs(t, err, ErrLiveClosed)
}

func TestLivePinNeverCloses(t *testing.T) {
	m := testManager(t, "", accepting("one"))
	live := Pin(m)
	live.Acquire().Release()
	require.NoError(t, live.Close())
	_, err := m.ExecuteStage(context.Background(), registry.PostReception, testContext(t))
	require.NoError(t, err, "a pinned manager belongs to the caller")
}

// TestLiveConcurrentSwaps runs stages from several goroutines while the
// manager is swapped 20 times: no stage ever meets a closed manager, and
// every replaced manager is closed once its users are gone.
func TestLiveConcurrentSwaps(t *testing.T) {
	live := NewLive(testManager(t, "", accepting("one")))
	stop := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				le := live.Acquire()
				if _, err := le.Manager().ExecuteStage(context.Background(), registry.PostReception, testContext(t)); err != nil {
					errs <- err
					le.Release()
					return
				}
				le.Release()
			}
		}()
	}
	var olds []*Manager
	var waits []<-chan error
	for range 20 {
		old, closed, err := live.Swap(testManager(t, "", accepting("one")))
		require.NoError(t, err)
		olds, waits = append(olds, old), append(waits, closed)
	}
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("stage during swaps: %v", err)
	}
	for i, w := range waits {
		require.NoError(t, <-w)
		_, err := olds[i].ExecuteStage(context.Background(), registry.PostReception, testContext(t))
		assert.ErrorIs(t, err, ErrClosed, "replaced manager %d closed", i)
	}
	require.NoError(t, live.Close())
}
