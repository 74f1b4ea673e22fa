package e2e

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/quiniela/quiniela/internal/natstest"
	"github.com/quiniela/quiniela/messages"
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

// fixedRowFiles writes an agency file of 40 good rows with a bad row at
// line 12 and a blank line 20, and the same file with line 12 fixed (a
// winning bet of document 30123456), and returns their paths and the rows
// the fixed file holds.
func fixedRowFiles(t *testing.T, dir string) (bad, fixed string, rows []string) {
	t.Helper()
	good := syntheticRows(1, 40)
	file := func(name, row12 string) string {
		lines := slices.Concat(good[:11], []string{row12}, good[11:18], []string{""}, good[18:])
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	const fixedRow = "Juan,Pérez,30123456,2003-02-28,7574"
	return file("agency-1-bad.csv", "Juan,Pérez,30123456,2003-02-29,7574"), // no 29 February in 2003
		file("agency-1.csv", fixedRow), slices.Concat(good, []string{fixedRow})
}

// Issue 19 (3): a row skipped as invalid and fixed enters the lottery when
// the agency runs again before the draw: the fixed bet is stored once,
// nothing else twice, and each run says what it did. The batches are small
// (7 bets) so that the fixed row moves every batch after it: they are
// taken row by row, not as repeats of stored batches.
func TestFixedRowEntersBeforeTheDraw(t *testing.T) {
	ns := natstest.StartServer(t)
	dir := t.TempDir()
	c := startCentral(t, ns.ClientURL(), dir, map[string]string{"CENTRAL_AGENCIES": "2"})
	bad, fixed, rows := fixedRowFiles(t, dir)
	env := map[string]string{"BATCH_MAX_AMOUNT": "7"}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	// The first run skips line 12, says so while it waits for the draw
	// (agency 2 has not run), and is done.
	first := make(chan agencyResult, 1)
	go func() { first <- runAgency(ctx, ns.ClientURL(), 1, bad, env) }()
	c.log.WaitFor(t, "agencia_terminada", "success", 1, time.Minute)
	// The operator fixes line 12 and runs the agency again.
	second := make(chan agencyResult, 1)
	go func() { second <- runAgency(ctx, ns.ClientURL(), 1, fixed, env) }()
	c.log.WaitFor(t, "apuesta_repetida", "success", 6, time.Minute) // the second run's batches reach the central
	// Then agency 2 runs, and the draw with it.
	other := runAgency(ctx, ns.ClientURL(), 2, writeAgencyFile(t, dir, 2, syntheticRows(2, 10)), nil)
	checkNoError(t, []agencyResult{other})
	r1, r2 := <-first, <-second

	var skipped *agency.SkippedRowsError
	if !errors.As(r1.err, &skipped) || skipped.Rows != 1 || skipped.Lines.String() != "12" || len(skipped.Closed) != 0 {
		t.Fatalf("first run: %v, want 1 invalid row at line 12; log:\n%s", r1.err, r1.log)
	}
	if warn := r1.log.Lines("filas_invalidas"); len(warn) != 1 || warn[0].Fields["lines"] != "12" || !strings.Contains(warn[0].Fields["detail"], "run this agency again") {
		t.Errorf("first run's warning %+v, want lines 12 and what to do", warn)
	}
	checkNoError(t, []agencyResult{r2})
	if got := r2.log.Lines("enviar_apuestas"); len(got) == 0 || got[len(got)-1].Fields["bets"] != "41" || got[len(got)-1].Fields["added"] != "1" {
		t.Errorf("second run's enviar_apuestas %+v, want 41 bets, 1 added", got)
	}
	if got := r2.log.Lines("apuestas_ya_guardadas"); len(got) != 1 || got[0].Fields["bets"] != "40" {
		t.Errorf("second run's apuestas_ya_guardadas %+v, want 40 bets", got)
	}
	if got := r2.log.Lines("consulta_ganadores"); len(got) != 1 {
		t.Errorf("second run's winners: %+v", got)
	}
	c.stop(t)
	want := inputRows(t, []string{writeAgencyFile(t, t.TempDir(), 1, rows), writeAgencyFile(t, t.TempDir(), 2, syntheticRows(2, 10))})
	compareRows(t, want, storedRows(t, c.betsFile))
	winners, _ := strconv.Atoi(r2.log.Lines("consulta_ganadores")[0].Fields["cant_ganadores"])
	if want := len(winningDocs(t, writeAgencyFile(t, t.TempDir(), 1, rows))); winners != want {
		t.Errorf("agency 1 has %d winners, want %d (the fixed row among them)", winners, want)
	}
}

// After the draw a fixed row cannot enter: the agency run again says which
// lines and why, the rest is acknowledged as stored, nothing is stored.
func TestFixedRowAfterTheDrawIsRefusedPlainly(t *testing.T) {
	ns := natstest.StartServer(t)
	dir := t.TempDir()
	c := startCentral(t, ns.ClientURL(), dir, map[string]string{"CENTRAL_AGENCIES": "1"})
	bad, fixed, rows := fixedRowFiles(t, dir)
	env := map[string]string{"BATCH_MAX_AMOUNT": "7"}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	r1 := runAgency(ctx, ns.ClientURL(), 1, bad, env) // the only agency: the draw follows its done
	var skipped *agency.SkippedRowsError
	if !errors.As(r1.err, &skipped) || skipped.Lines.String() != "12" || !strings.Contains(r1.err.Error(), "the draw has run") {
		t.Fatalf("first run: %v, want line 12 skipped and the draw run", r1.err)
	}
	r2 := runAgency(ctx, ns.ClientURL(), 1, fixed, env)
	if !errors.As(r2.err, &skipped) || skipped.Rows != 0 || skipped.Closed.String() != "12" {
		t.Fatalf("run after the draw: %v, want line 12 refused; log:\n%s", r2.err, r2.log)
	}
	if msg := r2.err.Error(); !strings.Contains(msg, "lines 12 are not in the lottery") || !strings.Contains(msg, "the draw had run") {
		t.Errorf("run after the draw says %q: want the line and why", msg)
	}
	if got := r2.log.Lines("enviar_apuestas"); len(got) == 0 || got[len(got)-1].Fields["bets"] != "40" || got[len(got)-1].Fields["added"] != "0" {
		t.Errorf("run after the draw: enviar_apuestas %+v, want 40 bets stored before, 0 added", got)
	}
	c.stop(t)
	want := inputRows(t, []string{writeAgencyFile(t, t.TempDir(), 1, rows[:40])})
	compareRows(t, want, storedRows(t, c.betsFile))
	if n := c.log.Count("action: sorteo | result: success"); n != 1 {
		t.Errorf("sorteo logged %d times", n)
	}
}

// A row changed at a line the central has stored is refused, naming the
// line, and nothing of its batch is stored.
func TestChangedStoredLineIsRefused(t *testing.T) {
	ns := natstest.StartServer(t)
	dir := t.TempDir()
	c := startCentral(t, ns.ClientURL(), dir, map[string]string{"CENTRAL_AGENCIES": "1"})
	rows := syntheticRows(1, 30)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	checkNoError(t, []agencyResult{runAgency(ctx, ns.ClientURL(), 1, writeAgencyFile(t, dir, 1, rows), nil)})
	changed := slices.Clone(rows)
	changed[4] = strings.Replace(changed[4], "Nombre 4", "Nombre cuatro", 1)
	r := runAgency(ctx, ns.ClientURL(), 1, writeAgencyFile(t, t.TempDir(), 1, changed), nil)
	if messages.CodeOf(r.err) != messages.CodeBatchMismatch || !strings.Contains(r.err.Error(), "line 5 differs from the bet stored for that line") {
		t.Fatalf("run with line 5 changed: %v, want 412 naming line 5", r.err)
	}
	c.stop(t)
	compareRows(t, inputRows(t, []string{writeAgencyFile(t, t.TempDir(), 1, rows)}), storedRows(t, c.betsFile))
}

// AGENCY_INVALID_ROWS=wait: an agency that skipped rows does not say done,
// so the draw waits until a run brings them fixed; then it runs with them.
func TestInvalidRowsWaitHoldsTheDraw(t *testing.T) {
	ns := natstest.StartServer(t)
	dir := t.TempDir()
	c := startCentral(t, ns.ClientURL(), dir, map[string]string{"CENTRAL_AGENCIES": "1", "CENTRAL_WINNERS_HOLD": "20ms"})
	bad, fixed, rows := fixedRowFiles(t, dir)
	env := map[string]string{"AGENCY_INVALID_ROWS": "wait"}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	r1 := runAgency(ctx, ns.ClientURL(), 1, bad, env)
	var skipped *agency.SkippedRowsError
	if !errors.As(r1.err, &skipped) || !skipped.Waiting || skipped.Lines.String() != "12" || !strings.Contains(r1.err.Error(), "the draw waits for it") {
		t.Fatalf("first run: %v, want line 12 skipped and the draw waiting; log:\n%s", r1.err, r1.log)
	}
	if n := len(r1.log.Lines("notificar_fin")); n != 0 {
		t.Errorf("the first run said done (%d notificar_fin lines)", n)
	}
	// The only agency is not done: no draw.
	if _, err := askWinners(t, natstest.Connect(t, ns), 1); messages.CodeOf(err) != messages.CodeDrawPending {
		t.Fatalf("winners after the first run: %v, want draw pending", err)
	}
	r2 := runAgency(ctx, ns.ClientURL(), 1, fixed, env)
	checkNoError(t, []agencyResult{r2})
	c.stop(t)
	compareRows(t, inputRows(t, []string{writeAgencyFile(t, t.TempDir(), 1, rows)}), storedRows(t, c.betsFile))
	if got := r2.log.Lines("consulta_ganadores"); len(got) != 1 || got[0].Fields["cant_ganadores"] != strconv.Itoa(len(winningDocs(t, writeAgencyFile(t, t.TempDir(), 1, rows)))) {
		t.Errorf("winners of the fixed run %+v, want the fixed row's among them", got)
	}
}
