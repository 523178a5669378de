package spool

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestHoldUnholdSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	clk := newClock()
	s := open(t, dir, WithClock(clk.now))
	id, err := s.Put(entry("a@x", "b@y"), false)
	require.NoError(t, err)

	require.NoError(t, s.Hold(id))
	assert.Empty(t, s.List(), "a held entry is not queued")
	got, err := s.Claim(10)
	require.NoError(t, err)
	assert.Empty(t, got, "a held entry is never claimed")
	held, err := s.Held()
	require.NoError(t, err)
	assert.Equal(t, []string{id}, held)
	e, err := s.GetHeld(id)
	require.NoError(t, err)
	assert.Equal(t, "a@x", e.Envelope.MailFrom)

	// Still held after a restart.
	require.NoError(t, s.Close())
	s = open(t, dir, WithClock(clk.now))
	assert.Empty(t, s.List())
	require.NoError(t, s.Unhold(id))
	require.Len(t, s.List(), 1)
	got, err = s.Claim(10)
	require.NoError(t, err)
	require.Len(t, got, 1, "a released entry is due at once")
	assert.ErrorIs(t, s.Unhold(id), ErrNotFound, "not held any more")
}

func TestAdminRefusesClaimedAndUnknown(t *testing.T) {
	s := open(t, t.TempDir())
	id, err := s.Put(entry("a@x", "b@y"), false)
	require.NoError(t, err)
	_, err = s.Claim(1)
	require.NoError(t, err)
	for name, op := range map[string]func(string) error{"hold": s.Hold, "retry": s.RetryNow, "delete": s.Delete} {
		assert.ErrorIs(t, op(id), ErrClaimed, name)
		assert.ErrorIs(t, op("nosuchid"), ErrNotFound, name)
		assert.ErrorIs(t, op("../../etc/passwd"), ErrNotFound, name)
	}
	assert.ErrorIs(t, s.Unhold("../x"), ErrNotFound)
	_, err = s.GetHeld("../x")
	assert.ErrorIs(t, err, ErrNotFound)
}

func TestRetryNowAndDelete(t *testing.T) {
	clk := newClock()
	s := open(t, t.TempDir(), WithClock(clk.now))
	e := entry("a@x", "b@y")
	e.NextAttempt = clk.now().Add(time.Hour)
	id, err := s.Put(e, false)
	require.NoError(t, err)
	got, err := s.Claim(1)
	require.NoError(t, err)
	require.Empty(t, got, "not due yet")
	require.NoError(t, s.RetryNow(id))
	got, err = s.Claim(1)
	require.NoError(t, err)
	require.Len(t, got, 1, "due after RetryNow")
	s.Release(id)

	require.NoError(t, s.Delete(id))
	assert.Empty(t, s.List())
	_, err = s.Get(id)
	assert.ErrorIs(t, err, ErrNotFound)

	// A held entry can be deleted too.
	id2, err := s.Put(entry("c@x", "d@y"), false)
	require.NoError(t, err)
	require.NoError(t, s.Hold(id2))
	require.NoError(t, s.Delete(id2))
	held, err := s.Held()
	require.NoError(t, err)
	assert.Empty(t, held)
}

func TestIDTime(t *testing.T) {
	now := time.Date(2026, 5, 6, 7, 8, 9, 123000, time.UTC)
	got, ok := IDTime(NewID(now) + "b1")
	require.True(t, ok)
	assert.True(t, got.Equal(now), "%v", got)
	_, ok = IDTime("short")
	assert.False(t, ok)
	_, ok = IDTime("zzzzzzzzzzzzzz")
	assert.False(t, ok)
}
