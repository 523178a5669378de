// Config reload: a new plugin manager from the file, swapped in while the
// old one finishes what it started.

package serve

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"time"

	"github.com/elemta/elemta/pluginhost"
)

// Loader reads the config file at path, validates it whole and returns
// its [server] table with a manager whose plugins are built, validated and
// started (pluginhost.Manager.LoadPlugins). Its errors name the file and
// line.
type Loader func(ctx context.Context, path string) (Config, *pluginhost.Manager, error)

// Report is the outcome of one Reload.
type Report struct {
	// File is the config file read.
	File string `json:"file"`
	// At is when the reload ended.
	At time.Time `json:"at"`
	// OK: the new plugins serve. Otherwise Error says why and the old
	// config serves on.
	OK    bool   `json:"ok"`
	Error string `json:"error,omitempty"`
	// Plugins are the plugin instances now serving, in start order.
	Plugins []string `json:"plugins"`
	// NeedsUpgrade lists the [server] keys whose new value differs from
	// the running one: they take effect only at the next binary upgrade
	// (`elemta upgrade`) or restart.
	NeedsUpgrade []string `json:"needs_upgrade,omitempty"`
}

// ReloadStats counts reloads since the process started.
type ReloadStats struct {
	// Reloads succeeded, Failed did not (elemta_reload_failed_total).
	Reloads, Failed int64
	// LastSuccess is when the last successful reload ended (zero: none);
	// LastError is the error of the last reload if it failed.
	LastSuccess time.Time
	LastError   string
}

// reloadState serializes reloads and keeps their counters.
type reloadState struct {
	run   sync.Mutex // one reload at a time
	mu    sync.Mutex
	stats ReloadStats
}

// ErrNoLoader is returned by Reload on a server started without
// Options.Load.
var ErrNoLoader = errors.New("server: reload is not available (started without a config loader)")

// Reload reads the config at path (the one the server was started with
// when path is ""), validates it, builds and starts its plugins, and swaps
// them in: connections and transactions in flight finish on the plugins
// they started with, which are closed once their last stage has returned.
// Any failure leaves the running config serving; it is returned (naming
// the file and line), logged and counted. SIGHUP, `elemta reload` and the
// admin API all come here.
func (s *Server) Reload(ctx context.Context, path string) (Report, error) {
	s.reload.run.Lock()
	defer s.reload.run.Unlock()
	if path == "" {
		path = s.opts.ConfigPath
	}
	rep := Report{File: path}
	err := s.reloadLocked(ctx, path, &rep)
	rep.At = time.Now()
	rep.Plugins = s.plugins.Current().Loaded()
	s.reload.mu.Lock()
	if err != nil {
		rep.Error = err.Error()
		s.reload.stats.Failed++
		s.reload.stats.LastError = rep.Error
	} else {
		rep.OK = true
		s.reload.stats.Reloads++
		s.reload.stats.LastSuccess = rep.At
		s.reload.stats.LastError = ""
	}
	s.reload.mu.Unlock()
	if err != nil {
		s.log.Error("reload failed: the running config serves on", "file", path, "err", err)
	} else {
		s.log.Info("reloaded", "file", path, "plugins", strings.Join(rep.Plugins, ","), "needs_upgrade", strings.Join(rep.NeedsUpgrade, ","))
	}
	return rep, err
}

func (s *Server) reloadLocked(ctx context.Context, path string, rep *Report) error {
	if s.opts.Load == nil {
		return ErrNoLoader
	}
	cfg, mgr, err := s.opts.Load(ctx, path)
	if err != nil {
		return err
	}
	rep.NeedsUpgrade = ChangedKeys(s.cfg, cfg)
	if len(rep.NeedsUpgrade) > 0 {
		s.log.Warn("reload: [server] keys changed that only an upgrade or restart applies", "keys", strings.Join(rep.NeedsUpgrade, ","))
	}
	old, closed, err := s.plugins.Swap(mgr)
	if err != nil {
		return errors.Join(fmt.Errorf("server: swap plugins: %w", err), mgr.Close())
	}
	go func() {
		if err := <-closed; err != nil {
			s.log.Error("close replaced plugins", "err", err)
		}
	}()
	_ = old
	return nil
}

// ReloadStats returns the reload counters.
func (s *Server) ReloadStats() ReloadStats {
	s.reload.mu.Lock()
	defer s.reload.mu.Unlock()
	return s.reload.stats
}

// Plugins returns the manager serving now, for describing it (Loaded,
// Stats); stages run on leases of it.
func (s *Server) Plugins() *pluginhost.Manager { return s.plugins.Current() }

// ChangedKeys lists the [server] keys (their TOML names) whose values
// differ between a and b.
func ChangedKeys(a, b Config) []string {
	var keys []string
	diffFields(reflect.ValueOf(a), reflect.ValueOf(b), &keys)
	return keys
}

func diffFields(a, b reflect.Value, keys *[]string) {
	t := a.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		if f.Anonymous && f.Type.Kind() == reflect.Struct {
			diffFields(a.Field(i), b.Field(i), keys)
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
		if name == "" || name == "-" {
			continue
		}
		if !reflect.DeepEqual(a.Field(i).Interface(), b.Field(i).Interface()) {
			*keys = append(*keys, name)
		}
	}
}
