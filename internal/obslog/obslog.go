// Package obslog builds the process's slog loggers from the [log] table:
// text or JSON, a level for the process and one per plugin instance, and
// optionally one file per plugin instance, reopened on SIGUSR1 for
// logrotate. Every plugin logger carries plugin=<instance ID>.
package obslog

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
)

// Logs holds the loggers and the plugin files.
type Logs struct {
	cfg   Config
	out   io.Writer
	level slog.Level
	log   *slog.Logger

	mu    sync.Mutex
	files map[string]*file // by instance ID
}

// New returns the loggers of cfg writing to out (stderr); defaultLevel
// applies when cfg.Level is empty. Call Close when done.
func New(cfg Config, out io.Writer, defaultLevel slog.Level) (*Logs, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	l := &Logs{cfg: cfg, out: out, level: defaultLevel, files: map[string]*file{}}
	if cfg.Level != "" {
		l.level, _ = parseLevel(cfg.Level)
	}
	l.log = slog.New(l.handler(out, l.level))
	return l, nil
}

func (l *Logs) handler(w io.Writer, level slog.Level) slog.Handler {
	opts := &slog.HandlerOptions{Level: level}
	if l.cfg.Format == "json" {
		return slog.NewJSONHandler(w, opts)
	}
	return slog.NewTextHandler(w, opts)
}

// Logger is the process's logger.
func (l *Logs) Logger() *slog.Logger { return l.log }

// Open opens the log files of the instances (with plugin_dir set), so a
// file that cannot be written is an error at startup naming it.
func (l *Logs) Open(instances []string) error {
	if l.cfg.PluginDir == "" {
		return nil
	}
	var errs []error
	for _, inst := range instances {
		if _, err := l.file(inst); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Plugin returns the logger of a plugin instance: attribute
// plugin=<instance>, its level, and its own file with plugin_dir set. A
// file that cannot be opened leaves the plugin logging to the process's
// output, with a warning.
func (l *Logs) Plugin(instance string) *slog.Logger {
	level := l.level
	typ, _, _ := strings.Cut(instance, "/")
	for _, k := range []string{typ, instance} { // the instance's own level wins
		if s, ok := l.cfg.PluginLevels[k]; ok {
			level, _ = parseLevel(s)
		}
	}
	var w io.Writer = l.out
	if l.cfg.PluginDir != "" {
		f, err := l.file(instance)
		if err != nil {
			l.log.Warn("plugin log file: logging to the process's output instead", "plugin", instance, "err", err)
		} else {
			w = f
		}
	}
	return slog.New(sessionHandler{l.handler(w, level)}).With("plugin", instance)
}

func (l *Logs) file(instance string) (*file, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if f, ok := l.files[instance]; ok {
		return f, nil
	}
	if err := os.MkdirAll(l.cfg.PluginDir, 0o750); err != nil {
		return nil, fmt.Errorf("log: plugin_dir: %w", err)
	}
	f := &file{path: filepath.Join(l.cfg.PluginDir, fileName(instance))}
	if err := f.reopen(); err != nil {
		return nil, err
	}
	l.files[instance] = f
	return f, nil
}

// Reopen reopens every plugin file at its path (SIGUSR1, after logrotate
// renamed them): later lines go to the new file.
func (l *Logs) Reopen() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	var errs []error
	for _, f := range l.files {
		if err := f.reopen(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Close closes the plugin files.
func (l *Logs) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	var errs []error
	for _, f := range l.files {
		errs = append(errs, f.close())
	}
	return errors.Join(errs...)
}

// file is an append-only log file that can be reopened under its path.
type file struct {
	path string
	mu   sync.Mutex
	f    *os.File
}

func (f *file) reopen() error {
	nf, err := os.OpenFile(f.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return fmt.Errorf("log: open %w", err)
	}
	f.mu.Lock()
	old := f.f
	f.f = nf
	f.mu.Unlock()
	if old != nil {
		return old.Close()
	}
	return nil
}

func (f *file) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.f == nil {
		return 0, os.ErrClosed
	}
	return f.f.Write(p)
}

func (f *file) close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.f == nil {
		return nil
	}
	err := f.f.Close()
	f.f = nil
	return err
}
