// Package lotterytest holds the bets the stores' and the central's tests
// write and read back, shared so that each test package need not copy them.
package lotterytest

import (
	"fmt"
	"testing"
	"time"

	"github.com/quiniela/quiniela/messages"
	"github.com/quiniela/quiniela/services/central/lottery"
)

// Bet is bet i of agency, named first: its document and number follow i.
func Bet(agency, i int, first string) messages.Bet {
	return messages.Bet{Agency: agency, FirstName: first, LastName: fmt.Sprintf("Apellido%d", i),
		Document: fmt.Sprint(30000000 + i), Birthdate: time.Date(1980+i%20, time.Month(1+i%12), 1+i%28, 0, 0, 0, 0, time.UTC), Number: i % 10000}
}

// Collect is the bets of the bets file at path, in the order stored.
func Collect(t testing.TB, path string) []messages.Bet {
	t.Helper()
	var out []messages.Bet
	for b, err := range lottery.LoadBets(path) {
		if err != nil {
			t.Fatalf("LoadBets: %v", err)
		}
		out = append(out, b)
	}
	return out
}
