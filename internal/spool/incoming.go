// Incoming: a message being received, kept on disk until it is whole.

package spool

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// Incoming holds a message while the client sends it: a file created in
// tmp/ and unlinked at once, so it never outlives its process (nothing to
// discard after a crash) and never shows in a directory. It is not
// synced: what is acknowledged is the entry PutMessage writes later. Not
// safe for concurrent use.
type Incoming struct {
	f *os.File
	n int64
}

// NewIncoming creates an empty Incoming.
func (s *Spool) NewIncoming() (*Incoming, error) {
	f, err := os.CreateTemp(filepath.Join(s.root, tmpDir), "incoming.*")
	if err != nil {
		return nil, fmt.Errorf("spool: incoming message: %w", err)
	}
	if err := os.Remove(f.Name()); err != nil {
		f.Close()
		return nil, fmt.Errorf("spool: incoming message: %w", err)
	}
	return &Incoming{f: f}, nil
}

// Write appends p.
func (in *Incoming) Write(p []byte) (int, error) {
	n, err := in.f.Write(p)
	in.n += int64(n)
	if err != nil {
		return n, fmt.Errorf("spool: incoming message: %w", err)
	}
	return n, nil
}

// Size returns the bytes written so far.
func (in *Incoming) Size() int64 { return in.n }

// Bytes reads the message back into one buffer of exactly its size.
func (in *Incoming) Bytes() ([]byte, error) {
	buf := make([]byte, in.n)
	if _, err := io.ReadFull(io.NewSectionReader(in.f, 0, in.n), buf); err != nil {
		return nil, fmt.Errorf("spool: incoming message: read back: %w", err)
	}
	return buf, nil
}

// Close releases the file (and so its disk space).
func (in *Incoming) Close() error { return in.f.Close() }
