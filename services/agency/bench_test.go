package agency_test

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/quiniela/quiniela/messages"
	"github.com/quiniela/quiniela/services/agency"
)

// BenchmarkReadAndEncode is the agency's work per bet without the network:
// read a line of its file, validate it, encode it into a batch.
func BenchmarkReadAndEncode(b *testing.B) {
	const rows = 100_000
	var sb strings.Builder
	for i := range rows {
		fmt.Fprintf(&sb, "Santiago Lionel,Fernández,%d,1999-03-17,%d\r\n", 20000000+i, i%10000)
	}
	path := filepath.Join(b.TempDir(), "agency-1.csv")
	if err := os.WriteFile(path, []byte(sb.String()), 0o644); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(sb.Len()))
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		f, err := agency.OpenBetFile(path, 1)
		if err != nil {
			b.Fatal(err)
		}
		enc := messages.NewBatchEncoder(1, agency.DefaultMaxAmount)
		var row []byte
		for {
			row, err = f.Next(row[:0])
			if err == io.EOF {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
			if ok, _ := enc.AddCSV(row); !ok {
				enc.Flush()
				enc.AddCSV(row)
			}
		}
		f.Close()
	}
	b.ReportMetric(float64(rows*b.N)/b.Elapsed().Seconds(), "bets/s")
}
