package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/quiniela/quiniela/internal/natstest"
	"github.com/quiniela/quiniela/messages"
)

// The whole lottery on the course's data set: five agencies at once through
// a real NATS server. Every bet is stored once, the draw is logged once,
// each agency learns exactly its own winners.
func TestOfficialDataSet(t *testing.T) {
	dir := natstest.CatedraDir(t)
	ns := natstest.StartServer(t)
	c := startCentral(t, ns.ClientURL(), t.TempDir(), nil)

	var files []string
	for i := 1; i <= 5; i++ {
		files = append(files, filepath.Join(dir, fmt.Sprintf("agency-%d.csv", i)))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	results := runAgencies(ctx, ns.ClientURL(), files, nil)
	checkNoError(t, results)

	nc := natstest.Connect(t, ns)
	for _, r := range results {
		want := winningDocs(t, files[r.id-1])
		lines := r.log.Lines("consulta_ganadores")
		if len(lines) != 1 || lines[0].Fields["cant_ganadores"] != strconv.Itoa(len(want)) {
			t.Errorf("agency %d logged %v, want one consulta_ganadores with cant_ganadores: %d", r.id, lines, len(want))
		}
		got, err := askWinners(t, nc, r.id)
		if err != nil {
			t.Fatalf("winners of agency %d: %v", r.id, err)
		}
		if got.Agency != r.id || !slices.Equal(got.Winners, want) {
			t.Errorf("winners of agency %d = %+v, want exactly its own bets on 7574: %v", r.id, got, want)
		}
	}
	c.stop(t)

	compareRows(t, inputRows(t, files), storedRows(t, c.betsFile))
	if n := c.log.Count("action: sorteo | result: success"); n != 1 {
		t.Errorf("sorteo logged %d times, want once", n)
	}
	if n, want := len(c.log.Lines("apuesta_recibida")), len(c.log.Lines("agencia_terminada")); n == 0 || want != 5 {
		t.Errorf("central logged %d apuesta_recibida and %d agencia_terminada lines", n, want)
	}
	for _, line := range c.log.Lines("apuesta_recibida") {
		if line.Result != "success" || len(line.Keys) != 1 || line.Keys[0] != "cantidad" {
			t.Fatalf("apuesta_recibida line %+v, want 'result: success | cantidad: N' exactly", line)
		}
	}
}

// Until the last agency is done, winners requests get no data: the agencies
// that are done wait, and a direct request is answered "draw pending".
func TestNoWinnersBeforeEveryAgencyIsDone(t *testing.T) {
	ns := natstest.StartServer(t)
	dir := t.TempDir()
	c := startCentral(t, ns.ClientURL(), dir, map[string]string{"CENTRAL_WINNERS_HOLD": "50ms"})
	var files []string
	for id := 1; id <= 5; id++ {
		files = append(files, writeAgencyFile(t, dir, id, syntheticRows(id, 200+id)))
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	early := make(chan []agencyResult, 1)
	go func() { early <- runAgencies(ctx, ns.ClientURL(), files[:4], nil) }()
	c.log.WaitFor(t, "agencia_terminada", "success", 4, 30*time.Second)

	nc := natstest.Connect(t, ns)
	for id := 1; id <= 5; id++ {
		reply, err := askWinners(t, nc, id)
		if messages.CodeOf(err) != messages.CodeDrawPending {
			t.Errorf("winners of agency %d with 4 of 5 done: reply %+v, error %v; want code %v and no data", id, reply, err, messages.CodeDrawPending)
		}
	}
	select {
	case r := <-early:
		t.Fatalf("agencies finished before the fifth was done: %+v", r)
	default:
	}
	if n := c.log.Count("action: sorteo"); n != 0 {
		t.Fatalf("sorteo logged with 4 of 5 agencies done")
	}

	last := runAgency(ctx, ns.ClientURL(), 5, files[4], nil)
	checkNoError(t, []agencyResult{last})
	results := <-early
	checkNoError(t, results)
	for _, r := range append(results, last) {
		want := winningDocs(t, files[r.id-1])
		if got := r.log.Lines("consulta_ganadores"); len(got) != 1 || got[0].Fields["cant_ganadores"] != strconv.Itoa(len(want)) {
			t.Errorf("agency %d: %v, want cant_ganadores %d", r.id, got, len(want))
		}
		if r.id <= 4 && len(r.log.Lines("esperar_sorteo")) == 0 {
			t.Errorf("agency %d never logged that it waited for the draw", r.id)
		}
	}
	c.stop(t)
	compareRows(t, inputRows(t, files), storedRows(t, c.betsFile))
}
