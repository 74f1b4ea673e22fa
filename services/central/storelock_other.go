//go:build !unix

package central

// LockPath is the lock file of bets file path.
func LockPath(path string) string { return path + ".lock" }

// storeLock is a no-op where flock(2) does not exist.
type storeLock struct{}

func lockStore(string) (*storeLock, error) { return nil, nil }

func (l *storeLock) release() error { return nil }

// syncDir does nothing where a directory cannot be fsynced.
func syncDir(string) error { return nil }
