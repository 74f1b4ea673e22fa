package powercut

import (
	"os"
	"path/filepath"
	"testing"
)

// MountTemp mounts an injector over a fresh backing directory in the test's
// temporary folder, holding files (name → content, durable), and returns it
// with its mount point and backing directory (what the disk keeps). The
// test is skipped, saying why, where the injector cannot run; the mount
// goes when the test ends (after the test's own cleanups, which kill the
// processes using it, if registered later).
func MountTemp(t testing.TB, files map[string]string, opts ...Option) (pc *FS, mnt, backing string) {
	t.Helper()
	if err := Available(); err != nil {
		t.Skip(err)
	}
	backing, mnt = filepath.Join(t.TempDir(), "disk"), filepath.Join(t.TempDir(), "mnt")
	for _, d := range []string{backing, mnt} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(backing, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	pc, err := Mount(backing, mnt, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Unmount() })
	return pc, mnt, backing
}
