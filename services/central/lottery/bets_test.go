package lottery_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/quiniela/quiniela/messages"
	"github.com/quiniela/quiniela/services/central/lottery"
	"github.com/quiniela/quiniela/services/central/lottery/lotterytest"
)

// StoreBets writes the course's bets.csv; LoadBets reads back the same
// bets in the order stored, quoting only where CSV needs it.
func TestStoreBetsRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bets.csv")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	bets := []messages.Bet{lotterytest.Bet(1, 1, "Santiago Lionel"), lotterytest.Bet(2, 2, `Juan "el Tano", hijo`), lotterytest.Bet(1, 3, "Ñandú")}
	if err := lottery.StoreBets(f, bets); err != nil {
		t.Fatal(err)
	}
	f.Close()
	data, _ := os.ReadFile(path)
	wantText := "1,Santiago Lionel,Apellido1,30000001,1981-02-02,1\n" +
		"2,\"Juan \"\"el Tano\"\", hijo\",Apellido2,30000002,1982-03-03,2\n" +
		"1,Ñandú,Apellido3,30000003,1983-04-04,3\n"
	if string(data) != wantText {
		t.Errorf("bets.csv:\n%s\nwant:\n%s", data, wantText)
	}
	if got := lotterytest.Collect(t, path); !slices.Equal(got, bets) {
		t.Errorf("LoadBets = %v, want %v", got, bets)
	}
	if !lottery.HasWon(messages.Bet{Number: 7574}) || lottery.HasWon(messages.Bet{Number: 7575}) {
		t.Error("HasWon must be number == 7574")
	}
}

func TestLoadBetsReportsBadLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bets.csv")
	os.WriteFile(path, []byte("1,A,B,1,1990-01-01,5\n1,A,B,1,1990-13-01,5\n"), 0o644)
	var n int
	var last error
	for _, err := range lottery.LoadBets(path) {
		if err != nil {
			last = err
			break
		}
		n++
	}
	if n != 1 || last == nil || !strings.Contains(last.Error(), "line 2") {
		t.Errorf("read %d bets then %v; want 1 bet then an error naming line 2", n, last)
	}
}
