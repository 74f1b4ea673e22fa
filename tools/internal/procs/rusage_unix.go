//go:build unix

package procs

import (
	"runtime"
	"syscall"
)

// maxRSS reads the peak RSS, in bytes, out of what os.ProcessState.SysUsage
// returns (an any, a *syscall.Rusage on Unix). Apart from the method so a
// test can hand it a fake.
func maxRSS(sysUsage any) (bytes int64, ok bool) {
	ru, ok := sysUsage.(*syscall.Rusage)
	if !ok || ru == nil {
		return 0, false
	}
	// getrusage(2): ru_maxrss is in KiB on Linux and the BSDs, in bytes on
	// macOS.
	unit := int64(1024)
	if runtime.GOOS == "darwin" {
		unit = 1
	}
	return int64(ru.Maxrss) * unit, true
}
