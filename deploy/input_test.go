package deploy_test

import (
	"encoding/csv"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/quiniela/quiniela/internal/natstest"
	"github.com/quiniela/quiniela/services/central/lottery"
)

// The input, the agencies' files, and what the stores must hold after it.

// input is what the agencies' files must produce.
type input struct {
	rows    []string         // "agency|first|last|document|birthdate|number", sorted
	winners map[int][]string // agency → documents on the winning number, sorted
	lines   map[string]int   // a file's row as sent, "first,last,…" → its agency
}

func readInput(t *testing.T, dir string) input {
	t.Helper()
	in := input{winners: map[int][]string{}, lines: map[string]int{}}
	for i := 1; i <= agencies; i++ {
		recs := readCSV(t, filepath.Join(dir, fmt.Sprintf("agency-%d.csv", i)), 5)
		in.winners[i] = []string{}
		for _, r := range recs {
			in.rows = append(in.rows, strconv.Itoa(i)+"|"+strings.Join(r, "|"))
			in.lines[strings.Join(r, ",")] = i
			if n, err := strconv.Atoi(r[4]); err == nil && n == lottery.WinningNumber {
				in.winners[i] = append(in.winners[i], r[2])
			}
		}
		slices.Sort(in.winners[i])
	}
	slices.Sort(in.rows)
	return in
}

func readCSV(t *testing.T, path string, fields int) [][]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	return parseCSV(t, f, path, fields)
}

func parseCSV(t *testing.T, r io.Reader, name string, fields int) [][]string {
	t.Helper()
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = fields
	recs, err := cr.ReadAll()
	if err != nil {
		t.Fatalf("reading %s: %v", name, err)
	}
	return recs
}

// resentBatches adds up the batches the agencies resent (their resumen lines).
func (s *stack) resentBatches(t *testing.T, agencies int) int {
	t.Helper()
	resent := 0
	for i := 1; i <= agencies; i++ {
		for _, l := range linesOf(s.logs(t, fmt.Sprintf("agency%d", i)), "resumen") {
			n, _ := strconv.Atoi(l.Fields["resent"])
			resent += n
		}
	}
	return resent
}

// compareRows fails the test unless stored holds exactly the input rows,
// each once.
func compareRows(t *testing.T, want, stored []string) {
	t.Helper()
	if natstest.CompareRows(t, want, stored) {
		t.Logf("bets.csv holds the %d bets, each once", len(stored))
	}
}
