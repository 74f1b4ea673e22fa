// Package powercut is a power-cut injector for tests: a FUSE loopback
// filesystem (go-fuse) that a test mounts over a directory and runs real
// processes on. It passes every operation through to a backing directory and
// remembers what a power cut would take away:
//
//   - per file, what was written or truncated since that file's last fsync or
//     fdatasync (an undo log: the bytes each write overwrote, the size before);
//   - per directory, its entries as they were at its last fsync, taken at the
//     first create, link, rename or removal after it (POSIX makes a name
//     durable only once its directory is synced).
//
// Cut, called once the test has killed every process using the mount,
// unmounts and leaves the backing directory as a power cut would: every
// directory holds the names it held at its last fsync, and every file the
// bytes it held at its last fsync. A file unlinked or replaced since its
// directory's last fsync is kept aside (a hard link) so that Cut can bring it
// back. In torn mode (WithTornWrites) each file keeps a random prefix of its
// unsynced writes instead of none of them, from a seed, so a run replays.
//
// The kernel's page cache above the mount holds nothing the injector does not
// see: writes reach it as they are made (no writeback cache, no passthrough).
// Linux with /dev/fuse only; Available says why not.
package powercut

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// Available reports why this machine cannot mount the injector (nil if it
// can): tests skip with its message.
func Available() error {
	if runtime.GOOS != "linux" {
		return fmt.Errorf("the power-cut injector needs Linux's FUSE (this is %s)", runtime.GOOS)
	}
	f, err := os.OpenFile("/dev/fuse", os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("the power-cut injector needs /dev/fuse: %w", err)
	}
	f.Close()
	if os.Geteuid() != 0 {
		for _, bin := range []string{"fusermount3", "fusermount"} {
			if _, err := lookPath(bin); err == nil {
				return nil
			}
		}
		return errors.New("the power-cut injector needs root or fusermount3 (Debian's fuse3) to mount")
	}
	return nil
}

func lookPath(bin string) (string, error) {
	for _, dir := range filepath.SplitList(os.Getenv("PATH") + ":/bin:/usr/bin") {
		p := filepath.Join(dir, bin)
		if info, err := os.Stat(p); err == nil && !info.IsDir() {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found", bin)
}

// Option configures a mount.
type Option func(*FS)

// WithTornWrites makes Cut keep, of each file's unsynced writes, a random
// prefix (possibly none, possibly all, possibly ending inside a write),
// chosen from seed.
func WithTornWrites(seed uint64) Option {
	return func(f *FS) { f.torn = rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)) }
}

// WithDurableNames makes a name durable as soon as it is made, as ext4 and
// xfs do in practice (their journals commit the directory with the file's
// fsync), instead of at its directory's fsync: only data is lost at a cut.
func WithDurableNames() Option { return func(f *FS) { f.durableNames = true } }

// FS is a mounted injector.
type FS struct {
	backing    string // the real directory
	mountpoint string
	stash      string // hard links to files unlinked or replaced since their directory's fsync
	server     *fuse.Server

	torn         *rand.Rand
	durableNames bool

	mu    sync.Mutex          // guards the fields below, and orders each write with its record
	files map[uint64][]undo   // inode → what its writes since its last fsync overwrote, in order
	dirs  map[uint64][]dirent // directory inode → its entries at its last fsync
	kept  map[uint64]bool     // inodes with a hard link in stash
	stats Stats
	done  bool
}

// undo is what one write or truncation changed: the bytes it overwrote at
// off, the file's size before it, and how many bytes it wrote (a write).
type undo struct {
	off     int64
	old     []byte
	oldSize int64
	written int64
}

type dirent struct {
	name  string
	ino   uint64
	isDir bool
}

// Stats counts what the mount saw.
type Stats struct {
	Writes, Truncates, FileSyncs, DirSyncs, NameChanges int64
}

// Mount mounts an injector at mountpoint over backing (both existing
// directories). Everything in backing when it is mounted counts as durable.
func Mount(backing, mountpoint string, opts ...Option) (*FS, error) {
	if err := Available(); err != nil {
		return nil, err
	}
	backing, err := filepath.Abs(backing)
	if err != nil {
		return nil, err
	}
	var st syscall.Stat_t
	if err := syscall.Stat(backing, &st); err != nil {
		return nil, fmt.Errorf("power-cut injector: backing directory: %w", err)
	}
	stash, err := os.MkdirTemp(filepath.Dir(backing), ".powercut-stash-*")
	if err != nil {
		return nil, fmt.Errorf("power-cut injector: a directory beside %s for unlinked files: %w", backing, err)
	}
	pc := &FS{
		backing: backing, mountpoint: mountpoint, stash: stash,
		files: map[uint64][]undo{}, dirs: map[uint64][]dirent{}, kept: map[uint64]bool{},
	}
	for _, o := range opts {
		o(pc)
	}
	root := &fs.LoopbackRoot{Path: backing, Dev: st.Dev}
	root.NewNode = func(r *fs.LoopbackRoot, _ *fs.Inode, _ string, _ *syscall.Stat_t) fs.InodeEmbedder {
		return &node{LoopbackNode: fs.LoopbackNode{RootData: r}, pc: pc}
	}
	root.RootNode = root.NewNode(root, nil, "", &st)
	zero := time.Duration(0)
	server, err := fs.Mount(mountpoint, root.RootNode, &fs.Options{
		// No kernel caching of names or attributes: what a process sees is
		// what the backing directory holds, even across a Cut and a new mount.
		EntryTimeout: &zero, AttrTimeout: &zero, NegativeTimeout: &zero,
		MountOptions: fuse.MountOptions{
			FsName: "powercut", Name: "powercut", DirectMount: os.Geteuid() == 0,
			DisableXAttrs: true,
		},
	})
	if err != nil {
		os.RemoveAll(stash)
		return nil, fmt.Errorf("power-cut injector: mounting %s over %s: %w", mountpoint, backing, err)
	}
	pc.server = server
	return pc, nil
}

// Mountpoint is where the injector is mounted.
func (pc *FS) Mountpoint() string { return pc.mountpoint }

// Stats is what the mount has seen so far.
func (pc *FS) Stats() Stats {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	return pc.stats
}

// Unmount unmounts without a cut: the backing directory keeps everything
// written (what a clean shutdown leaves). It does nothing after Cut.
func (pc *FS) Unmount() error {
	pc.mu.Lock()
	if pc.done {
		pc.mu.Unlock()
		return nil
	}
	pc.done = true
	pc.mu.Unlock()
	defer os.RemoveAll(pc.stash)
	return pc.unmount()
}

func (pc *FS) unmount() error {
	if os.Geteuid() == 0 {
		// Root unmounts itself: go-fuse's Unmount then waits for its serve
		// loops, which a killed process's last releases have been seen to
		// keep for a minute. The kernel refuses (EBUSY) while it still has
		// a dead process's files; past a moment, detach: nothing can open
		// anything through the mount any more, and what was open is gone.
		deadline := time.Now().Add(2 * time.Second)
		for {
			err := syscall.Unmount(pc.mountpoint, 0)
			if err == nil {
				return nil
			}
			if !errors.Is(err, syscall.EBUSY) || time.Now().After(deadline) {
				if err := syscall.Unmount(pc.mountpoint, syscall.MNT_DETACH); err != nil {
					return fmt.Errorf("power-cut injector: unmounting %s: %w", pc.mountpoint, err)
				}
				return nil
			}
			time.Sleep(20 * time.Millisecond) // the kernel gives no event for it
		}
	}
	if err := pc.server.Unmount(); err != nil {
		// A process still using the mount: detach it lazily, so that the
		// test's cleanup does not leave a mount behind.
		syscall.Unmount(pc.mountpoint, syscall.MNT_DETACH)
		return fmt.Errorf("power-cut injector: unmounting %s (is a process still using it?): %w", pc.mountpoint, err)
	}
	return nil
}

// CutReport says what a Cut took away.
type CutReport struct {
	FilesRolledBack int   // files whose content went back to their last fsync (or part of the way, torn)
	BytesLost       int64 // unsynced bytes written that the cut discarded
	NamesLost       []string
	NamesRestored   []string // names removed or replaced since their directory's last fsync, back
}

func (r CutReport) String() string {
	return fmt.Sprintf("%d files rolled back, %d unsynced bytes lost, %d names lost %v, %d names restored %v",
		r.FilesRolledBack, r.BytesLost, len(r.NamesLost), firstNames(r.NamesLost), len(r.NamesRestored), firstNames(r.NamesRestored))
}

// firstNames is names, cut to the first few.
func firstNames(names []string) []string {
	if len(names) > 8 {
		return append(names[:8:8], "…")
	}
	return names
}

// Cut unmounts (every process using the mount must be dead: kill them
// first) and leaves the backing directory as a power cut would have.
func (pc *FS) Cut() (CutReport, error) {
	pc.mu.Lock()
	if pc.done {
		pc.mu.Unlock()
		return CutReport{}, errors.New("power-cut injector: already unmounted")
	}
	pc.done = true
	pc.mu.Unlock()
	defer os.RemoveAll(pc.stash)
	if err := pc.unmount(); err != nil {
		return CutReport{}, err
	}
	return pc.cut()
}
