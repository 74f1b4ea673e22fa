package central_test

import (
	"fmt"
	"testing"

	"github.com/quiniela/quiniela/messages"
)

// BenchmarkDecodeBatch is the central's work per batch without the network
// and the disk: check the headers, validate every row and render it for
// bets.csv, checksum the payload. The batch is a full message of rows like
// the course's, a third of them with accents.
func BenchmarkDecodeBatch(b *testing.B) {
	enc := messages.NewBatchEncoder(1, 1000)
	for i := 0; ; i++ {
		first := "Santiago Lionel"
		if i%3 == 0 {
			first = "Tiago Nicolás"
		}
		bet, err := messages.ParseBet(1, []string{first, "Fernández", fmt.Sprint(20000000 + i), "1999-03-17", fmt.Sprint(i % 10000)})
		if err != nil {
			b.Fatal(err)
		}
		if ok, _ := enc.Add(bet); !ok {
			break
		}
	}
	batch := enc.Flush()
	msg := batch.Msg()
	var rows []byte
	b.SetBytes(int64(len(batch.Payload)))
	b.ReportAllocs()
	for b.Loop() {
		req, err := messages.DecodeBatch(rows[:0], msg.Subject, msg.Header, msg.Data)
		if err != nil {
			b.Fatal(err)
		}
		rows = req.Stored
	}
	b.ReportMetric(float64(batch.Bets*b.N)/b.Elapsed().Seconds(), "bets/s")
}
