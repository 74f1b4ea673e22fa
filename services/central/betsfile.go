package central

import (
	"bufio"
	"encoding/csv"
	"fmt"
	"io"
	"iter"
	"os"
	"strconv"

	"github.com/quiniela/quiniela/messages"
)

// The course's store helpers (store_bets, load_bets, has_won), in Go, with
// their semantics kept: bets.csv has one row a bet, columns
// agency,first_name,last_name,document,birthdate,number, no header, quoted
// only where CSV needs it.

// WinningNumber is the simulated draw's winning number.
const WinningNumber = 7574

// HasWon reports whether bet wins the draw.
func HasWon(bet messages.Bet) bool { return bet.Number == WinningNumber }

// StoreBets appends bets as rows of bets.csv to w. Like the course's
// store_bets it is not safe for concurrent use: the Ledger guards it.
func StoreBets(w *csv.Writer, bets []messages.Bet) error {
	var row [1 + messages.Fields]string
	for _, b := range bets {
		row[0] = strconv.Itoa(b.Agency)
		b.AppendRow(row[:1])
		if err := w.Write(row[:]); err != nil {
			return err
		}
	}
	w.Flush()
	return w.Error()
}

// LoadBets streams the bets stored in the file at path, in the order stored,
// never holding more than one row in memory. A bad row ends the stream with
// an error naming its line.
func LoadBets(path string) iter.Seq2[messages.Bet, error] {
	return func(yield func(messages.Bet, error) bool) {
		f, err := os.Open(path)
		if err != nil {
			yield(messages.Bet{}, fmt.Errorf("loading bets: %w", err))
			return
		}
		defer f.Close()
		for bet, err := range readBets(bufio.NewReaderSize(f, 256<<10)) {
			if err != nil {
				err = fmt.Errorf("loading bets from %s: %w", path, err)
			}
			if !yield(bet, err) || err != nil {
				return
			}
		}
	}
}

func readBets(r io.Reader) iter.Seq2[messages.Bet, error] {
	return func(yield func(messages.Bet, error) bool) {
		cr := messages.NewRowReader(r)
		for {
			rec, err := cr.Read()
			if err == io.EOF {
				return
			}
			if err != nil {
				yield(messages.Bet{}, err)
				return
			}
			line, _ := cr.FieldPos(0)
			if len(rec) != 1+messages.Fields {
				yield(messages.Bet{}, fmt.Errorf("line %d: %d fields, want %d", line, len(rec), 1+messages.Fields))
				return
			}
			agency, err := messages.ParseAgency(rec[0])
			if err == nil {
				var bet messages.Bet
				bet, err = messages.ParseBet(agency, rec[1:])
				if err == nil {
					if !yield(bet, nil) {
						return
					}
					continue
				}
			}
			yield(messages.Bet{}, fmt.Errorf("line %d: %w", line, err))
			return
		}
	}
}
