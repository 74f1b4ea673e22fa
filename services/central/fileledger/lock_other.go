//go:build !unix

package fileledger

// lockPath is the lock file of bets file path.
func lockPath(path string) string { return path + ".lock" }

// Lock is a no-op where flock(2) does not exist.
type Lock struct{}

func LockStore(string) (*Lock, error) { return nil, nil }

func (l *Lock) Release() error { return nil }

// syncDir does nothing where a directory cannot be fsynced.
func syncDir(string) error { return nil }
