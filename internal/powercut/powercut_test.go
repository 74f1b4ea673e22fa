package powercut_test

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/quiniela/quiniela/internal/powercut"
)

func mount(t *testing.T, files map[string]string, opts ...powercut.Option) (*powercut.FS, string, string) {
	t.Helper()
	return powercut.MountTemp(t, files, opts...)
}

// openAppend opens the file at path to append to it.
func openAppend(t *testing.T, path string) *os.File {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func cut(t *testing.T, pc *powercut.FS) powercut.CutReport {
	t.Helper()
	rep, err := pc.Cut()
	if err != nil {
		t.Fatal(err)
	}
	t.Log("cut: ", rep)
	return rep
}

func create(t *testing.T, path string) *os.File {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func write(t *testing.T, f *os.File, data string) {
	t.Helper()
	if _, err := f.WriteString(data); err != nil {
		t.Fatal(err)
	}
}

func syncFile(t *testing.T, f interface{ Sync() error }) {
	t.Helper()
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
}

func syncDir(t *testing.T, dir string) {
	t.Helper()
	d, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	syncFile(t, d)
}

// content is the file's content, or "<none>" if it does not exist.
func content(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return "<none>"
	}
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func want(t *testing.T, path, expect string) {
	t.Helper()
	if got := content(t, path); got != expect {
		t.Errorf("%s after the cut: %q, want %q", filepath.Base(path), got, expect)
	}
}

func TestUnsyncedWriteIsGone(t *testing.T) {
	pc, mnt, backing := mount(t, map[string]string{"a": "durable\n"})
	f := openAppend(t, filepath.Join(mnt, "a"))
	write(t, f, "unsynced\n")
	f.Close()
	if got := content(t, filepath.Join(backing, "a")); got != "durable\nunsynced\n" {
		t.Fatalf("before the cut the backing file holds %q: the write did not pass through", got)
	}
	rep := cut(t, pc)
	want(t, filepath.Join(backing, "a"), "durable\n")
	if rep.BytesLost != 9 {
		t.Errorf("the cut says it lost %d bytes, want 9", rep.BytesLost)
	}
}

func TestSyncedWriteIsKept(t *testing.T) {
	pc, mnt, backing := mount(t, map[string]string{"a": "one\n"})
	f := openAppend(t, filepath.Join(mnt, "a"))
	write(t, f, "two\n")
	syncFile(t, f)
	write(t, f, "three\n") // after the fsync: lost
	f.Close()
	cut(t, pc)
	want(t, filepath.Join(backing, "a"), "one\ntwo\n")
}

func TestOverwriteIsUndone(t *testing.T) {
	pc, mnt, backing := mount(t, map[string]string{"a": "0123456789"})
	f, err := os.OpenFile(filepath.Join(mnt, "a"), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("abcdefghijklmn"), 5); err != nil { // over the end
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("XY"), 1); err != nil {
		t.Fatal(err)
	}
	f.Close()
	cut(t, pc)
	want(t, filepath.Join(backing, "a"), "0123456789")
}

func TestNewFileNeedsItsDirectorySynced(t *testing.T) {
	pc, mnt, backing := mount(t, nil)
	f := create(t, filepath.Join(mnt, "new"))
	write(t, f, "data\n")
	syncFile(t, f) // the data, not the name
	f.Close()
	synced := create(t, filepath.Join(mnt, "named"))
	write(t, synced, "kept\n")
	syncFile(t, synced)
	synced.Close()
	if err := os.Mkdir(filepath.Join(mnt, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	inSub := create(t, filepath.Join(mnt, "sub", "f"))
	syncFile(t, inSub)
	inSub.Close()
	syncDir(t, filepath.Join(mnt, "sub")) // sub's names, but sub itself is not in root's
	// "named" is made durable by a directory fsync; "new" was created before
	// it too, so only a name made after the fsync is lost.
	syncDir(t, mnt)
	late := create(t, filepath.Join(mnt, "late"))
	write(t, late, "late\n")
	syncFile(t, late)
	late.Close()
	rep := cut(t, pc)
	want(t, filepath.Join(backing, "new"), "data\n")
	want(t, filepath.Join(backing, "named"), "kept\n")
	want(t, filepath.Join(backing, "late"), "<none>")
	want(t, filepath.Join(backing, "sub", "f"), "")
	if len(rep.NamesLost) != 1 || rep.NamesLost[0] != "late" {
		t.Errorf("names lost %v, want [late]", rep.NamesLost)
	}
}

func TestCreatedSyncedFileWithoutDirectorySyncIsGone(t *testing.T) {
	pc, mnt, backing := mount(t, map[string]string{"old": "old\n"})
	f := create(t, filepath.Join(mnt, "bets.csv"))
	write(t, f, "row\n")
	syncFile(t, f)
	f.Close()
	cut(t, pc)
	want(t, filepath.Join(backing, "bets.csv"), "<none>")
	want(t, filepath.Join(backing, "old"), "old\n")
}

func TestDurableNamesMode(t *testing.T) {
	pc, mnt, backing := mount(t, nil, powercut.WithDurableNames())
	f := create(t, filepath.Join(mnt, "f"))
	write(t, f, "synced\n")
	syncFile(t, f)
	write(t, f, "not\n")
	f.Close()
	cut(t, pc)
	want(t, filepath.Join(backing, "f"), "synced\n")
}

func TestRenameWithoutDirectorySyncIsUndone(t *testing.T) {
	pc, mnt, backing := mount(t, map[string]string{"state": "old state\n", "other": "x"})
	tmp := create(t, filepath.Join(mnt, "state.tmp"))
	write(t, tmp, "new state\n")
	syncFile(t, tmp)
	tmp.Close()
	if err := os.Rename(filepath.Join(mnt, "state.tmp"), filepath.Join(mnt, "state")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(mnt, "other"), filepath.Join(mnt, "moved")); err != nil {
		t.Fatal(err)
	}
	cut(t, pc)
	want(t, filepath.Join(backing, "state"), "old state\n")
	want(t, filepath.Join(backing, "state.tmp"), "<none>")
	want(t, filepath.Join(backing, "other"), "x")
	want(t, filepath.Join(backing, "moved"), "<none>")
}

func TestRenameWithDirectorySyncIsKept(t *testing.T) {
	pc, mnt, backing := mount(t, map[string]string{"state": "old state\n"})
	tmp := create(t, filepath.Join(mnt, "state.tmp"))
	write(t, tmp, "new state\n")
	syncFile(t, tmp)
	tmp.Close()
	if err := os.Rename(filepath.Join(mnt, "state.tmp"), filepath.Join(mnt, "state")); err != nil {
		t.Fatal(err)
	}
	syncDir(t, mnt)
	cut(t, pc)
	want(t, filepath.Join(backing, "state"), "new state\n")
	want(t, filepath.Join(backing, "state.tmp"), "<none>")
}

func TestUnlinkWithoutDirectorySyncIsUndone(t *testing.T) {
	pc, mnt, backing := mount(t, map[string]string{"a": "a\n", "b": "b\n"})
	for _, n := range []string{"a", "b"} {
		if err := os.Remove(filepath.Join(mnt, n)); err != nil {
			t.Fatal(err)
		}
		if n == "a" {
			syncDir(t, mnt)
		}
	}
	cut(t, pc)
	want(t, filepath.Join(backing, "a"), "<none>")
	want(t, filepath.Join(backing, "b"), "b\n")
}

func TestTruncateIsUndone(t *testing.T) {
	pc, mnt, backing := mount(t, map[string]string{"cut": "0123456789", "grown": "ab", "synced": "0123456789"})
	if err := os.Truncate(filepath.Join(mnt, "cut"), 4); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(filepath.Join(mnt, "grown"), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(100); err != nil {
		t.Fatal(err)
	}
	f.Close()
	s, err := os.OpenFile(filepath.Join(mnt, "synced"), os.O_RDWR|os.O_TRUNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	write(t, s, "new")
	syncFile(t, s)
	s.Close()
	cut(t, pc)
	want(t, filepath.Join(backing, "cut"), "0123456789")
	want(t, filepath.Join(backing, "grown"), "ab")
	want(t, filepath.Join(backing, "synced"), "new")
}

// Torn mode keeps a prefix of the unsynced writes, from a seed: every
// outcome is a prefix of what was written, the same seed gives the same
// one, and over seeds both ends and the middle of a write show up.
func TestTornWritesKeepAPrefix(t *testing.T) {
	written := bytes.Repeat([]byte("0123456789"), 30)
	outcomes := map[int]bool{}
	for seed := range uint64(12) {
		var got [2]string
		for run := range got {
			pc, mnt, backing := mount(t, map[string]string{"f": "base:"}, powercut.WithTornWrites(seed))
			f := openAppend(t, filepath.Join(mnt, "f"))
			for i := 0; i < len(written); i += 100 {
				write(t, f, string(written[i:i+100]))
			}
			f.Close()
			cut(t, pc)
			got[run] = content(t, filepath.Join(backing, "f"))
		}
		if got[0] != got[1] {
			t.Fatalf("seed %d: two cuts left %q and %q", seed, got[0], got[1])
		}
		kept, ok := bytes.CutPrefix([]byte(got[0]), []byte("base:"))
		if !ok || !bytes.HasPrefix(written, kept) {
			t.Fatalf("seed %d: the cut left %q, not the durable base and a prefix of the writes", seed, got[0])
		}
		outcomes[len(kept)] = true
	}
	torn := 0
	for n := range outcomes {
		if n%100 != 0 {
			torn++
		}
	}
	if len(outcomes) < 3 || torn == 0 {
		t.Errorf("12 seeds kept %v bytes: want several outcomes, one inside a write", outcomes)
	}
}
