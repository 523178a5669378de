package registry

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/elemta/elemta/internal/catalog"
)

// Duration is a time.Duration in config files. It accepts a number of
// seconds (`timeout = 30`, `timeout = 0.5`), as Elemta's configs always
// have, or a Go duration string (`timeout = "1m30s"`).
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// String formats d as a Go duration string.
func (d Duration) String() string { return time.Duration(d).String() }

// UnmarshalTOML implements go-toml's unstable.Unmarshaler; data is the raw
// TOML value.
func (d *Duration) UnmarshalTOML(data []byte) error {
	if err := d.unmarshalTOML(data); err != nil {
		return &catalog.ValueError{Raw: string(data), Err: err}
	}
	return nil
}

func (d *Duration) unmarshalTOML(data []byte) error {
	s := strings.TrimSpace(string(data))
	if n := strings.ReplaceAll(s, "_", ""); n != "" && (n[0] >= '0' && n[0] <= '9' || n[0] == '-' || n[0] == '+' || n[0] == '.') {
		secs, err := strconv.ParseFloat(n, 64)
		if err != nil {
			return fmt.Errorf("invalid duration %s: want seconds (30) or a duration string (\"1m30s\")", s)
		}
		return d.set(time.Duration(secs * float64(time.Second)))
	}
	if len(s) >= 2 && (s[0] == '"' || s[0] == '\'') && s[len(s)-1] == s[0] {
		s = s[1 : len(s)-1]
	} else {
		return fmt.Errorf("invalid duration %s: want seconds (30) or a duration string (\"1m30s\")", s)
	}
	return d.UnmarshalText([]byte(s))
}

// UnmarshalText accepts a Go duration string, or a plain number of seconds.
func (d *Duration) UnmarshalText(b []byte) error {
	s := string(b)
	if secs, err := strconv.ParseFloat(s, 64); err == nil {
		return d.set(time.Duration(secs * float64(time.Second)))
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("invalid duration %q: want seconds (30) or a duration string (\"1m30s\")", s)
	}
	return d.set(v)
}

// MarshalText writes d as a Go duration string.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

func (d *Duration) set(v time.Duration) error {
	if v < 0 {
		return fmt.Errorf("invalid duration %v: must not be negative", v)
	}
	*d = Duration(v)
	return nil
}
