package store

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"sync"

	"github.com/redis/go-redis/v9"
)

// Pools keeps the [store] pools of a process whose config is reloaded:
// Acquire returns the pool already open for an equal [store] table (and
// TLS files of the same content), so a reload that leaves [store] alone
// opens no connection, and a pool is closed when the last holder releases
// it, never while a manager still serving (or finishing its transactions)
// uses it. The zero value is ready; safe for concurrent use.
type Pools struct {
	mu   sync.Mutex
	open map[string]*sharedPool
}

type sharedPool struct {
	client redis.UniversalClient
	refs   int
	closed bool // by Pools.Close
}

// Acquire returns the pool for c, opened now or shared with the earlier
// holders of an equal config, and the release of this hold: the pool is
// closed with the last release (release is safe to call more than once;
// only its first call counts). c must be valid and Enabled.
func (p *Pools) Acquire(c RedisConfig) (redis.UniversalClient, func() error, error) {
	key, err := c.poolKey()
	if err != nil {
		return nil, nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	sp := p.open[key]
	if sp == nil {
		client, err := c.NewClient()
		if err != nil {
			return nil, nil, err
		}
		sp = &sharedPool{client: client}
		if p.open == nil {
			p.open = map[string]*sharedPool{}
		}
		p.open[key] = sp
	}
	sp.refs++
	var once sync.Once
	release := func() error {
		var err error
		once.Do(func() { err = p.release(key, sp) })
		return err
	}
	return sp.client, release, nil
}

func (p *Pools) release(key string, sp *sharedPool) error {
	p.mu.Lock()
	sp.refs--
	last := sp.refs == 0 && !sp.closed
	if last {
		delete(p.open, key)
	}
	p.mu.Unlock()
	if !last {
		return nil
	}
	if err := sp.client.Close(); err != nil {
		return fmt.Errorf("close the [store] pool: %w", err)
	}
	return nil
}

// Len is the number of pools open.
func (p *Pools) Len() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.open)
}

// Close closes every pool still open, held or not: for the end of the
// process, after its managers are closed.
func (p *Pools) Close() error {
	p.mu.Lock()
	open := p.open
	p.open = nil
	for _, sp := range open {
		sp.closed = true
	}
	p.mu.Unlock()
	var errs []error
	for _, sp := range open {
		if err := sp.client.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close the [store] pool: %w", err))
		}
	}
	return errors.Join(errs...)
}

// poolKey identifies the pool c describes: every key of the table, and
// the content of its TLS files (a certificate renewed under the same name
// makes a new pool at the next reload).
func (c RedisConfig) poolKey() (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "%#v\n", c)
	for _, f := range []string{c.TLSCAFile, c.TLSCertFile, c.TLSKeyFile} {
		if f == "" || !c.TLS {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			return "", fmt.Errorf("redis tls: %w", err)
		}
		fmt.Fprintf(h, "%d:", len(b))
		h.Write(b)
	}
	return string(h.Sum(nil)), nil
}
