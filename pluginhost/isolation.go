package pluginhost

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/elemta/elemta/internal/catalog"
	"github.com/elemta/elemta/registry"
)

// Defaults and bounds of the isolation keys of a [plugins.<id>] table.
const (
	DefaultMemoryLimit = 256 << 20 // memory_limit: bytes a worker may use
	MinMemoryLimit     = 64 << 20  // below this the Go runtime and a plugin hardly start
	MaxMemoryLimit     = 1 << 40
	DefaultWorkers     = 1 // workers: processes per instance
	MaxWorkers         = 64
	DefaultMaxRequests = 10000 // max_requests: calls before a worker is recycled (0: never)
)

// IsolationMode is where an instance runs: "none" (in the server's
// process, the default) or "process" (in worker processes of its own).
type IsolationMode string

// The isolation modes.
const (
	IsolationNone    IsolationMode = "none"
	IsolationProcess IsolationMode = "process"
)

// UnmarshalText accepts "none" or "process".
func (m *IsolationMode) UnmarshalText(b []byte) error {
	switch v := IsolationMode(strings.TrimSpace(string(b))); v {
	case IsolationNone, IsolationProcess:
		*m = v
		return nil
	}
	return fmt.Errorf("unknown isolation %q (valid: none, process)", b)
}

// Isolation is an instance's isolation settings.
type Isolation struct {
	Mode IsolationMode
	// MemoryLimit bounds each worker: Go's soft limit (debug.SetMemoryLimit)
	// and, enforced by the kernel, RLIMIT_AS at the worker's address space
	// at start plus this many bytes.
	MemoryLimit int64
	// Workers is how many processes serve the instance; calls go to the
	// least busy one.
	Workers int
	// MaxRequests recycles a worker after this many calls (0: never).
	MaxRequests int64
}

// Isolated reports whether the instance runs in worker processes.
func (i Isolation) Isolated() bool { return i.Mode == IsolationProcess }

func defaultIsolation() Isolation {
	return Isolation{Mode: IsolationNone, MemoryLimit: DefaultMemoryLimit, Workers: DefaultWorkers, MaxRequests: DefaultMaxRequests}
}

// isolation checks the isolation keys of a plugin table whose plugin
// config is value. Each error starts with its key (the caller places it).
func (c commonSettings) isolation(value any) (Isolation, error) {
	iso := defaultIsolation()
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.Isolation != nil {
		iso.Mode = *c.Isolation
		if err := new(IsolationMode).UnmarshalText([]byte(iso.Mode)); err != nil {
			bad("isolation: %v", err)
		}
	}
	if c.MemoryLimit != nil {
		iso.MemoryLimit = int64(*c.MemoryLimit)
		if iso.MemoryLimit < MinMemoryLimit || iso.MemoryLimit > MaxMemoryLimit {
			bad("memory_limit = %d: must be between %s and %s", iso.MemoryLimit, ByteSize(MinMemoryLimit), ByteSize(MaxMemoryLimit))
		}
	}
	if c.Workers != nil {
		iso.Workers = *c.Workers
		if iso.Workers < 1 || iso.Workers > MaxWorkers {
			bad("workers = %d: must be between 1 and %d", iso.Workers, MaxWorkers)
		}
	}
	if c.MaxRequests != nil {
		iso.MaxRequests = *c.MaxRequests
		if iso.MaxRequests < 0 {
			bad("max_requests = %d: must not be negative (0 never recycles a worker)", iso.MaxRequests)
		}
	}
	if !iso.Isolated() {
		// A limit that does nothing must not look like one that holds.
		for key, set := range map[string]bool{"memory_limit": c.MemoryLimit != nil, "workers": c.Workers != nil, "max_requests": c.MaxRequests != nil} {
			if set {
				bad("%s applies only with isolation = \"process\"", key)
			}
		}
	} else if iso.Workers > 1 {
		if sp, ok := value.(registry.SingleProcess); ok {
			if why := sp.SingleProcess(); why != "" {
				bad("workers = %d with isolation = \"process\": %s", iso.Workers, why)
			}
		}
	}
	return iso, errors.Join(sortedErrs(errs)...)
}

// sortedErrs orders errors by text, so a map walk reports them the same way every time.
func sortedErrs(errs []error) []error {
	for i := 1; i < len(errs); i++ {
		for j := i; j > 0 && errs[j].Error() < errs[j-1].Error(); j-- {
			errs[j], errs[j-1] = errs[j-1], errs[j]
		}
	}
	return errs
}

// ByteSize is a size in config files: a number of bytes (`268435456`) or a
// string with a unit (`"256MiB"`, `"1GiB"`, `"512MB"`, `"64KiB"`).
type ByteSize int64

var byteUnits = []struct {
	suffix string
	mult   int64
}{
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
	{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12}, {"B", 1},
}

// String formats b with the largest binary unit that divides it.
func (b ByteSize) String() string {
	for _, u := range []struct {
		s string
		m int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if b != 0 && int64(b)%u.m == 0 {
			return strconv.FormatInt(int64(b)/u.m, 10) + u.s
		}
	}
	return strconv.FormatInt(int64(b), 10) + "B"
}

// UnmarshalTOML implements go-toml's unstable.Unmarshaler; data is the raw
// TOML value.
func (b *ByteSize) UnmarshalTOML(data []byte) error {
	s := strings.TrimSpace(string(data))
	if len(s) >= 2 && (s[0] == '"' || s[0] == '\'') && s[len(s)-1] == s[0] {
		s = s[1 : len(s)-1]
	}
	if err := b.UnmarshalText([]byte(s)); err != nil {
		return &catalog.ValueError{Raw: string(data), Err: err}
	}
	return nil
}

// UnmarshalText parses a number of bytes with an optional unit.
func (b *ByteSize) UnmarshalText(text []byte) error {
	s := strings.ReplaceAll(strings.TrimSpace(string(text)), "_", "")
	mult := int64(1)
	for _, u := range byteUnits {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSpace(strings.TrimSuffix(s, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/mult {
		return fmt.Errorf("invalid size %q: want bytes (268435456) or a number with a unit (\"256MiB\", \"1GiB\")", text)
	}
	*b = ByteSize(n * mult)
	return nil
}
