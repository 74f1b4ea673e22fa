//go:build unix

package main

import (
	"fmt"
	"syscall"
)

// raiseOpenFiles raises the soft limit on open files to need if it is
// lower (the Go runtime raises its own at start-up, but not past the hard
// limit). Past the hard limit it fails: raising that needs privileges.
func raiseOpenFiles(need uint64) error {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return fmt.Errorf("reading RLIMIT_NOFILE: %w", err)
	}
	if lim.Max < need {
		return fmt.Errorf("the hard limit on open files is %d: raise it (ulimit -Hn)", lim.Max)
	}
	lim.Cur = max(lim.Cur, need)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return fmt.Errorf("setting RLIMIT_NOFILE to %d: %w", lim.Cur, err)
	}
	return nil
}
