//go:build !unix

package procs

// maxRSS: no peak RSS figure here (Windows' Rusage holds times only).
func maxRSS(any) (int64, bool) { return 0, false }
