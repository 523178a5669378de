package spool

import (
	"fmt"

	"github.com/elemta/elemta/internal/dirsync"
)

// syncDir fsyncs a spool directory (the fsync of its dirsync.Syncer).
func syncDir(dir string) error {
	if err := dirsync.Dir(dir); err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	return nil
}
