package peakrss

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

// The test binary doubles as a child that peaks at 32 MiB more than it
// starts with and prints its own figure.
func TestMain(m *testing.M) {
	if os.Getenv("PEAKRSS_HELPER") != "" {
		ballast := make([]byte, 32<<20)
		for i := range ballast {
			ballast[i] = 1
		}
		kib, ok := Self()
		fmt.Println(kib, ok, len(ballast))
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestParseVmHWM(t *testing.T) {
	status := []byte("Name:\tbench\nVmPeak:\t  900000 kB\nVmHWM:\t   12088 kB\nVmRSS:\t   11000 kB\n")
	if kib, ok := parseVmHWM(status); !ok || kib != 12088 {
		t.Errorf("parseVmHWM = %d, %v; want 12088", kib, ok)
	}
	for _, bad := range []string{"", "VmRSS:\t1 kB\n", "VmHWM:\tlots\n"} {
		if kib, ok := parseVmHWM([]byte(bad)); ok {
			t.Errorf("parseVmHWM(%q) = %d, ok", bad, kib)
		}
	}
}

// A child's figure is its own, not its parent's: exec resets VmHWM (the
// kernel's ru_maxrss does not, which is why the figure is read this way).
func TestPeakIsTheProcessOwn(t *testing.T) {
	if runtime.GOOS != "linux" {
		if _, ok := Self(); ok || Fields() != nil {
			t.Fatalf("a figure outside Linux")
		}
		t.Skip("SKIP: VmHWM is Linux's")
	}
	ballast := make([]byte, 128<<20)
	for i := range ballast {
		ballast[i] = 1
	}
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "PEAKRSS_HELPER=1")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("child: %v", err)
	}
	f := strings.Fields(string(out))
	child, _ := strconv.ParseInt(f[0], 10, 64)
	if len(f) != 3 || f[1] != "true" || child < 32<<10 || child >= 128<<10 {
		t.Errorf("child says %q; want its own peak, between its 32 MiB and our 128 MiB", out)
	}
	if own, ok := Of(os.Getpid()); !ok || own < 128<<10 {
		t.Errorf("Of(our pid) = %d KiB, %v; want our 128 MiB at least", own, ok)
	}
	if f := Fields(); len(f) != 2 || f[0] != Key {
		t.Errorf("Fields = %v", f)
	}
	runtime.KeepAlive(ballast)
}
