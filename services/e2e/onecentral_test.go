package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/quiniela/quiniela/internal/logline"
	"github.com/quiniela/quiniela/internal/natstest"
	"github.com/quiniela/quiniela/services/central"
)

// Agencies are already sending when two centrals, each with its own bets
// file, start at once on their NATS server: one serves the whole lottery,
// the other exits naming it and stores nothing. No batch is split.
func TestTwoCentralsStartedAtOnceSplitNothing(t *testing.T) {
	ns := natstest.StartServer(t)
	dir := t.TempDir()
	var files []string
	for id := 1; id <= 3; id++ {
		files = append(files, writeAgencyFile(t, dir, id, syntheticRows(id, 300)))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	agencies := make(chan []agencyResult, 1)
	go func() {
		agencies <- runAgencies(ctx, ns.ClientURL(), files, map[string]string{"BATCH_MAX_AMOUNT": "20"})
	}()

	centralCtx, stop := context.WithCancel(ctx)
	defer stop()
	type centralRun struct {
		log  *natstest.Log
		bets string
		errc chan error
	}
	centrals := make([]centralRun, 2)
	for i := range centrals {
		c := centralRun{log: &natstest.Log{}, bets: filepath.Join(dir, fmt.Sprintf("central-%d.csv", i+1)), errc: make(chan error, 1)}
		centrals[i] = c
		go func() {
			c.errc <- central.Run(centralCtx, natstest.Env(map[string]string{
				"NATS_URL": ns.ClientURL(), "CENTRAL_BETS_FILE": c.bets, "CENTRAL_AGENCIES": "3",
			}), c.log)
		}()
	}
	var loser, winner int
	select {
	case err := <-centrals[0].errc:
		loser, winner = 0, 1
		centrals[0].errc <- err
	case err := <-centrals[1].errc:
		loser, winner = 1, 0
		centrals[1].errc <- err
	case <-ctx.Done():
		t.Fatalf("neither central exited; logs:\n%s\n%s", centrals[0].log, centrals[1].log)
	}
	if err := <-centrals[loser].errc; !errors.Is(err, central.ErrLotteryHeld) {
		t.Fatalf("the second central: %v, want ErrLotteryHeld", err)
	}
	centrals[winner].log.WaitFor(t, "central_lista", logline.Success, 1, time.Minute)
	checkNoError(t, <-agencies)
	stop()
	if err := <-centrals[winner].errc; err != nil {
		t.Fatalf("the serving central: %v", err)
	}
	compareRows(t, inputRows(t, files), storedRows(t, centrals[winner].bets))
	if data, err := os.ReadFile(centrals[loser].bets); err != nil && !errors.Is(err, os.ErrNotExist) || len(data) != 0 {
		t.Errorf("the central that lost stored %d bytes (%v)", len(data), err)
	}
}
