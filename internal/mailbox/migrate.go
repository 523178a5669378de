package mailbox

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"

	"github.com/elemta/elemta/internal/dirsync"
)

// A Stray is a Maildir under a root whose directory names are not the
// ones Path gives its address now (written by a version with other rules:
// a local part's capitals kept, a domain in UTF-8), so no new mail reaches
// it.
type Stray struct {
	From, To string // <root>/<domain>/<local>, as found and as Path names it
}

// Strays lists the Strays under root, in directory order.
func Strays(root string) ([]Stray, error) {
	domains, err := os.ReadDir(root)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []Stray
	for _, d := range domains {
		if !d.IsDir() {
			continue
		}
		boxes, err := os.ReadDir(filepath.Join(root, d.Name()))
		if err != nil {
			return nil, err
		}
		for _, b := range boxes {
			if !b.IsDir() || !isMaildir(filepath.Join(root, d.Name(), b.Name())) {
				continue
			}
			to, err := Path(root, b.Name()+"@"+d.Name())
			if err != nil {
				continue // no address names it: not Elemta's
			}
			if from := filepath.Join(root, d.Name(), b.Name()); from != to {
				out = append(out, Stray{From: from, To: to})
			}
		}
	}
	return out, nil
}

// isMaildir reports whether dir has a cur/ and a new/.
func isMaildir(dir string) bool {
	for _, sub := range []string{"cur", "new"} {
		if fi, err := os.Stat(filepath.Join(dir, sub)); err != nil || !fi.IsDir() {
			return false
		}
	}
	return true
}

// Moved says what Move did with a Stray.
type Moved struct {
	// Renamed: To did not exist, and the whole Maildir (its folders and a
	// reader's index files too) is now there.
	Renamed bool
	// Messages counts the messages of cur/ and new/ moved into To's when
	// To existed already.
	Messages int
	// Left names what stays in From for a person to look at: a message
	// whose name To has already, and everything but cur/, new/ and tmp/
	// (a reader's folders and index files belong to its own layout).
	Left []string
}

// Move puts s's mail where Path names its mailbox now: a rename of the
// whole Maildir when there is none there yet, else each message of cur/
// and new/ renamed into To's (Maildir names are unique, so nothing is
// overwritten: a name already there is left). The directories written are
// fsynced; From is removed once empty. Run it with no reader (IMAP server)
// holding From open; delivery may go on, it writes to To only.
func Move(s Stray) (Moved, error) {
	if _, err := os.Lstat(s.To); errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(filepath.Dir(s.To), 0o700); err != nil {
			return Moved{}, err
		}
		if err := os.Rename(s.From, s.To); err != nil {
			return Moved{}, err
		}
		err := errors.Join(dirsync.Dir(filepath.Dir(s.To)), dirsync.Dir(filepath.Dir(s.From)))
		removeEmpty(filepath.Dir(s.From)) // the old domain directory, when this was its last mailbox
		return Moved{Renamed: true}, err
	}
	var m Moved
	for _, sub := range []string{"cur", "new"} {
		n, left, err := moveMessages(filepath.Join(s.From, sub), filepath.Join(s.To, sub))
		m.Messages += n
		for _, l := range left {
			m.Left = append(m.Left, filepath.Join(sub, l))
		}
		if err != nil {
			return m, err
		}
	}
	entries, err := os.ReadDir(s.From)
	if err != nil {
		return m, err
	}
	for _, e := range entries {
		if !slices.Contains([]string{"cur", "new", "tmp"}, e.Name()) {
			m.Left = append(m.Left, e.Name())
		}
	}
	if len(m.Left) == 0 {
		// tmp/ holds only what a writer never finished: not mail.
		_ = os.RemoveAll(filepath.Join(s.From, "tmp"))
		for _, sub := range []string{"cur", "new", ""} {
			_ = os.Remove(filepath.Join(s.From, sub))
		}
		_ = dirsync.Dir(filepath.Dir(s.From))
		removeEmpty(filepath.Dir(s.From))
	}
	return m, nil
}

// moveMessages renames each file of from into to (both Maildir
// subdirectories), leaving those whose name to has, and fsyncs both.
func moveMessages(from, to string) (int, []string, error) {
	entries, err := os.ReadDir(from)
	if err != nil {
		return 0, nil, err
	}
	if err := os.MkdirAll(to, 0o700); err != nil {
		return 0, nil, err
	}
	n := 0
	var left []string
	for _, e := range entries {
		if !e.Type().IsRegular() {
			left = append(left, e.Name())
			continue
		}
		dst := filepath.Join(to, e.Name())
		if _, err := os.Lstat(dst); err == nil {
			left = append(left, e.Name())
			continue
		}
		if err := os.Rename(filepath.Join(from, e.Name()), dst); err != nil {
			return n, left, err
		}
		n++
	}
	if n == 0 {
		return 0, left, nil
	}
	return n, left, errors.Join(dirsync.Dir(to), dirsync.Dir(from))
}

// removeEmpty removes dir if it is empty, best effort.
func removeEmpty(dir string) {
	if os.Remove(dir) == nil {
		_ = dirsync.Dir(filepath.Dir(dir))
	}
}
