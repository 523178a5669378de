package pluginhost

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// waitDone fails the test if ctx is not done within a bound far beyond
// any deadline used here.
func waitDone(t *testing.T, ctx context.Context) {
	t.Helper()
	select {
	case <-ctx.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("context not done")
	}
}

func TestDeadlineContextEndsAtItsDeadline(t *testing.T) {
	d := newDeadlines()
	defer d.close()
	at := time.Now().Add(20 * time.Millisecond)
	notify := make(chan int, 1)
	ctx, cancel := d.withDeadline(context.WithValue(context.Background(), pcKeyForTest{}, "v"), at, notify)
	defer cancel()
	got, ok := ctx.Deadline()
	assert.True(t, ok)
	assert.Equal(t, at, got)
	assert.Equal(t, "v", ctx.Value(pcKeyForTest{}))
	assert.NoError(t, ctx.Err())
	waitDone(t, ctx)
	assert.False(t, time.Now().Before(at), "done before its deadline")
	assert.ErrorIs(t, ctx.Err(), context.DeadlineExceeded)
	select {
	case v := <-notify:
		assert.Equal(t, expired, v)
	default:
		t.Fatal("no word on notify at the deadline")
	}
	cancel() // after the deadline: changes nothing
	assert.ErrorIs(t, ctx.Err(), context.DeadlineExceeded)
}

type pcKeyForTest struct{}

// A later deadline does not rearm the shared timer; when the earlier
// context ends first (cancelled), the timer still fires for the later one.
func TestDeadlineTimerRearmsForTheEarliestPending(t *testing.T) {
	d := newDeadlines()
	defer d.close()
	early, cancelEarly := d.withDeadline(context.Background(), time.Now().Add(10*time.Millisecond), nil)
	late, cancelLate := d.withDeadline(context.Background(), time.Now().Add(30*time.Millisecond), nil)
	defer cancelLate()
	cancelEarly()
	assert.ErrorIs(t, early.Err(), context.Canceled)
	waitDone(t, late)
	assert.ErrorIs(t, late.Err(), context.DeadlineExceeded)
	d.mu.Lock()
	assert.Empty(t, d.pending)
	d.mu.Unlock()
	// And an earlier deadline added after a later one rearms it.
	far, cancelFar := d.withDeadline(context.Background(), time.Now().Add(time.Hour), nil)
	defer cancelFar()
	near, cancelNear := d.withDeadline(context.Background(), time.Now().Add(10*time.Millisecond), nil)
	defer cancelNear()
	waitDone(t, near)
	assert.NoError(t, far.Err())
}

func TestDeadlineContextFollowsItsParent(t *testing.T) {
	d := newDeadlines()
	defer d.close()
	parent, cancelParent := context.WithCancel(context.Background())
	notify := make(chan int, 1)
	ctx, cancel := d.withDeadline(parent, time.Now().Add(time.Hour), notify)
	defer cancel()
	cancelParent()
	waitDone(t, ctx)
	assert.ErrorIs(t, ctx.Err(), context.Canceled)
	assert.Equal(t, expired, <-notify) // sent before Done closed

	// A parent already done gives a context already done.
	ctx2, cancel2 := d.withDeadline(parent, time.Now().Add(time.Hour), nil)
	defer cancel2()
	assert.ErrorIs(t, ctx2.Err(), context.Canceled)
	waitDone(t, ctx2)

	// A parent deadline earlier than the wave's is the one reported.
	soon := time.Now().Add(15 * time.Millisecond)
	short, cancelShort := context.WithDeadline(context.Background(), soon)
	defer cancelShort()
	ctx3, cancel3 := d.withDeadline(short, time.Now().Add(time.Hour), nil)
	defer cancel3()
	got, _ := ctx3.Deadline()
	assert.Equal(t, soon, got)
	waitDone(t, ctx3)
	assert.ErrorIs(t, ctx3.Err(), context.DeadlineExceeded)
}

// Contexts a plugin derives (its own lookup timeout) and functions it
// registers with context.AfterFunc end with the wave's context.
func TestDeadlineContextCancelsWhatIsDerivedFromIt(t *testing.T) {
	d := newDeadlines()
	defer d.close()
	notify := make(chan int, 1)
	ctx, cancel := d.withDeadline(context.Background(), time.Now().Add(time.Hour), notify)
	child, cancelChild := context.WithTimeout(ctx, time.Hour)
	defer cancelChild()
	ran := make(chan struct{})
	context.AfterFunc(ctx, func() { close(ran) })
	stopped := make(chan struct{})
	stop := context.AfterFunc(ctx, func() { close(stopped) })
	require.True(t, stop())
	cancel()
	waitDone(t, child)
	assert.ErrorIs(t, child.Err(), context.Canceled)
	select {
	case <-ran:
	case <-time.After(10 * time.Second):
		t.Fatal("AfterFunc function not run")
	}
	select {
	case <-stopped:
		t.Fatal("a stopped AfterFunc function ran")
	default:
	}
	// Registered once the context is done: runs at once.
	late := make(chan struct{})
	context.AfterFunc(ctx, func() { close(late) })
	select {
	case <-late:
	case <-time.After(10 * time.Second):
		t.Fatal("AfterFunc on a done context not run")
	}
	assert.False(t, errors.Is(ctx.Err(), context.DeadlineExceeded))
	assert.Empty(t, notify, "cancelled by its owner: no word")
}
