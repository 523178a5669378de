package mailbox

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// maildir makes a Maildir at root/rel with the given files (cur/x, new/y,
// .Sent/cur/z, dovecot-uidlist, ...), each holding its own name.
func maildir(t *testing.T, root, rel string, files ...string) string {
	t.Helper()
	dir := filepath.Join(root, rel)
	for _, sub := range []string{"cur", "new", "tmp"} {
		require.NoError(t, os.MkdirAll(filepath.Join(dir, sub), 0o700))
	}
	for _, f := range files {
		require.NoError(t, os.MkdirAll(filepath.Dir(filepath.Join(dir, f)), 0o700))
		require.NoError(t, os.WriteFile(filepath.Join(dir, f), []byte(f), 0o600))
	}
	return dir
}

func TestStrays(t *testing.T) {
	root := t.TempDir()
	maildir(t, root, "example.org/alice")
	maildir(t, root, "example.org/Bob")
	maildir(t, root, "bücher.example/user")
	maildir(t, root, "xn--bcher-kva.example/other")
	require.NoError(t, os.MkdirAll(filepath.Join(root, "example.org", "NotAMaildir"), 0o700))
	maildir(t, root, "example.org/.hidden") // no address names it
	require.NoError(t, os.WriteFile(filepath.Join(root, "stray-file"), nil, 0o600))

	got, err := Strays(root)
	require.NoError(t, err)
	assert.ElementsMatch(t, []Stray{
		{From: filepath.Join(root, "example.org/Bob"), To: filepath.Join(root, "example.org/bob")},
		{From: filepath.Join(root, "bücher.example/user"), To: filepath.Join(root, "xn--bcher-kva.example/user")},
	}, got)

	none, err := Strays(filepath.Join(root, "absent"))
	require.NoError(t, err)
	assert.Empty(t, none, "no root yet: nothing to move")
}

// TestMoveRenames: with no Maildir at the new name, the whole one moves,
// folders and index files too, and an emptied domain directory goes.
func TestMoveRenames(t *testing.T) {
	root := t.TempDir()
	from := maildir(t, root, "bücher.example/user", "cur/1:2,S", "new/2", ".Sent/cur/3", "dovecot-uidlist")
	to := filepath.Join(root, "xn--bcher-kva.example", "user")
	m, err := Move(Stray{From: from, To: to})
	require.NoError(t, err)
	assert.Equal(t, Moved{Renamed: true}, m)
	for _, f := range []string{"cur/1:2,S", "new/2", ".Sent/cur/3", "dovecot-uidlist"} {
		b, err := os.ReadFile(filepath.Join(to, f))
		require.NoError(t, err, f)
		assert.Equal(t, f, string(b))
	}
	assert.NoDirExists(t, filepath.Join(root, "bücher.example"))
}

// TestMoveMerges: into a Maildir that exists (mail delivered since the
// upgrade), messages of cur/ and new/ move; a name already there, folders
// and index files stay, named; nothing is overwritten.
func TestMoveMerges(t *testing.T) {
	root := t.TempDir()
	from := maildir(t, root, "example.org/Alice", "cur/old1:2,S", "new/old2", "new/same", ".Sent/cur/3", "dovecot-uidlist", "tmp/unfinished")
	to := maildir(t, root, "example.org/alice", "new/since-upgrade")
	require.NoError(t, os.WriteFile(filepath.Join(to, "new", "same"), []byte("theirs"), 0o600))

	m, err := Move(Stray{From: from, To: to})
	require.NoError(t, err)
	assert.False(t, m.Renamed)
	assert.Equal(t, 2, m.Messages)
	assert.ElementsMatch(t, []string{"new/same", ".Sent", "dovecot-uidlist"}, m.Left)
	for f, want := range map[string]string{"cur/old1:2,S": "cur/old1:2,S", "new/old2": "new/old2", "new/since-upgrade": "new/since-upgrade", "new/same": "theirs"} {
		b, err := os.ReadFile(filepath.Join(to, f))
		require.NoError(t, err, f)
		assert.Equal(t, want, string(b), f)
	}
	assert.FileExists(t, filepath.Join(from, "new", "same"), "left where it was")
	assert.FileExists(t, filepath.Join(from, "tmp", "unfinished"), "From is kept while something is left in it")

	// Once the rest is dealt with, a second Move empties and removes From.
	require.NoError(t, os.Remove(filepath.Join(from, "new", "same")))
	require.NoError(t, os.RemoveAll(filepath.Join(from, ".Sent")))
	require.NoError(t, os.Remove(filepath.Join(from, "dovecot-uidlist")))
	m, err = Move(Stray{From: from, To: to})
	require.NoError(t, err)
	assert.Equal(t, Moved{}, m)
	assert.NoDirExists(t, from)
	assert.DirExists(t, filepath.Join(root, "example.org"), "the domain still has alice")
}
