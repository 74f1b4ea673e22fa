package central_test

import (
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/quiniela/quiniela/messages"
	"github.com/quiniela/quiniela/services/central"
)

// BenchmarkDecodeAndStore is the central's work per batch without the
// network and the disk: decode and validate the payload, checksum it, and
// encode its rows for bets.csv.
func BenchmarkDecodeAndStore(b *testing.B) {
	var sb strings.Builder
	for i := range 118 {
		fmt.Fprintf(&sb, "Santiago Lionel,Fernández,%d,1999-03-17,%d\n", 20000000+i, i)
	}
	payload := []byte(sb.String())
	var bets []messages.Bet
	b.SetBytes(int64(len(payload)))
	b.ReportAllocs()
	for b.Loop() {
		var err error
		bets, err = messages.DecodeBets(bets[:0], 1, payload)
		if err != nil {
			b.Fatal(err)
		}
		messages.BatchSum(payload)
		if err := central.StoreBets(io.Discard, bets); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(118*b.N)/b.Elapsed().Seconds(), "bets/s")
}
