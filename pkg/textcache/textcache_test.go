package textcache_test

import (
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/elemta/elemta/pkg/textcache"
)

// counting returns a parse function (Atoi) and how many times it ran.
func counting() (func(string) (int, error), *int) {
	var mu sync.Mutex
	n := 0
	return func(s string) (int, error) {
		mu.Lock()
		n++
		mu.Unlock()
		return strconv.Atoi(s)
	}, &n
}

func TestGetParsesOnceAndRemembersErrors(t *testing.T) {
	parse, calls := counting()
	c := textcache.New(10, 100, parse)
	for range 3 {
		v, err := c.Get("42")
		require.NoError(t, err)
		assert.Equal(t, 42, v)
		_, err = c.Get("x")
		var ne *strconv.NumError
		assert.True(t, errors.As(err, &ne), err)
	}
	assert.Equal(t, 2, *calls)
	assert.Equal(t, 2, c.Len())
}

// The limits at their boundary: max entries are held and no more; a text
// of maxLen bytes is kept, one of maxLen+1 parsed every time; max 0 keeps
// nothing.
func TestLimits(t *testing.T) {
	parse, calls := counting()
	c := textcache.New(3, 4, parse)
	for i := range 10 {
		_, _ = c.Get(strconv.Itoa(i))
		assert.LessOrEqual(t, c.Len(), 3)
	}
	assert.Equal(t, 3, c.Len())

	*calls = 0
	c = textcache.New(3, 4, parse)
	for range 2 {
		_, _ = c.Get("1234")
		_, _ = c.Get("12345")
	}
	assert.Equal(t, 3, *calls, "the 4-byte text parsed once, the 5-byte one twice")
	assert.Equal(t, 1, c.Len())

	*calls = 0
	c = textcache.New(0, 4, parse)
	_, _ = c.Get("1")
	_, _ = c.Get("1")
	assert.Equal(t, 2, *calls)
	assert.Zero(t, c.Len())
}

// A full cache that is asked again for a text it holds forgets nothing.
func TestHitOnAFullCacheKeepsEverything(t *testing.T) {
	parse, calls := counting()
	c := textcache.New(2, 10, parse)
	_, _ = c.Get("1")
	_, _ = c.Get("2")
	for range 5 {
		_, _ = c.Get("1")
		_, _ = c.Get("2")
	}
	assert.Equal(t, 2, *calls)
}

func TestConcurrentUse(t *testing.T) {
	parse, _ := counting()
	c := textcache.New(50, 10, parse)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 500 {
				s := fmt.Sprint((i * (g + 1)) % 80)
				v, err := c.Get(s)
				if err != nil || strconv.Itoa(v) != s {
					t.Errorf("Get(%q) = %d, %v", s, v, err)
					return
				}
			}
		})
	}
	wg.Wait()
	assert.LessOrEqual(t, c.Len(), 50)
}
