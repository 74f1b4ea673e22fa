package central

import "github.com/quiniela/quiniela/messages"

// RowsFrom is RowsOf for bets from the agency file's lines first, first+1, …
func RowsFrom(first uint64, bets []messages.Bet) Rows {
	r := RowsOf(bets)
	if len(bets) > 0 {
		r.Lines = messages.LineSet{{First: first, Last: first + uint64(len(bets)) - 1}}
	}
	return r
}

// SetStaged makes s call f with n after it hands message n of an atomic
// batch to the client, before the batch's commit.
func SetStaged(s *JetStreamStore, f func(n int)) { s.staged = f }
