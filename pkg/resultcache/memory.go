package resultcache

import (
	"container/list"
	"sync"
	"time"
)

// memory is a least-recently-used map of at most size entries.
type memory struct {
	size  int
	mu    sync.Mutex
	order *list.List // front: most recently used; values are *entry
	byKey map[string]*list.Element
}

type entry struct {
	key     string
	value   []byte
	expires time.Time
}

func newMemory(size int) *memory {
	return &memory{size: size, order: list.New(), byKey: map[string]*list.Element{}}
}

// get returns a copy of key's value unless it expired at now.
func (m *memory) get(key string, now time.Time) ([]byte, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	el, ok := m.byKey[key]
	if !ok {
		return nil, false
	}
	e := el.Value.(*entry)
	if !now.Before(e.expires) {
		m.order.Remove(el)
		delete(m.byKey, key)
		return nil, false
	}
	m.order.MoveToFront(el)
	return append([]byte(nil), e.value...), true
}

// put keeps a copy of value; it reports whether an entry was evicted.
func (m *memory) put(key string, value []byte, expires time.Time) (evicted bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e := &entry{key: key, value: append([]byte(nil), value...), expires: expires}
	if el, ok := m.byKey[key]; ok {
		el.Value = e
		m.order.MoveToFront(el)
		return false
	}
	for m.order.Len() >= m.size {
		old := m.order.Back()
		m.order.Remove(old)
		delete(m.byKey, old.Value.(*entry).key)
		evicted = true
	}
	m.byKey[key] = m.order.PushFront(e)
	return evicted
}

func (m *memory) remove(key string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if el, ok := m.byKey[key]; ok {
		m.order.Remove(el)
		delete(m.byKey, key)
	}
}

func (m *memory) len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.order.Len()
}
