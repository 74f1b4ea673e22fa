// Package peakrss reads a process's peak resident set size, the kernel's
// VmHWM, from /proc (Linux). The central and the agency log their own in
// their last line, so that a tool that started them needs no rusage: exec
// resets VmHWM, so the figure is the process's own whatever its parent's.
package peakrss

import (
	"bytes"
	"os"
	"strconv"
)

// Key is the field of a log line that carries the figure, in KiB.
const Key = "peak_rss_kib"

// Self is this process's peak RSS in KiB; ok is false where /proc does not
// give it (not Linux).
func Self() (kib int64, ok bool) { return read("/proc/self/status") }

// Of is process pid's peak RSS in KiB, while it runs; ok is false once it
// has exited or where /proc does not give it.
func Of(pid int) (kib int64, ok bool) { return read("/proc/" + strconv.Itoa(pid) + "/status") }

// Fields is Key and this process's figure, for the last line of its log;
// none where the figure is unknown.
func Fields() []any {
	if kib, ok := Self(); ok {
		return []any{Key, kib}
	}
	return nil
}

func read(path string) (int64, bool) {
	status, err := os.ReadFile(path)
	if err != nil {
		return 0, false
	}
	return parseVmHWM(status)
}

// parseVmHWM finds "VmHWM:     12088 kB" in a /proc/PID/status.
func parseVmHWM(status []byte) (int64, bool) {
	for line := range bytes.Lines(status) {
		rest, ok := bytes.CutPrefix(line, []byte("VmHWM:"))
		if !ok {
			continue
		}
		kib, err := strconv.ParseInt(string(bytes.TrimSpace(bytes.TrimSuffix(bytes.TrimSpace(rest), []byte("kB")))), 10, 64)
		return kib, err == nil
	}
	return 0, false
}
