package store

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/elemta/elemta/pkg/store/storetest"
)

// TestPoolsShareAndClose: an equal [store] gets the open pool; the pool
// serves until its last holder releases it, then it is closed.
func TestPoolsShareAndClose(t *testing.T) {
	addr, _ := storetest.Redis(t)
	ctx := context.Background()
	var p Pools
	t.Cleanup(func() { assert.NoError(t, p.Close()) })
	cfg := DefaultRedisConfig()
	cfg.Addr = addr

	a, releaseA, err := p.Acquire(cfg)
	require.NoError(t, err)
	b, releaseB, err := p.Acquire(cfg)
	require.NoError(t, err)
	assert.Same(t, a, b, "an unchanged [store] reuses the pool")
	require.NoError(t, a.Ping(ctx).Err())
	assert.Equal(t, 1, p.Len())

	other := cfg
	other.DB = 1
	c, releaseC, err := p.Acquire(other)
	require.NoError(t, err)
	assert.NotSame(t, a, c, "a changed [store] gets a pool of its own")
	assert.Equal(t, 2, p.Len())

	require.NoError(t, releaseA())
	require.NoError(t, releaseA(), "a second release is a no-op")
	require.NoError(t, b.Ping(ctx).Err(), "still held: still open")
	require.NoError(t, releaseB())
	assert.ErrorIs(t, b.Ping(ctx).Err(), redis.ErrClosed, "closed with its last release")
	assert.Equal(t, 1, p.Len())

	d, releaseD, err := p.Acquire(cfg)
	require.NoError(t, err)
	assert.NotSame(t, a, d, "a closed pool is never handed out again")
	require.NoError(t, d.Ping(ctx).Err())
	require.NoError(t, releaseD())
	require.NoError(t, releaseC())
	assert.Equal(t, 0, p.Len())
}

// TestPoolKeyReadsTLSFiles: a file renewed under the same name is a
// different pool.
func TestPoolKeyReadsTLSFiles(t *testing.T) {
	ca := filepath.Join(t.TempDir(), "ca.pem")
	require.NoError(t, os.WriteFile(ca, []byte("one"), 0o600))
	cfg := DefaultRedisConfig()
	cfg.Addr, cfg.TLS, cfg.TLSCAFile = "127.0.0.1:1", true, ca
	k1, err := cfg.poolKey()
	require.NoError(t, err)
	k2, err := cfg.poolKey()
	require.NoError(t, err)
	assert.Equal(t, k1, k2)
	require.NoError(t, os.WriteFile(ca, []byte("two"), 0o600))
	k3, err := cfg.poolKey()
	require.NoError(t, err)
	assert.NotEqual(t, k1, k3)
	require.NoError(t, os.Remove(ca))
	_, err = cfg.poolKey()
	assert.ErrorContains(t, err, "ca.pem")
}
