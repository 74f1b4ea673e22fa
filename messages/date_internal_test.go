package messages

import (
	"fmt"
	"testing"
	"time"
)

// parseDate accepts exactly what time.Parse(DateLayout, …) accepts, and
// gives the same time.
func TestParseDateAgreesWithTimeParse(t *testing.T) {
	var inputs []string
	for _, y := range []int{0, 1, 1899, 1900, 1999, 2000, 2024, 2100, 2400, 9999} {
		for m := 0; m <= 13; m++ {
			for d := 0; d <= 32; d++ {
				inputs = append(inputs, fmt.Sprintf("%04d-%02d-%02d", y, m, d))
			}
		}
	}
	inputs = append(inputs, "1999/03/17", "1999-3-17x", "+999-03-17", "1999-03-1a", "1999-0a-17", "19a9-03-17",
		"1999--3-17", "1999-03--7", " 999-03-17", "1999-03-17")
	for _, s := range inputs {
		want, werr := time.Parse(DateLayout, s)
		got, ok := parseDate(s)
		if ok != (werr == nil) || (ok && !got.Equal(want)) || (ok && got.Location() != want.Location()) {
			t.Errorf("parseDate(%q) = %v, %v; time.Parse: %v, %v", s, got, ok, want, werr)
		}
	}
}

func FuzzParseDate(f *testing.F) {
	f.Add("1999-03-17")
	f.Add("2000-02-29")
	f.Fuzz(func(t *testing.T, s string) {
		if len(s) != birthdateBytes {
			return
		}
		want, werr := time.Parse(DateLayout, s)
		got, ok := parseDate(s)
		if ok != (werr == nil) || (ok && !got.Equal(want)) {
			t.Errorf("parseDate(%q) = %v, %v; time.Parse: %v, %v", s, got, ok, want, werr)
		}
	})
}

// checkName's one-pass check accepts exactly the names its rules, one at a
// time, accept.
func FuzzCheckNameFastPath(f *testing.F) {
	for _, s := range []string{"Juan", "Nicolás", "", " ", "\u00a0", "\u00a0Ana", "A\u0085", "A\x7f", "A\tB", "\xff", "\ufffd", "Ñandú de la Cruz", "  x  "} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		fast := len(s) <= MaxNameBytes && (plainASCII(s) || validText(s))
		if err := nameError("first_name", s); fast != (err == nil) {
			t.Fatalf("%q: one-pass check %v, rules say %v", s, fast, err)
		}
	})
}
