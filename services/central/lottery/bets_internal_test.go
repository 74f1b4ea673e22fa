package lottery

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/quiniela/quiniela/messages"
)

// The draw's parallel ranges together read exactly what LoadBets reads,
// in the same order, however the file is cut.
func TestRangesCoverTheStore(t *testing.T) {
	var b strings.Builder
	for i := range 1000 {
		name := "Nombre"
		if i%17 == 0 {
			name = `"Quoted, name"` // a row that needs quotes
		}
		fmt.Fprintf(&b, "%d,%s,Apellido %d,%d,1990-01-%02d,%d\n", 1+i%5, name, i, 30000000+i, 1+i%28, i)
	}
	path := filepath.Join(t.TempDir(), "bets.csv")
	os.WriteFile(path, []byte(b.String()), 0o644)
	var want []messages.Bet
	for bet, err := range LoadBets(path) {
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, bet)
	}
	if len(want) != 1000 {
		t.Fatalf("LoadBets read %d bets", len(want))
	}
	bets, err := OpenBetsFile(path)
	if err != nil {
		t.Fatal(err)
	}
	defer bets.Close()
	for n := 1; n <= 9; n++ {
		cuts := splitRows(bets, n)
		var got []messages.Bet
		for i := 0; i+1 < len(cuts); i++ {
			for bet, err := range loadRange(bets, cuts[i], cuts[i+1], nil) {
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, bet)
			}
		}
		if !slices.Equal(got, want) {
			t.Fatalf("%d ranges %v read %d bets, not what LoadBets reads", n, cuts, len(got))
		}
	}
}
