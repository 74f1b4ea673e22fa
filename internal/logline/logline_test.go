package logline_test

import (
	"bytes"
	"context"
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
	ctx := context.Background()
	logline.Log(ctx, log, "apuesta_recibida", logline.Success, "cantidad", 94)
	logline.Log(ctx, log, "apuesta_recibida", logline.Fail, "cantidad", 3)
	logline.Debug(ctx, log, "lote_confirmado", logline.Success, "batch", 1) // below INFO: not written
	logline.Log(ctx, log, "sorteo", logline.Success)

	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	want := []string{
		`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z INFO action: apuesta_recibida \| result: success \| cantidad: 94$`,
		`^\S+ ERROR action: apuesta_recibida \| result: fail \| cantidad: 3$`,
		`^\S+ INFO action: sorteo \| result: success$`,
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
