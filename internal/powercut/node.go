package powercut

import (
	"context"
	"os"
	"path/filepath"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// node is a loopback node that tells the injector, before each change, what
// the change is about to overwrite.
type node struct {
	fs.LoopbackNode
	pc *FS
}

// backingPath is the node's path in the backing directory.
func (n *node) backingPath() string {
	return filepath.Join(n.RootData.Path, n.Path(n.RootData.RootNode.EmbeddedInode()))
}

// ino is the backing inode number of the file at path (0 if none).
func ino(path string) uint64 {
	var st syscall.Stat_t
	if syscall.Lstat(path, &st) != nil {
		return 0
	}
	return st.Ino
}

func fdIno(fd int) uint64 {
	var st syscall.Stat_t
	if syscall.Fstat(fd, &st) != nil {
		return 0
	}
	return st.Ino
}

func (n *node) isDir() bool { return n.StableAttr().Mode&syscall.S_IFMT == syscall.S_IFDIR }

// dirChanging keeps the directory's entries as they are, if they are its
// durable ones (the first change since its last fsync).
func (n *node) dirChanging() {
	pc := n.pc
	pc.stats.NameChanges++
	if pc.durableNames {
		return
	}
	p := n.backingPath()
	d := ino(p)
	if _, ok := pc.dirs[d]; ok || d == 0 {
		return
	}
	pc.dirs[d] = listDir(p)
}

// keep hard-links the file at path into the stash, so that Cut can bring it
// back if its name was durable. Directories cannot be linked: Cut makes them
// anew.
func (pc *FS) keep(path string) {
	if pc.durableNames {
		return
	}
	var st syscall.Stat_t
	if syscall.Lstat(path, &st) != nil || st.Mode&syscall.S_IFMT == syscall.S_IFDIR || pc.kept[st.Ino] {
		return
	}
	if os.Link(path, filepath.Join(pc.stash, stashName(st.Ino))) == nil {
		pc.kept[st.Ino] = true
	}
}

func (n *node) Create(ctx context.Context, name string, flags, mode uint32, out *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	pc := n.pc
	pc.mu.Lock()
	defer pc.mu.Unlock()
	n.dirChanging()
	p := filepath.Join(n.backingPath(), name)
	if flags&syscall.O_TRUNC != 0 {
		pc.truncatingPath(p, 0)
	}
	ch, fh, ff, errno := n.LoopbackNode.Create(ctx, name, flags, mode, out)
	if errno != 0 {
		return ch, fh, ff, errno
	}
	return ch, &file{LoopbackFile: fh.(*fs.LoopbackFile), n: ch.Operations().(*node)}, ff, 0
}

func (n *node) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	pc := n.pc
	pc.mu.Lock()
	defer pc.mu.Unlock()
	if flags&syscall.O_TRUNC != 0 {
		pc.truncatingPath(n.backingPath(), 0)
	}
	fh, ff, errno := n.LoopbackNode.Open(ctx, flags)
	if errno != 0 {
		return fh, ff, errno
	}
	return &file{LoopbackFile: fh.(*fs.LoopbackFile), n: n}, ff, 0
}

func (n *node) Mknod(ctx context.Context, name string, mode, rdev uint32, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	n.pc.mu.Lock()
	defer n.pc.mu.Unlock()
	n.dirChanging()
	return n.LoopbackNode.Mknod(ctx, name, mode, rdev, out)
}

func (n *node) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	n.pc.mu.Lock()
	defer n.pc.mu.Unlock()
	n.dirChanging()
	return n.LoopbackNode.Mkdir(ctx, name, mode, out)
}

func (n *node) Symlink(ctx context.Context, target, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	n.pc.mu.Lock()
	defer n.pc.mu.Unlock()
	n.dirChanging()
	return n.LoopbackNode.Symlink(ctx, target, name, out)
}

func (n *node) Link(ctx context.Context, target fs.InodeEmbedder, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	n.pc.mu.Lock()
	defer n.pc.mu.Unlock()
	n.dirChanging()
	return n.LoopbackNode.Link(ctx, target, name, out)
}

func (n *node) Unlink(ctx context.Context, name string) syscall.Errno {
	n.pc.mu.Lock()
	defer n.pc.mu.Unlock()
	n.dirChanging()
	n.pc.keep(filepath.Join(n.backingPath(), name))
	return n.LoopbackNode.Unlink(ctx, name)
}

func (n *node) Rmdir(ctx context.Context, name string) syscall.Errno {
	n.pc.mu.Lock()
	defer n.pc.mu.Unlock()
	n.dirChanging()
	return n.LoopbackNode.Rmdir(ctx, name)
}

func (n *node) Rename(ctx context.Context, name string, newParent fs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	n.pc.mu.Lock()
	defer n.pc.mu.Unlock()
	to, ok := newParent.(*node)
	if !ok {
		return syscall.EXDEV
	}
	n.dirChanging()
	to.dirChanging()
	n.pc.keep(filepath.Join(to.backingPath(), newName)) // a file the rename replaces
	return n.LoopbackNode.Rename(ctx, name, &to.LoopbackNode, newName, flags)
}

// Fsync makes a file's data, or a directory's names, durable.
func (n *node) Fsync(ctx context.Context, f fs.FileHandle, flags uint32) syscall.Errno {
	pc := n.pc
	pc.mu.Lock()
	defer pc.mu.Unlock()
	var errno syscall.Errno
	var synced uint64
	switch h := f.(type) {
	case *file:
		errno, synced = h.LoopbackFile.Fsync(ctx, flags), fdIno(h.fd())
	case *dir:
		errno, synced = h.loopbackDir.Fsyncdir(ctx, flags), ino(n.backingPath())
	default:
		errno, synced = fs.ToErrno(fsyncPath(n.backingPath())), ino(n.backingPath())
	}
	if errno != 0 {
		return errno
	}
	if n.isDir() {
		pc.stats.DirSyncs++
		delete(pc.dirs, synced)
	} else {
		pc.stats.FileSyncs++
		delete(pc.files, synced)
	}
	return 0
}

// loopbackDir is what go-fuse's loopback directory handle does.
type loopbackDir interface {
	fs.FileReleasedirer
	fs.FileSeekdirer
	fs.FileReaddirenter
	fs.FileFsyncdirer
}

// dir is a loopback directory handle whose fsync the injector sees.
type dir struct {
	loopbackDir
	n *node
}

func (d *dir) Fsyncdir(ctx context.Context, flags uint32) syscall.Errno {
	return d.n.Fsync(ctx, d, flags)
}

func (n *node) OpendirHandle(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	fh, ff, errno := n.LoopbackNode.OpendirHandle(ctx, flags)
	if ld, ok := fh.(loopbackDir); ok && errno == 0 {
		return &dir{loopbackDir: ld, n: n}, ff, 0
	}
	return fh, ff, errno
}

// Tmpfile is refused: a file with no name would escape the injector
// (callers fall back to a named file).
func (n *node) Tmpfile(context.Context, uint32, uint32, *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	return nil, nil, 0, syscall.EOPNOTSUPP
}

func fsyncPath(p string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

// Setattr records a truncation (by path or by descriptor) before it is made.
func (n *node) Setattr(ctx context.Context, f fs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	pc := n.pc
	pc.mu.Lock()
	defer pc.mu.Unlock()
	if size, ok := in.GetSize(); ok {
		pc.truncatingPath(n.backingPath(), int64(size))
	}
	if h, ok := f.(*file); ok {
		f = h.LoopbackFile
	}
	return n.LoopbackNode.Setattr(ctx, f, in, out)
}

// CopyFileRange is refused: callers fall back to reads and writes, which
// the injector records.
func (n *node) CopyFileRange(context.Context, fs.FileHandle, uint64, *fs.Inode, fs.FileHandle, uint64, uint64, uint64) (uint32, syscall.Errno) {
	return 0, syscall.ENOTSUP
}

// truncatingPath records that the file at p is about to be cut or grown to
// size.
func (pc *FS) truncatingPath(p string, size int64) {
	f, err := os.Open(p)
	if err != nil {
		return // nothing there yet: nothing to undo
	}
	defer f.Close()
	var st syscall.Stat_t
	if syscall.Fstat(int(f.Fd()), &st) != nil {
		return
	}
	pc.stats.Truncates++
	pc.record(st.Ino, int(f.Fd()), st.Size, size, max(st.Size-size, 0), 0)
}

// record notes that [off, off+n) of inode ino (open as fd, size bytes) is
// about to be overwritten by a write of written bytes (0: a truncation to
// off).
func (pc *FS) record(ino uint64, fd int, size, off, n, written int64) {
	u := undo{off: off, oldSize: size, written: written}
	if end := min(off+n, size); end > off {
		u.old = make([]byte, end-off)
		m, _ := syscall.Pread(fd, u.old, off)
		u.old = u.old[:max(m, 0)]
	}
	pc.files[ino] = append(pc.files[ino], u)
}

// file is a loopback file handle whose writes the injector records. It
// offers no passthrough descriptor: writes must come through Write.
type file struct {
	*fs.LoopbackFile
	n *node
}

func (f *file) PassthroughFd() (int, bool) { return 0, false }

func (f *file) fd() int {
	fd, _ := f.LoopbackFile.PassthroughFd() // the descriptor, not handed to the kernel
	return fd
}

func (f *file) recordWrite(off, n int64) {
	fd := f.fd()
	var st syscall.Stat_t
	if syscall.Fstat(fd, &st) != nil {
		return
	}
	f.n.pc.stats.Writes++
	f.n.pc.record(st.Ino, fd, st.Size, off, n, n)
}

func (f *file) Write(ctx context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	pc := f.n.pc
	pc.mu.Lock()
	defer pc.mu.Unlock()
	f.recordWrite(off, int64(len(data)))
	return f.LoopbackFile.Write(ctx, data, off)
}

func (f *file) Writev(ctx context.Context, data [][]byte, off int64) (uint32, syscall.Errno) {
	pc := f.n.pc
	pc.mu.Lock()
	defer pc.mu.Unlock()
	var n int64
	for _, d := range data {
		n += int64(len(d))
	}
	f.recordWrite(off, n)
	return f.LoopbackFile.Writev(ctx, data, off)
}

func (f *file) Allocate(ctx context.Context, off, size uint64, mode uint32) syscall.Errno {
	pc := f.n.pc
	pc.mu.Lock()
	defer pc.mu.Unlock()
	fd := f.fd()
	var st syscall.Stat_t
	if syscall.Fstat(fd, &st) == nil {
		pc.record(st.Ino, fd, st.Size, int64(off), int64(size), 0)
	}
	return f.LoopbackFile.Allocate(ctx, off, size, mode)
}

func (f *file) Fsync(ctx context.Context, flags uint32) syscall.Errno {
	return f.n.Fsync(ctx, f, flags)
}
