package powercut

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
)

func stashName(ino uint64) string { return strconv.FormatUint(ino, 10) }

// listDir is the entries of the directory at p.
func listDir(p string) []dirent {
	des, _ := os.ReadDir(p)
	out := make([]dirent, 0, len(des))
	for _, de := range des {
		if i := ino(filepath.Join(p, de.Name())); i != 0 {
			out = append(out, dirent{name: de.Name(), ino: i, isDir: de.IsDir()})
		}
	}
	return out
}

// cut rebuilds the backing directory as the power cut leaves it. It builds
// the durable tree beside it out of hard links (no file is copied), rolls
// the files in it back to their last fsync, then puts it in place.
func (pc *FS) cut() (CutReport, error) {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	var rep CutReport
	// Where each inode is now: under its current name, or kept in the stash.
	where := map[uint64]string{}
	before := map[string]bool{}
	filepath.WalkDir(pc.backing, func(p string, d fs.DirEntry, err error) error {
		if err == nil && p != pc.backing {
			if i := ino(p); i != 0 && where[i] == "" {
				where[i] = p
			}
			rel, _ := filepath.Rel(pc.backing, p)
			before[rel] = true
		}
		return nil
	})
	for _, e := range listDir(pc.stash) {
		if i, err := strconv.ParseUint(e.name, 10, 64); err == nil && where[i] == "" {
			where[i] = filepath.Join(pc.stash, e.name)
		}
	}

	fresh, err := os.MkdirTemp(filepath.Dir(pc.backing), ".powercut-cut-*")
	if err != nil {
		return rep, fmt.Errorf("power-cut injector: %w", err)
	}
	defer os.RemoveAll(fresh)
	linked := map[uint64]string{} // inode → a name in fresh
	var build func(dirIno uint64, src, dst string) error
	build = func(dirIno uint64, src, dst string) error {
		entries, ok := pc.dirs[dirIno]
		if !ok && src != "" {
			entries = listDir(src) // unchanged since its last fsync
		}
		for _, e := range entries {
			to := filepath.Join(dst, e.name)
			from := where[e.ino]
			if e.isDir {
				mode := os.FileMode(0o755)
				if info, err := os.Stat(from); err == nil && info.IsDir() {
					mode = info.Mode().Perm()
				} else {
					from = "" // removed since: only its durable entries come back
				}
				if err := os.Mkdir(to, mode); err != nil {
					return err
				}
				if err := build(e.ino, from, to); err != nil {
					return err
				}
				continue
			}
			if from == "" {
				return fmt.Errorf("power-cut injector: %s (inode %d) was durable but cannot be found", to, e.ino)
			}
			if err := os.Link(from, to); err != nil {
				return err
			}
			if linked[e.ino] == "" {
				linked[e.ino] = to
			}
		}
		return nil
	}
	if err := build(ino(pc.backing), pc.backing, fresh); err != nil {
		return rep, fmt.Errorf("power-cut injector: rebuilding the durable tree: %w", err)
	}

	for _, i := range slices.Sorted(maps.Keys(pc.files)) {
		p := linked[i]
		if p == "" {
			continue // its name did not survive: nothing of it did
		}
		lost, err := pc.rollBack(p, pc.files[i])
		if err != nil {
			return rep, fmt.Errorf("power-cut injector: rolling %s back: %w", p, err)
		}
		rep.FilesRolledBack++
		rep.BytesLost += lost
	}

	after := map[string]bool{}
	filepath.WalkDir(fresh, func(p string, d fs.DirEntry, err error) error {
		if err == nil && p != fresh {
			rel, _ := filepath.Rel(fresh, p)
			after[rel] = true
		}
		return nil
	})
	for _, p := range slices.Sorted(maps.Keys(before)) {
		if !after[p] {
			rep.NamesLost = append(rep.NamesLost, p)
		}
	}
	for _, p := range slices.Sorted(maps.Keys(after)) {
		if !before[p] {
			rep.NamesRestored = append(rep.NamesRestored, p)
		}
	}

	// Put the durable tree in place of the backing directory's contents.
	des, err := os.ReadDir(pc.backing)
	if err != nil {
		return rep, fmt.Errorf("power-cut injector: %w", err)
	}
	for _, de := range des {
		if err := os.RemoveAll(filepath.Join(pc.backing, de.Name())); err != nil {
			return rep, fmt.Errorf("power-cut injector: %w", err)
		}
	}
	des, err = os.ReadDir(fresh)
	if err != nil {
		return rep, fmt.Errorf("power-cut injector: %w", err)
	}
	for _, de := range des {
		if err := os.Rename(filepath.Join(fresh, de.Name()), filepath.Join(pc.backing, de.Name())); err != nil {
			return rep, fmt.Errorf("power-cut injector: %w", err)
		}
	}
	return rep, nil
}

// rollBack undoes, newest first, the writes and truncations of log on the
// file at p: all of them, or in torn mode all but a random prefix. It
// returns how many written bytes were lost.
func (pc *FS) rollBack(p string, log []undo) (lost int64, err error) {
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		if errors.Is(err, syscall.ELOOP) || errors.Is(err, os.ErrPermission) {
			return 0, nil // a symlink or an unwritable file: nothing we wrote
		}
		return 0, err
	}
	defer f.Close()
	keep, prefix := 0, int64(0)
	if pc.torn != nil {
		keep = pc.torn.IntN(len(log) + 1)
		if keep < len(log) && log[keep].written > 0 {
			prefix = pc.torn.Int64N(log[keep].written + 1)
		}
	}
	for i := len(log) - 1; i >= keep; i-- {
		u := log[i]
		kept := int64(0)
		if i == keep {
			kept = prefix
		}
		lost += u.written - kept
		if int64(len(u.old)) > kept {
			if _, err := f.WriteAt(u.old[kept:], u.off+kept); err != nil {
				return lost, err
			}
		}
		size := u.oldSize
		if kept > 0 {
			size = max(u.oldSize, u.off+kept)
		}
		if err := f.Truncate(size); err != nil {
			return lost, err
		}
	}
	return lost, nil
}
