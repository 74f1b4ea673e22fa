package natstest_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/quiniela/quiniela/internal/natstest"
)

// stopTB records how CatedraDir ended a test, without ending this one.
type stopTB struct {
	testing.TB
	how string
}

type stopped struct{}

func (s *stopTB) Fatalf(format string, args ...any) {
	s.how = "fatal: " + fmt.Sprintf(format, args...)
	panic(stopped{})
}
func (s *stopTB) Skipf(format string, args ...any) {
	s.how = "skip: " + fmt.Sprintf(format, args...)
	panic(stopped{})
}
func (s *stopTB) Helper() {}

func catedraDir(t *testing.T) (dir, how string) {
	tb := &stopTB{TB: t}
	defer func() {
		if r := recover(); r != nil && r != (stopped{}) {
			panic(r)
		}
		how = tb.how
	}()
	return natstest.CatedraDir(tb), ""
}

// QUINIELA_DATA_DIR points the data-set tests at any folder that holds the
// course's files, and fails them, saying why, at one that does not.
func TestCatedraDirFromTheVariable(t *testing.T) {
	shared := natstest.CatedraDir(t) // the course's files, to copy
	copied := t.TempDir()
	for i := 1; i <= 5; i++ {
		data, err := os.ReadFile(filepath.Join(shared, fmt.Sprintf("agency-%d.csv", i)))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(copied, fmt.Sprintf("agency-%d.csv", i)), data, 0o644)
	}
	t.Setenv(natstest.DataDirVar, copied)
	if dir, how := catedraDir(t); dir != copied {
		t.Errorf("with %s=%s: %q, %s", natstest.DataDirVar, copied, dir, how)
	}

	os.WriteFile(filepath.Join(copied, "agency-3.csv"), []byte("Juan,Perez,1,1990-01-01,7574\n"), 0o644)
	if _, how := catedraDir(t); !strings.HasPrefix(how, "fatal: ") || !strings.Contains(how, "agency-3.csv") {
		t.Errorf("with a synthetic agency-3.csv: %q, want a failure naming it", how)
	}

	t.Setenv(natstest.DataDirVar, t.TempDir())
	if _, how := catedraDir(t); !strings.Contains(how, "agency-1.csv") {
		t.Errorf("with an empty folder: %q, want a failure naming agency-1.csv", how)
	}
}
