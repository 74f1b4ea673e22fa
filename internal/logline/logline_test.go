package logline_test

import (
	"bytes"
	"context"
	"log/slog"
	"regexp"
	"strings"
	"testing"

	"github.com/quiniela/quiniela/internal/logline"
)

func TestLinesRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	log, err := logline.New(&buf, "info")
	if err != nil {
		t.Fatal(err)
	}
	log.Info("apuesta_recibida", "cantidad", 94)
	log.Error("apuesta_recibida", "cantidad", 3)
	log.Debug("lote_confirmado", "batch", 1) // below INFO: not written
	log.Info("sorteo")
	log.Info("reintentar", "result", logline.InProgress, "attempt", 2)              // an explicit result wins
	log.With("agency", 3).Warn("responder", "error", "x")                           // WARN: fail
	log.Log(context.Background(), slog.LevelError, "drenar_nats", "result", "fail") // result given once

	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	want := []string{
		`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z INFO action: apuesta_recibida \| result: success \| cantidad: 94$`,
		`^\S+ ERROR action: apuesta_recibida \| result: fail \| cantidad: 3$`,
		`^\S+ INFO action: sorteo \| result: success$`,
		`^\S+ INFO action: reintentar \| result: in_progress \| attempt: 2$`,
		`^\S+ WARN action: responder \| result: fail \| agency: 3 \| error: x$`,
		`^\S+ ERROR action: drenar_nats \| result: fail$`,
	}
	if len(lines) != len(want) {
		t.Fatalf("logged %d lines, want %d:\n%s", len(lines), len(want), buf.String())
	}
	for i, re := range want {
		if !regexp.MustCompile(re).MatchString(lines[i]) {
			t.Errorf("line %q does not match %s", lines[i], re)
		}
	}
	line, ok := logline.Parse(lines[0])
	if !ok || line.Action != "apuesta_recibida" || line.Result != "success" || line.Fields["cantidad"] != "94" || len(line.Keys) != 1 {
		t.Errorf("Parse = %+v, %v", line, ok)
	}
}

func TestParseRejects(t *testing.T) {
	for _, text := range []string{"", "hello", "action: x", "action: x | cantidad: 3", "result: success | action: x", "action: x | result: success | broken"} {
		if line, ok := logline.Parse(text); ok {
			t.Errorf("Parse(%q) = %+v, want no operation line", text, line)
		}
	}
}

func TestNewRejectsUnknownLevel(t *testing.T) {
	if _, err := logline.New(&bytes.Buffer{}, "LOUD"); err == nil || !strings.Contains(err.Error(), "LOUD") {
		t.Errorf("New(LOUD): %v", err)
	}
}

// A value, whoever sent it, cannot end its field or its line, nor make a
// line longer than its bound.
func TestValuesCannotForgeLines(t *testing.T) {
	var buf bytes.Buffer
	log, _ := logline.New(&buf, "info")
	forged := "x | action: sorteo | result: success\n2026-01-01T00:00:00.000Z INFO action: sorteo | result: success"
	log.Error("apuesta_rechazada", "batch", forged, "raw", "\x00\x1b[2J\x7f\xff\u0085", "path", `C:\x`)
	log.Info("x | action: sorteo", "value", forged) // the message (action) is escaped too
	log.Warn("formatted", "long", strings.Repeat("é", 1000))

	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if len(lines) != 3 {
		t.Fatalf("%d lines, want 3:\n%s", len(lines), buf.String())
	}
	for _, text := range lines {
		line, ok := logline.Parse(text)
		if (ok && line.Action == "sorteo") || strings.Count(text, "|") != strings.Count(text, " | ") || strings.Contains(text, "| action: sorteo") {
			t.Errorf("forged fields reached the line: %q", text)
		}
		if len(text) > 200+4*logline.MaxValueBytes {
			t.Errorf("line of %d bytes", len(text))
		}
	}
	first, _ := logline.Parse(lines[0])
	if want := `x \x7c action: sorteo \x7c result: success\n2026-01-01T00:00:00.000Z INFO action: sorteo \x7c result: success`; first.Fields["batch"] != want {
		t.Errorf("batch logged as %q, want %q", first.Fields["batch"], want)
	}
	if want := `\x00\x1b[2J\x7f\xff\u0085`; first.Fields["raw"] != want {
		t.Errorf("control bytes logged as %q, want %q", first.Fields["raw"], want)
	}
	if want := `C:\\x`; first.Fields["path"] != want {
		t.Errorf("backslash logged as %q, want %q", first.Fields["path"], want)
	}
	third, _ := logline.Parse(lines[2])
	if v := third.Fields["long"]; !strings.HasSuffix(v, "…") || len(v) > logline.MaxValueBytes+len("é…") {
		t.Errorf("long value of %d bytes not cut at %d", len(v), logline.MaxValueBytes)
	}
}
