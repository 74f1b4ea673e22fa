// Package profile writes a CPU profile of a whole process run when
// QUINIELA_CPUPROFILE names a file, so that `make bench` can show where a
// real run spends its time (`go tool pprof bin/central FILE`), not only
// what micro-benchmarks see.
package profile

import (
	"fmt"
	"os"
	"runtime/pprof"
	"strings"
)

// Env is the variable that names the profile file; "%p" in it becomes the
// process ID, so that several processes of one run write their own.
const Env = "QUINIELA_CPUPROFILE"

// Start starts the profile if getenv(Env) names a file, and returns the
// function that writes it out (call it before the process exits).
func Start(getenv func(string) string) (stop func(), err error) {
	path := getenv(Env)
	if path == "" {
		return func() {}, nil
	}
	path = strings.ReplaceAll(path, "%p", fmt.Sprint(os.Getpid()))
	f, err := os.Create(path)
	if err != nil {
		return func() {}, fmt.Errorf("%s: %w", Env, err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return func() {}, fmt.Errorf("%s: %w", Env, err)
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}
