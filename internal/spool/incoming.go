// Incoming: a message being received, kept on disk until it is whole.

package spool

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// IncomingInMemory is how much of a message being received Incoming keeps
// in memory before it moves it to a file: most mail is smaller, and a
// file costs a create and an unlink.
const IncomingInMemory = 64 << 10

// Incoming holds a message while the client sends it: in memory up to
// IncomingInMemory bytes, then in a file created in tmp/ and unlinked at
// once, so it never outlives its process (nothing to discard after a
// crash) and never shows in a directory. It is not synced: what is
// acknowledged is the entry PutMessage writes later. Not safe for
// concurrent use.
type Incoming struct {
	dir string
	mem []byte
	f   *os.File
	n   int64
}

// NewIncoming returns an empty Incoming.
func (s *Spool) NewIncoming() *Incoming {
	return &Incoming{dir: filepath.Join(s.root, tmpDir)}
}

// Write appends p.
func (in *Incoming) Write(p []byte) (int, error) {
	if in.f == nil && len(in.mem)+len(p) <= IncomingInMemory {
		in.mem = append(in.mem, p...)
		in.n += int64(len(p))
		return len(p), nil
	}
	if in.f == nil {
		if err := in.spill(); err != nil {
			return 0, err
		}
	}
	n, err := in.f.Write(p)
	in.n += int64(n)
	if err != nil {
		return n, fmt.Errorf("spool: incoming message: %w", err)
	}
	return n, nil
}

// spill moves what is in memory to a new unlinked file.
func (in *Incoming) spill() error {
	f, err := os.CreateTemp(in.dir, "incoming.*")
	if err != nil {
		return fmt.Errorf("spool: incoming message: %w", err)
	}
	if err := os.Remove(f.Name()); err != nil {
		f.Close()
		return fmt.Errorf("spool: incoming message: %w", err)
	}
	if _, err := f.Write(in.mem); err != nil {
		f.Close()
		return fmt.Errorf("spool: incoming message: %w", err)
	}
	in.f, in.mem = f, nil
	return nil
}

// Size returns the bytes written so far.
func (in *Incoming) Size() int64 { return in.n }

// Bytes returns the message in one buffer of its size: read back from the
// file, or the memory it was kept in.
func (in *Incoming) Bytes() ([]byte, error) {
	if in.f == nil {
		return in.mem[:len(in.mem):len(in.mem)], nil
	}
	buf := make([]byte, in.n)
	if _, err := io.ReadFull(io.NewSectionReader(in.f, 0, in.n), buf); err != nil {
		return nil, fmt.Errorf("spool: incoming message: read back: %w", err)
	}
	return buf, nil
}

// Close releases the file (and so its disk space). It may be called more
// than once.
func (in *Incoming) Close() error {
	in.mem = nil
	if in.f == nil {
		return nil
	}
	err := in.f.Close()
	in.f = nil
	return err
}
