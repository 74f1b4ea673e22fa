package messages_test

import (
	"bytes"
	"encoding/csv"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/quiniela/quiniela/messages"
)

// The fast paths write and read rows exactly as encoding/csv does.
func TestCSVFastPathsAgreeWithEncodingCSV(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 7))
	alphabet := []string{"a", "Z", "ñ", " ", ",", `"`, "\\", ".", "é", "\t", "x"}
	name := func() string {
		var b strings.Builder
		for range 1 + r.IntN(6) {
			b.WriteString(alphabet[r.IntN(len(alphabet))])
		}
		if r.IntN(20) == 0 {
			return `\.`
		}
		return b.String()
	}
	for range 20000 {
		bet := messages.Bet{FirstName: name(), LastName: name(), Document: "123", Birthdate: time.Date(1990, 5, 17, 0, 0, 0, 0, time.UTC), Number: r.IntN(10000)}
		var want bytes.Buffer
		w := csv.NewWriter(&want)
		w.Write(bet.AppendRow(nil))
		w.Flush()
		got := bet.AppendCSV(nil)
		if string(got) != want.String() {
			t.Fatalf("AppendCSV(%q, %q) = %q, encoding/csv writes %q", bet.FirstName, bet.LastName, got, want.String())
		}
		fields, err := messages.SplitRow(nil, strings.TrimSuffix(string(got), "\n"))
		if err != nil || strings.Join(fields, "\x00") != strings.Join(bet.AppendRow(nil), "\x00") {
			t.Fatalf("SplitRow(%q) = %q, %v; want %q", got, fields, err, bet.AppendRow(nil))
		}
	}
}
