package natstest

import (
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
)

// DataDirVar names a folder holding the course's data set
// (agency-{1..5}.csv), for the tests that run it.
const DataDirVar = "QUINIELA_DATA_DIR"

// catedraSums are the SHA-256 sums of the course's files: a folder is used
// only if it holds exactly them (.data/ usually holds synthetic files,
// whose winners differ).
var catedraSums = [...]string{
	"6ab3e3a51e96a71ba5be94f93b2e5cd9b9c484e6df2e964c91a100dea3b660e0",
	"b8dc9d6f551f60dcbb6cd8d50135f82031532527249bc02c068ef7a4f7102bfa",
	"f56e6d7f166124b184a503469e6b84ead51e2e44d4b03bca97a0ed744c283e78",
	"ab0736590f91da25608053a39073a063f2ee23f4d3cbcf74fce0b40ac53b8f08",
	"603c2956a1d1ac8a621394ac6ff68a8f04a801f390fadbe62f36d940d7b61ce7",
}

// isCatedra reports why dir does not hold the course's data set, or nil
// (3.6 MB hashed: milliseconds).
func isCatedra(dir string) error {
	for i, want := range catedraSums {
		name := filepath.Join(dir, fmt.Sprintf("agency-%d.csv", i+1))
		data, err := os.ReadFile(name)
		if err != nil {
			return err
		}
		if got := fmt.Sprintf("%x", sha256.Sum256(data)); got != want {
			return fmt.Errorf("%s is not the course's file (SHA-256 %s…)", name, got[:12])
		}
	}
	return nil
}

// CatedraDir is the course's official data set: the folder named by
// QUINIELA_DATA_DIR (which must hold it), else ../shared/datasets/catedra
// beside the repository, else the repository's .data/ if it holds the
// course's files. A user's fresh clone has none: the test is skipped,
// saying where it looked.
func CatedraDir(t testing.TB) string {
	t.Helper()
	if dir := os.Getenv(DataDirVar); dir != "" {
		if err := isCatedra(dir); err != nil {
			t.Fatalf("%s=%s does not hold the course's data set agency-{1..5}.csv: %v", DataDirVar, dir, err)
		}
		return dir
	}
	_, file, _, _ := runtime.Caller(0)
	repo := filepath.Join(filepath.Dir(file), "..", "..")
	shared := filepath.Join(repo, "..", "shared", "datasets", "catedra")
	dotData := filepath.Join(repo, ".data")
	var why []string
	for _, dir := range []string{shared, dotData} {
		err := isCatedra(dir)
		if err == nil {
			return dir
		}
		why = append(why, err.Error())
	}
	t.Skipf("SKIP: the course's data set is not here (%s): set %s to its folder, or copy its agency-*.csv into .data/ (a fresh clone has none)",
		strings.Join(why, "; "), DataDirVar)
	return ""
}

// CompareRows fails the test unless got holds exactly the rows of want,
// as multisets; both are sorted. It names the first missing and the first
// extra row.
func CompareRows(t testing.TB, want, got []string) bool {
	t.Helper()
	if slices.Equal(want, got) {
		return true
	}
	missing, extra := minus(want, got), minus(got, want)
	t.Errorf("stored rows differ from input: %d input, %d stored; %d missing (first: %q), %d extra (first: %q)",
		len(want), len(got), len(missing), first(missing), len(extra), first(extra))
	return false
}

// minus is the multiset a minus b, both sorted.
func minus(a, b []string) []string {
	var out []string
	i, j := 0, 0
	for i < len(a) {
		switch {
		case j < len(b) && a[i] == b[j]:
			i++
			j++
		case j < len(b) && b[j] < a[i]:
			j++
		default:
			out = append(out, a[i])
			i++
		}
	}
	return out
}

func first(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[0]
}
