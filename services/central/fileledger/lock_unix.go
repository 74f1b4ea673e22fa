//go:build unix

package fileledger

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// lockPath is the lock file of bets file path: it holds the process ID of
// the central that has the store open.
func lockPath(path string) string { return path + ".lock" }

// Lock keeps a second central off a store that one already has open:
// two would split the agencies' batches between them (micro's queue group)
// and append to one file. It is an flock(2) on lockPath, so the kernel
// releases it when its holder dies, kill -9 included; the file's content
// only says who holds it.
type Lock struct{ f *os.File }

// LockStore takes the lock of the store at path, or says which process
// holds it.
func LockStore(path string) (*Lock, error) {
	f, err := os.OpenFile(lockPath(path), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("opening bets file lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		holder := make([]byte, 64)
		n, _ := f.ReadAt(holder, 0)
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			who := "another process"
			if pid, perr := strconv.Atoi(strings.TrimSpace(string(holder[:n]))); perr == nil {
				who = "process " + strconv.Itoa(pid)
			}
			return nil, fmt.Errorf("bets file %s is in use by %s (lock %s): stop that central, or give this one another CENTRAL_BETS_FILE", path, who, lockPath(path))
		}
		return nil, fmt.Errorf("locking %s: %w", lockPath(path), err)
	}
	// Who holds it, for the next central's error; the lock is what counts.
	if err := f.Truncate(0); err == nil {
		f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return &Lock{f: f}, nil
}

// Release unlocks the store; the lock file stays, harmless.
func (l *Lock) Release() error {
	if l == nil {
		return nil
	}
	return l.f.Close() // closing the only descriptor releases the flock
}

// syncDir fsyncs the directory dir, which makes the names created, renamed
// or removed in it durable: POSIX promises a new file's name survives a
// power cut only then, whatever fsync did to the file's data.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
