package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/quiniela/quiniela/internal/natstest"
)

// An agency whose file holds no bets finishes (the draw needs its done)
// but warns, naming the file.
func TestEmptyAgencyFileWarns(t *testing.T) {
	ns := natstest.StartServer(t)
	dir := t.TempDir()
	startCentral(t, ns.ClientURL(), dir, map[string]string{"CENTRAL_AGENCIES": "1"})
	file := filepath.Join(dir, "agency-1.csv")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	r := runAgency(context.Background(), ns.ClientURL(), 1, file, nil)
	if r.err != nil {
		t.Fatalf("agency with an empty file: %v; log:\n%s", r.err, r.log)
	}
	if !strings.Contains(r.log.String(), "WARN action: enviar_apuestas | result: success") || !strings.Contains(r.log.String(), "holds no bets") ||
		!strings.Contains(r.log.String(), file) {
		t.Errorf("no warning naming the empty file; log:\n%s", r.log)
	}
}
