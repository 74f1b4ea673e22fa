package main

import (
	"fmt"
	"syscall"
	"time"
	"unsafe"
)

// cpuSoFar is the CPU (user + system) that process pid has used so far, all
// its threads, read from its CPU-time clock (clock_getcpuclockid(3): the
// kernel's sum of run time, in nanoseconds, unlike /proc's 10 ms ticks).
func cpuSoFar(pid int) (time.Duration, error) {
	const cpuClockSched = 2                         // CPUCLOCK_SCHED: run time
	clock := int32(^uint32(pid)<<3 | cpuClockSched) // MAKE_PROCESS_CPUCLOCK(pid, CPUCLOCK_SCHED)
	var ts syscall.Timespec
	if _, _, errno := syscall.Syscall(syscall.SYS_CLOCK_GETTIME, uintptr(clock), uintptr(unsafe.Pointer(&ts)), 0); errno != 0 {
		return 0, fmt.Errorf("reading the CPU clock of process %d: %w", pid, errno)
	}
	return time.Duration(ts.Nano()), nil
}
