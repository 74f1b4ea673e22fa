package e2e

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/quiniela/quiniela/internal/natstest"
	"github.com/quiniela/quiniela/services/agency"
)

// An agency file with bad rows: the agency sends every valid row, sends no
// invalid one, names each as file:line, and ends with SkippedRowsError
// (exit code 3) after the lottery finished for it.
func TestAgencySkipsInvalidRows(t *testing.T) {
	ns := natstest.StartServer(t)
	dir := t.TempDir()
	c := startCentral(t, ns.ClientURL(), dir, map[string]string{"CENTRAL_AGENCIES": "1"})
	good := syntheticRows(1, 40)
	content := "\xef\xbb\xbf" + strings.Join(good[:20], "\r\n") + "\r\n" +
		"Juan,Pérez,30123456,2023-02-30,7574\n" + // line 21: impossible date
		"\n" + // line 22: blank, skipped silently
		"Ana,\"Gómez,28999111,1985-12-01,1234\n" + // line 23: unbalanced quote
		strings.Join(good[20:], "\n") // mixed endings, no final newline
	file := filepath.Join(dir, "agency-1.csv")
	os.WriteFile(file, []byte(content), 0o644)

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r := runAgency(ctx, ns.ClientURL(), 1, file, nil)
	var skipped *agency.SkippedRowsError
	if !errors.As(r.err, &skipped) || skipped.Rows != 2 {
		t.Fatalf("agency.Run: %v, want 2 skipped rows", r.err)
	}
	for _, line := range []string{file + ":21: birthdate", file + ":23: "} {
		if !strings.Contains(r.log.String(), line) {
			t.Errorf("log does not name %q:\n%s", line, r.log)
		}
	}
	if got := r.log.Lines("resumen"); len(got) != 1 || got[0].Fields["skipped"] != "2" || got[0].Fields["bets"] != "40" {
		t.Errorf("resumen %+v, want 40 bets and 2 skipped", got)
	}
	c.stop(t)
	want := inputRows(t, []string{writeAgencyFile(t, t.TempDir(), 1, good)})
	compareRows(t, want, storedRows(t, c.betsFile))
}

// An empty file is a valid agency with no bets; a missing one is an error
// that names it.
func TestAgencyEmptyAndMissingFiles(t *testing.T) {
	ns := natstest.StartServer(t)
	dir := t.TempDir()
	c := startCentral(t, ns.ClientURL(), dir, map[string]string{"CENTRAL_AGENCIES": "1"})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	missing := runAgency(ctx, ns.ClientURL(), 1, filepath.Join(dir, "nope.csv"), nil)
	if missing.err == nil || !strings.Contains(missing.err.Error(), "nope.csv") ||
		len(missing.log.Lines("agencia")) != 1 || missing.log.Lines("agencia")[0].Result != "fail" {
		t.Errorf("missing file: %v; log:\n%s", missing.err, missing.log)
	}

	empty := filepath.Join(dir, "agency-1.csv")
	os.WriteFile(empty, nil, 0o644)
	r := runAgency(ctx, ns.ClientURL(), 1, empty, nil)
	checkNoError(t, []agencyResult{r})
	if got := r.log.Lines("consulta_ganadores"); len(got) != 1 || got[0].Fields["cant_ganadores"] != "0" {
		t.Errorf("empty file: %v", got)
	}
	c.stop(t)
	if n := c.log.Count("action: sorteo | result: success"); n != 1 {
		t.Errorf("sorteo logged %d times", n)
	}
}
