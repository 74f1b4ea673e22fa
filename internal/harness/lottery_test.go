package harness

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func touch(t *testing.T, dir string, names ...string) {
	t.Helper()
	for _, n := range names {
		if err := os.WriteFile(filepath.Join(dir, n), []byte("x\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestFindAgencyFilesSortsByNumber(t *testing.T) {
	dir := t.TempDir()
	touch(t, dir, "agency-10.csv", "agency-2.csv", "agency-1.csv", "notes.txt", "agency-01.csv", "agency-x.csv", "agency-0.csv")
	for i := 3; i <= 9; i++ {
		touch(t, dir, AgencyName(i)+".csv")
	}
	if err := os.Mkdir(filepath.Join(dir, "agency-11.csv"), 0o755); err != nil {
		t.Fatal(err)
	}
	files, err := FindAgencyFiles(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 10 {
		t.Fatalf("%d files, want 10: %v", len(files), files)
	}
	for i, f := range files {
		if f.ID != i+1 || filepath.Base(f.Path) != AgencyName(i+1)+".csv" {
			t.Errorf("files[%d] = %+v", i, f)
		}
	}
}

func TestFindAgencyFilesReportsGaps(t *testing.T) {
	for _, tc := range []struct {
		name  string
		files []string
		want  string
	}{
		{"two gaps", []string{"agency-1.csv", "agency-3.csv", "agency-5.csv"},
			"numbered 1..5 without gaps: missing agency-2.csv, agency-4.csv"},
		{"no agency 1", []string{"agency-2.csv"}, "numbered 1..2 without gaps: missing agency-1.csv"},
		{"huge gap", []string{"agency-1.csv", "agency-100.csv"},
			"missing agency-2.csv, agency-3.csv, agency-4.csv, agency-5.csv, agency-6.csv, agency-7.csv, agency-8.csv, agency-9.csv, agency-10.csv, agency-11.csv and 88 more"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			touch(t, dir, tc.files...)
			_, err := FindAgencyFiles(dir)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one saying %q", err, tc.want)
			}
		})
	}
}

func TestFindAgencyFilesNone(t *testing.T) {
	empty := t.TempDir()
	touch(t, empty, "bets.csv")
	for _, dir := range []string{empty, filepath.Join(empty, "missing")} {
		_, err := FindAgencyFiles(dir)
		if !errors.Is(err, errNoAgencyFiles) || !strings.Contains(err.Error(), "make data") {
			t.Errorf("%s: err = %v, want errNoAgencyFiles with a hint to run make data", dir, err)
		}
	}
}

func TestCountBetsSkipsBlankLines(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) AgencyFile {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return AgencyFile{Path: path}
	}
	long := strings.Repeat("y", 300<<10) // longer than the reader's buffer
	files := []AgencyFile{
		write("a", "a\r\nb\r\n\r\n\nc"),   // 3: CRLF, blank CRLF, blank LF, last line unterminated
		write("b", ""),                    // 0
		write("c", "\n\n"),                // 0
		write("d", long+"\n"+long+"\n\n"), // 2
		write("e", long),                  // 1
	}
	n, err := CountBets(files)
	if err != nil || n != 6 {
		t.Fatalf("CountBets = %d, %v; want 6", n, err)
	}
	rows, err := CountRows(files[0].Path)
	if err != nil || rows != 5 {
		t.Fatalf("CountRows = %d, %v; want 5 (blank lines count in the bets file)", rows, err)
	}
	if _, err := CountRows(filepath.Join(dir, "nope")); err == nil {
		t.Fatal("CountRows of a missing file: no error")
	}
}

func TestAgencyLog(t *testing.T) {
	var a AgencyLog
	if _, err := a.Resumen(); err == nil {
		t.Fatal("resumen before any line")
	}
	a.Observe("2026-11-24T08:09:59.100Z ERROR action: enviar_apuestas | result: fail | error: boom")
	a.Observe("not an operation line")
	a.Observe("2026-11-24T08:09:59.271Z INFO action: resumen | result: success | agency: 1 | bets: 26936 | batches: 229 | skipped: 0 | resent: 4 | winners: 2 | rtt_p50_ms: 2.11 | rtt_p99_ms: 5.04 | seconds: 0.156")
	r, err := a.Resumen()
	want := Resumen{Agency: 1, Bets: 26936, Batches: 229, Resent: 4, Winners: 2, RTTP50ms: 2.11, RTTP99ms: 5.04, Seconds: 0.156}
	if err != nil || r != want {
		t.Fatalf("Resumen = %+v, %v; want %+v", r, err, want)
	}
	if got := a.LastError(); got != "enviar_apuestas: boom" {
		t.Fatalf("LastError = %q", got)
	}

	var bad AgencyLog
	bad.Observe("INFO action: resumen | result: success | agency: 1 | bets: many")
	if _, err := bad.Resumen(); err == nil || !strings.Contains(err.Error(), "bets") {
		t.Fatalf("a malformed resumen: err = %v, want one naming the bad field", err)
	}

	// The peak RSS is there on Linux only; when there, it must parse.
	var peak AgencyLog
	peak.Observe("INFO action: resumen | result: success | agency: 2 | bets: 1 | batches: 1 | skipped: 0 | resent: 0 | winners: 0 | rtt_p50_ms: 1 | rtt_p99_ms: 1 | seconds: 1 | peak_rss_kib: 12088")
	if r, err := peak.Resumen(); err != nil || r.PeakRSSKiB != 12088 {
		t.Fatalf("Resumen with a peak = %+v, %v; want PeakRSSKiB 12088", r, err)
	}
	var badPeak AgencyLog
	badPeak.Observe("INFO action: resumen | result: success | agency: 2 | bets: 1 | batches: 1 | skipped: 0 | resent: 0 | winners: 0 | rtt_p50_ms: 1 | rtt_p99_ms: 1 | seconds: 1 | peak_rss_kib: lots")
	if _, err := badPeak.Resumen(); err == nil || !strings.Contains(err.Error(), "peak_rss_kib") {
		t.Fatalf("a malformed peak: err = %v, want one naming it", err)
	}
}

func TestCentralLog(t *testing.T) {
	c := newCentralLog()
	select {
	case <-c.ready:
		t.Fatal("ready before central_lista")
	default:
	}
	c.Observe("2026-11-24T08:09:59.271Z INFO action: central_lista | result: success | nats: nats://127.0.0.1:41234 | agencies: 5 | service: quiniela-central")
	c.Observe("2026-11-24T08:09:59.271Z INFO action: central_lista | result: success | nats: nats://other:1 | agencies: 5")
	select {
	case <-c.ready:
	default:
		t.Fatal("not ready after central_lista")
	}
	if c.readyURL() != "nats://127.0.0.1:41234" {
		t.Errorf("URL = %q, want the first central_lista's", c.readyURL())
	}
	if _, ok := c.Fsyncs(); ok {
		t.Error("fsyncs before cerrar_apuestas")
	}
	if _, ok := c.PeakRSSKiB(); ok {
		t.Error("peak RSS before cerrar_apuestas")
	}
	c.Observe("INFO action: sorteo | result: success")
	c.Observe("INFO action: sorteo_detalle | result: success | apuestas: 3")
	c.Observe("ERROR action: sorteo | result: fail | error: disk")
	c.Observe("INFO action: cerrar_apuestas | result: success | file: bets.csv | fsyncs: 67 | peak_rss_kib: 16800")
	if c.Sorteos() != 1 {
		t.Errorf("Sorteos = %d, want 1", c.Sorteos())
	}
	if n, ok := c.Fsyncs(); !ok || n != 67 {
		t.Errorf("Fsyncs = %d, %v; want 67", n, ok)
	}
	if kib, ok := c.PeakRSSKiB(); !ok || kib != 16800 {
		t.Errorf("PeakRSSKiB = %d, %v; want 16800", kib, ok)
	}
	if c.LastError() != "sorteo: disk" {
		t.Errorf("LastError = %q", c.LastError())
	}
	if c.StepDowns() != 0 {
		t.Errorf("StepDowns = %d before any central_activa fail", c.StepDowns())
	}
	c.Observe("INFO action: central_activa | result: success | name: c1")
	c.Observe("ERROR action: central_activa | result: fail | name: c1 | error: stepping down: lease lost")
	c.Observe("ERROR action: renovar_lease | result: fail | error: lease expired before a renewal succeeded")
	if c.StepDowns() != 1 {
		t.Errorf("StepDowns = %d, want 1", c.StepDowns())
	}
}

func TestCheckBinaries(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "central"), nil, 0o755); err != nil {
		t.Fatal(err)
	}
	touch(t, dir, "agency") // not executable
	if err := CheckBinaries(dir, "build them", "central"); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"agency", "nats-server"} {
		if err := CheckBinaries(dir, "build them", name); err == nil || !strings.Contains(err.Error(), "build them") {
			t.Errorf("%s: err = %v, want one with the hint", name, err)
		}
	}
}

func TestCentralLogDrawTime(t *testing.T) {
	c := newCentralLog()
	if _, ok := c.DrawTime(); ok {
		t.Fatal("DrawTime before any line: ok")
	}
	for _, l := range []string{
		"2026-11-24T08:54:48.000Z INFO action: agencia_terminada | result: success | agency: 2 | batches: 9 | bets: 1000 | done: 1/3",
		"2026-11-24T08:54:49.100Z INFO action: agencia_terminada | result: success | agency: 1 | batches: 9 | bets: 1000 | done: 2/3",
		"2026-11-24T08:54:49.300Z ERROR action: agencia_terminada | result: fail | agency: 3 | error: boom",
		// Two agencies done together both read 3/3: the draw started before
		// the first of them logged.
		"2026-11-24T08:54:49.627Z INFO action: agencia_terminada | result: success | agency: 3 | batches: 9 | bets: 1000 | done: 3/3",
		"2026-11-24T08:54:49.700Z INFO action: agencia_terminada | result: success | agency: 4 | batches: 9 | bets: 1000 | done: 3/3",
	} {
		c.Observe(l)
	}
	if _, ok := c.DrawTime(); ok {
		t.Fatal("DrawTime before the sorteo line: ok")
	}
	c.Observe("2026-11-24T08:54:51.040Z INFO action: sorteo | result: success")
	c.Observe("2026-11-24T08:54:59.000Z INFO action: sorteo | result: success") // a second draw is reported by Sorteos
	if d, ok := c.DrawTime(); !ok || d != 1413*time.Millisecond {
		t.Fatalf("DrawTime = %v, %v; want 1.413s", d, ok)
	}
}

func TestCentralLogDrawTimeEdges(t *testing.T) {
	for _, tc := range []struct {
		name   string
		lines  []string
		want   time.Duration
		wantOK bool
	}{
		{"sorteo logged first", []string{ // a draw over few bets can beat the log line
			"2026-11-24T08:54:49.627Z INFO action: sorteo | result: success",
			"2026-11-24T08:54:49.628Z INFO action: agencia_terminada | result: success | agency: 1 | done: 1/1",
		}, 0, true},
		{"no timestamps", []string{
			"INFO action: agencia_terminada | result: success | agency: 1 | done: 1/1",
			"INFO action: sorteo | result: success",
		}, 0, false},
		{"bad done", []string{
			"2026-11-24T08:54:49.000Z INFO action: agencia_terminada | result: success | agency: 1 | done: all",
			"2026-11-24T08:54:49.500Z INFO action: sorteo | result: success",
		}, 0, false},
		{"draw failed", []string{
			"2026-11-24T08:54:49.000Z INFO action: agencia_terminada | result: success | agency: 1 | done: 1/1",
			"2026-11-24T08:54:49.500Z ERROR action: sorteo | result: fail | error: disk",
		}, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCentralLog()
			for _, l := range tc.lines {
				c.Observe(l)
			}
			if d, ok := c.DrawTime(); d != tc.want || ok != tc.wantOK {
				t.Fatalf("DrawTime = %v, %v; want %v, %v", d, ok, tc.want, tc.wantOK)
			}
		})
	}
}
