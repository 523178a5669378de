package main

import (
	"context"
	"errors"

	"github.com/elemta/elemta/tools/internal/pluginsfile"
)

// diagnose explains a failed `go mod tidy` entry by entry: it fetches each
// pinned plugin module on its own, so a version that does not exist, a
// checksum database refusal or an import path that is not a package of the
// module is reported at its plugins.yaml line instead of as the go
// command's wall of text. When no entry is at fault, tidy's own error is
// returned, shortened.
func (o options) diagnose(ctx context.Context, f *pluginsfile.File, plugins []pluginsfile.Plugin, tidyErr error) error {
	var errs []error
	fetched := map[string]error{}
	dirs := map[string]string{}
	for _, pl := range plugins {
		if pl.Builtin() || pl.Path != "" {
			continue
		}
		err, done := fetched[pl.Module]
		if !done {
			var d *downloaded
			d, err = o.download(ctx, pl.Module, pl.Version)
			fetched[pl.Module] = err
			if err == nil {
				dirs[pl.Module] = d.Dir
			}
		}
		if err != nil {
			errs = append(errs, &pluginsfile.Error{File: f.Name, Line: pl.Line, Plugin: pl.Name, Msg: "module " + pl.Module + "@" + pl.Version + ": " + err.Error()})
			continue
		}
		if err := checkImportDir(f, pl, dirs[pl.Module]); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	var ge *goError
	if errors.As(tidyErr, &ge) {
		return errors.New("go mod tidy: " + firstLines(ge.stderr, 20))
	}
	return tidyErr
}
