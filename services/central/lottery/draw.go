package lottery

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"sync"
)

// draw streams the store once, keeping only the winners' documents. It
// runs once per process: when the last agency is done, or at start when a
// restart finds every agency done (recovered: the draw had already run and
// been logged). The scan is cut into one range per core: by then every
// agency is done and the cores are free.
func (l *Lottery) draw(ctx context.Context, recovered bool) {
	var err error
	if !recovered {
		// Rows a done agency added just before the last done are stored
		// before it, but the JetStream ledger writes agencies in parallel:
		// its copy may get them after the last done. Wait for them.
		err = l.store.Settle()
	}
	var winners [][]string
	var total int64
	if err == nil {
		winners, total, err = l.scanWinners()
	}
	if err == nil && !recovered {
		mark := make(chan error, 1)
		if err = l.store.MarkDrawn(func(e error) { mark <- e }); err == nil {
			err = <-mark
		}
		if errors.Is(err, ErrDrawnElsewhere) {
			// Another central drew first, from the same stored bets.
			recovered, err = true, nil
		}
	}
	if err != nil {
		l.drawErr = fmt.Errorf("drawing: %w", err)
		l.log.Error("sorteo", "error", err)
		close(l.drawn)
		return
	}
	l.winners = winners
	if recovered {
		l.log.Info("sorteo_recuperado", "apuestas", total)
	} else {
		l.log.Info("sorteo")
	}
	l.log.Debug("sorteo_detalle", "apuestas", total)
	close(l.drawn)
}

// winningSuffix ends every stored row that can win.
var winningSuffix = "," + strconv.Itoa(WinningNumber)

// scanWinners runs LoadBets and HasWon over the store, in parallel ranges,
// and returns each agency's winners in the order stored, with the number of
// bets scanned. HasWon looks only at the number, and the store writes
// numbers canonically, so a row whose last field is not "7574" cannot win:
// it is counted and passed over unparsed. The others are parsed in full and
// go through HasWon. That makes the draw over 10 M bets a fraction of a
// second rather than two.
func (l *Lottery) scanWinners() ([][]string, int64, error) {
	bets, err := l.store.Bets()
	if err != nil {
		return nil, 0, fmt.Errorf("opening the stored bets: %w", err)
	}
	defer bets.Close()
	cuts := splitRows(bets, runtime.GOMAXPROCS(0))
	parts := make([]struct {
		winners [][]string
		total   int64
		err     error
	}, len(cuts)-1)
	var wg sync.WaitGroup
	for i := range parts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := &parts[i]
			p.winners = make([][]string, len(l.agencies))
			mayWin := func(row string) bool {
				p.total++
				return strings.HasSuffix(row, winningSuffix)
			}
			for bet, err := range loadRange(bets, cuts[i], cuts[i+1], mayWin) {
				if err != nil {
					p.err = err
					return
				}
				if bet.Agency < 1 || bet.Agency > len(l.agencies) {
					p.err = fmt.Errorf("bet of agency %d in the store, agencies are 1 to %d", bet.Agency, len(l.agencies))
					return
				}
				if HasWon(bet) {
					p.winners[bet.Agency-1] = append(p.winners[bet.Agency-1], bet.Document)
				}
			}
		}()
	}
	wg.Wait()
	winners := make([][]string, len(l.agencies))
	var total int64
	for _, p := range parts {
		if p.err != nil {
			return nil, 0, p.err
		}
		total += p.total
		for a := range winners {
			winners[a] = append(winners[a], p.winners[a]...)
		}
	}
	return winners, total, nil
}

// WinnersFor returns the documents of agency's winners. Until the draw it
// waits, up to ctx's deadline; then it fails with ErrDrawPending, and the
// agency asks again. It never answers with partial data.
func (l *Lottery) WinnersFor(ctx context.Context, agency int) ([]string, error) {
	if _, err := l.agency(agency); err != nil {
		return nil, err
	}
	select {
	case <-l.drawn:
	case <-ctx.Done():
		return nil, fmt.Errorf("%w (%d of %d done): ask again", ErrDrawPending, l.DoneCount(), len(l.agencies))
	}
	if l.drawErr != nil {
		return nil, l.drawErr
	}
	w := l.winners[agency-1]
	if w == nil {
		w = []string{}
	}
	return w, nil
}

// Drawn is closed once the draw has run.
func (l *Lottery) Drawn() <-chan struct{} { return l.drawn }
