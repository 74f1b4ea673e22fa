package messages_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/quiniela/quiniela/messages"
)

// row is a valid row, changed field by field in the tables below.
func row() []string { return []string{"Juan", "Perez", "30123456", "1990-05-17", "7574"} }

func with(i int, v string) []string {
	r := row()
	r[i] = v
	return r
}

func date(t *testing.T, s string) time.Time {
	t.Helper()
	d, err := time.Parse(messages.DateLayout, s)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestParseBetValid(t *testing.T) {
	tests := []struct {
		name   string
		fields []string
		want   messages.Bet
	}{
		{"plain row", row(), messages.Bet{Agency: 3, FirstName: "Juan", LastName: "Perez", Document: "30123456", Number: 7574}},
		{"name of 100 bytes", with(0, strings.Repeat("a", 100)), messages.Bet{Agency: 3, FirstName: strings.Repeat("a", 100), LastName: "Perez", Document: "30123456", Number: 7574}},
		{"name of 100 bytes in 50 two-byte runes", with(1, strings.Repeat("ñ", 50)), messages.Bet{Agency: 3, FirstName: "Juan", LastName: strings.Repeat("ñ", 50), Document: "30123456", Number: 7574}},
		{"names with comma, quote, space", []string{`O"Brien, Jr`, " de la Cruz ", "1", "1990-05-17", "1"}, messages.Bet{Agency: 3, FirstName: `O"Brien, Jr`, LastName: " de la Cruz ", Document: "1", Number: 1}},
		{"document of 1 digit", with(2, "7"), messages.Bet{Agency: 3, FirstName: "Juan", LastName: "Perez", Document: "7", Number: 7574}},
		{"document of 12 digits, leading zeros kept", with(2, "000000000012"), messages.Bet{Agency: 3, FirstName: "Juan", LastName: "Perez", Document: "000000000012", Number: 7574}},
		{"number 0", with(4, "0"), messages.Bet{Agency: 3, FirstName: "Juan", LastName: "Perez", Document: "30123456", Number: 0}},
		{"number 9999", with(4, "9999"), messages.Bet{Agency: 3, FirstName: "Juan", LastName: "Perez", Document: "30123456", Number: 9999}},
		// Leading zeros are accepted as long as the number has at most 4
		// characters: "0042" is 42 (and "00042" is refused, see below).
		{"number 0042 is 42", with(4, "0042"), messages.Bet{Agency: 3, FirstName: "Juan", LastName: "Perez", Document: "30123456", Number: 42}},
		{"number 0000 is 0", with(4, "0000"), messages.Bet{Agency: 3, FirstName: "Juan", LastName: "Perez", Document: "30123456", Number: 0}},
		{"leap day", with(3, "2024-02-29"), messages.Bet{Agency: 3, FirstName: "Juan", LastName: "Perez", Document: "30123456", Number: 7574}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.want.Birthdate = date(t, tt.fields[3])
			got, err := messages.ParseBet(3, tt.fields)
			if err != nil {
				t.Fatalf("ParseBet(%q) = %v", tt.fields, err)
			}
			if got != tt.want {
				t.Errorf("ParseBet(%q) = %+v, want %+v", tt.fields, got, tt.want)
			}
		})
	}
}

func TestParseBetInvalid(t *testing.T) {
	tests := []struct {
		name   string
		fields []string
		field  string // the FieldError's Field; "" for a wrong field count
	}{
		{"no fields", nil, ""},
		{"4 fields", row()[:4], ""},
		{"6 fields", append(row(), "x"), ""},
		{"empty first name", with(0, ""), "first_name"},
		{"empty last name", with(1, ""), "last_name"},
		{"first name of 101 bytes", with(0, strings.Repeat("a", 101)), "first_name"},
		{"last name of 101 bytes", with(1, strings.Repeat("a", 101)), "last_name"},
		{"name of 101 bytes in 50 runes and a letter", with(1, strings.Repeat("ñ", 50)+"a"), "last_name"},
		{"invalid UTF-8", with(0, "Ju\xffan"), "first_name"},
		{"truncated UTF-8", with(1, "Pere\xc3"), "last_name"},
		{"tab", with(0, "Ju\tan"), "first_name"},
		{"CR", with(1, "Perez\r"), "last_name"},
		{"LF", with(1, "Pe\nrez"), "last_name"},
		{"NUL", with(0, "Juan\x00"), "first_name"},
		{"DEL", with(0, "Juan\x7f"), "first_name"},
		{"C1 control NEL", with(1, "Perez\u0085"), "last_name"},
		{"document with letters", with(2, "30123456a"), "document"},
		{"document with dots", with(2, "30.123.456"), "document"},
		{"document signed", with(2, "+30123456"), "document"},
		{"empty document", with(2, ""), "document"},
		{"document of 13 digits", with(2, "1234567890123"), "document"},
		{"birthdate Feb 30", with(3, "2023-02-30"), "birthdate"},
		{"birthdate before 1900", with(3, "1899-12-31"), "birthdate"},
		{"birthdate in the future", with(3, "2999-01-01"), "birthdate"},
		{"blank first name", with(0, "   "), "first_name"},
		{"birthdate Feb 29 of a common year", with(3, "2023-02-29"), "birthdate"},
		{"birthdate month 13", with(3, "2023-13-01"), "birthdate"},
		{"birthdate month 00", with(3, "2023-00-10"), "birthdate"},
		{"birthdate short month", with(3, "2023-2-03"), "birthdate"},
		{"birthdate short month, 10 bytes", with(3, "2023-2-031"), "birthdate"},
		{"birthdate DD/MM/YYYY", with(3, "17/03/1999"), "birthdate"},
		{"birthdate with time", with(3, "1999-03-17T00:00:00Z"), "birthdate"},
		{"birthdate signed year", with(3, "-999-03-17"), "birthdate"},
		{"birthdate padded", with(3, " 999-03-17"), "birthdate"},
		{"empty birthdate", with(3, ""), "birthdate"},
		{"number -1", with(4, "-1"), "number"},
		{"number +1", with(4, "+1"), "number"},
		{"number 10000", with(4, "10000"), "number"},
		{"number 00042", with(4, "00042"), "number"},
		{"number 12.5", with(4, "12.5"), "number"},
		{"number 1e3", with(4, "1e3"), "number"},
		{"number abc", with(4, "abc"), "number"},
		{"number with space", with(4, " 12"), "number"},
		{"empty number", with(4, ""), "number"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bet, err := messages.ParseBet(3, tt.fields)
			if err == nil {
				t.Fatalf("ParseBet(%q) = %+v, nil; want an error", tt.fields, bet)
			}
			if bet != (messages.Bet{}) {
				t.Errorf("ParseBet(%q) returned %+v with its error; want the zero Bet", tt.fields, bet)
			}
			var fe *messages.FieldError
			if tt.field == "" {
				if errors.As(err, &fe) {
					t.Errorf("ParseBet(%q): field error %v; want a field-count error", tt.fields, err)
				}
				if !strings.Contains(err.Error(), "fields") {
					t.Errorf("ParseBet(%q): %q does not speak of fields", tt.fields, err)
				}
				return
			}
			if !errors.As(err, &fe) {
				t.Fatalf("ParseBet(%q) = %v (%T); want a *FieldError", tt.fields, err, err)
			}
			if fe.Field != tt.field {
				t.Errorf("ParseBet(%q): field %q, want %q (%v)", tt.fields, fe.Field, tt.field, err)
			}
			if !strings.HasPrefix(err.Error(), tt.field+" ") {
				t.Errorf("ParseBet(%q): message %q does not start with the field name", tt.fields, err)
			}
			if fe.Reason == "" {
				t.Errorf("ParseBet(%q): empty reason", tt.fields)
			}
		})
	}
}

func TestFieldErrorValueIsCut(t *testing.T) {
	long := strings.Repeat("x", 101)
	_, err := messages.ParseBet(1, with(0, long))
	var fe *messages.FieldError
	if !errors.As(err, &fe) {
		t.Fatalf("ParseBet: %v, want a *FieldError", err)
	}
	if want := strings.Repeat("x", 40) + "…"; fe.Value != want {
		t.Errorf("Value = %q, want %q", fe.Value, want)
	}
	if strings.Contains(err.Error(), long) {
		t.Errorf("message %q carries the whole value", err)
	}
}

func TestAppendRow(t *testing.T) {
	bet, err := messages.ParseBet(9, []string{`A, "B"`, "Ñandú", "0001", "1900-01-01", "0042"})
	if err != nil {
		t.Fatal(err)
	}
	prefix := []string{"keep"}
	got := bet.AppendRow(prefix)
	want := []string{"keep", `A, "B"`, "Ñandú", "0001", "1900-01-01", "42"}
	if strings.Join(got, "|") != strings.Join(want, "|") || len(got) != len(want) {
		t.Errorf("AppendRow = %q, want %q", got, want)
	}
	again, err := messages.ParseBet(9, got[1:])
	if err != nil || again != bet {
		t.Errorf("ParseBet(AppendRow) = %+v, %v; want %+v", again, err, bet)
	}
}
