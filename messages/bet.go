package messages

import (
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"
)

// Bet is one bet as the course's store keeps it.
type Bet struct {
	Agency    int
	FirstName string
	LastName  string
	Document  string // the bettor's DNI, digits only
	Birthdate time.Time
	Number    int
}

// Field limits. They bound every row to a few hundred bytes, so that one
// bet always fits in a message, and they match what a real bet slip holds.
const (
	Fields         = 5    // first_name,last_name,document,birthdate,number
	MaxNameBytes   = 100  // first or last name, in UTF-8 bytes
	MaxDocDigits   = 12   // DNIs have 7-8 digits; passports and CUITs fit in 12
	MaxNumber      = 9999 // a quiniela number has four digits
	MinBirthYear   = 1900
	DateLayout     = "2006-01-02"
	birthdateBytes = len(DateLayout)
)

// argentina is where the bettors are: a birthdate is valid up to today's
// date there. It is UTC−3 all year (no daylight saving time since 2009); a
// fixed zone needs no time zone database in a FROM scratch image.
var argentina = time.FixedZone("ART", -3*60*60)

// now is the clock (tests set it).
var now = time.Now

// latestBirthdate caches today's date in Argentina, as YYYYMMDD. Today
// only moves forward, so a birthdate up to the cached day is valid for
// good, and the clock is read only for a later one: looking it up for every
// bet cost a tenth of the central's time.
var latestBirthdate atomic.Int64

// dateKey is a date as YYYYMMDD: dates compare as their keys do.
func dateKey(y int, m time.Month, d int) int64 { return int64(y)*10000 + int64(m)*100 + int64(d) }

// bornLater reports whether the date y-m-d is after today in Argentina.
func bornLater(y int, m time.Month, d int) bool {
	b := dateKey(y, m, d)
	cached := latestBirthdate.Load()
	if b <= cached {
		return false
	}
	today := dateKey(now().In(argentina).Date())
	for cached < today && !latestBirthdate.CompareAndSwap(cached, today) {
		cached = latestBirthdate.Load()
	}
	return b > today
}

// FieldError says which field of a bet is wrong and why.
type FieldError struct {
	Field  string // first_name, last_name, document, birthdate or number
	Value  string // the offending value, cut to 40 bytes for messages
	Reason string
}

func (e *FieldError) Error() string {
	return fmt.Sprintf("%s %q: %s", e.Field, e.Value, e.Reason)
}

// fieldErr copies what it quotes of value: a row's fields may alias a
// payload that its owner reuses (DecodeRows).
func fieldErr(field, value, reason string) *FieldError {
	if cut, short := cutAt(value, clipBytes); !short {
		value = cut + "…"
	} else {
		value = strings.Clone(value)
	}
	return &FieldError{Field: field, Value: value, Reason: reason}
}

// ParseBet validates the five fields of a row
// (first_name,last_name,document,birthdate,number) and returns the bet of the
// given agency. The same rules run at the agency, which skips bad rows, and
// at the central, which refuses a batch holding one.
func ParseBet(agency int, fields []string) (Bet, error) {
	v, err := checkBet(fields)
	if err != nil {
		return Bet{}, err
	}
	return v.bet(agency, fields), nil
}

// validBet is what checkBet read of a valid row beyond its text.
type validBet struct {
	year   int
	month  time.Month
	day    int
	number int
}

func (v validBet) bet(agency int, fields []string) Bet {
	return Bet{
		Agency:    agency,
		FirstName: fields[0],
		LastName:  fields[1],
		Document:  fields[2],
		Birthdate: time.Date(v.year, v.month, v.day, 0, 0, 0, 0, time.UTC),
		Number:    v.number,
	}
}

// checkBet is ParseBet's rules, without building the bet.
func checkBet(fields []string) (validBet, error) {
	if len(fields) != Fields {
		return validBet{}, fmt.Errorf("%d fields, want %d (first_name,last_name,document,birthdate,number)", len(fields), Fields)
	}
	if err := checkName("first_name", fields[0]); err != nil {
		return validBet{}, err
	}
	if err := checkName("last_name", fields[1]); err != nil {
		return validBet{}, err
	}
	doc := fields[2]
	if doc == "" || len(doc) > MaxDocDigits || !allDigits(doc) {
		return validBet{}, fieldErr("document", doc, fmt.Sprintf("want 1 to %d digits", MaxDocDigits))
	}
	if len(fields[3]) != birthdateBytes {
		return validBet{}, fieldErr("birthdate", fields[3], "want a date as YYYY-MM-DD")
	}
	y, m, d, ok := parseYMD(fields[3])
	if !ok {
		return validBet{}, fieldErr("birthdate", fields[3], "not a real date (want YYYY-MM-DD)")
	}
	if y < MinBirthYear || bornLater(y, m, d) {
		return validBet{}, fieldErr("birthdate", fields[3], fmt.Sprintf("not a bettor's birthdate (want %d-01-01 to today in Argentina, UTC-3)", MinBirthYear))
	}
	num := fields[4]
	if num == "" || len(num) > 4 || !allDigits(num) {
		return validBet{}, fieldErr("number", num, fmt.Sprintf("want an integer from 0 to %d", MaxNumber))
	}
	n, _ := strconv.Atoi(num) // cannot fail: 1-4 digits
	return validBet{year: y, month: m, day: d, number: n}, nil
}

func checkName(field, s string) error {
	if len(s) <= MaxNameBytes && (plainASCII(s) || validText(s)) {
		return nil // the common cases, in one pass
	}
	return nameError(field, s)
}

// nameError is checkName's rules one at a time, to say which one s breaks
// (nil if none).
func nameError(field, s string) error {
	switch {
	case s == "":
		return fieldErr(field, s, "empty")
	case strings.TrimSpace(s) == "":
		return fieldErr(field, s, "blank")
	case len(s) > MaxNameBytes:
		return fieldErr(field, s, fmt.Sprintf("%d bytes, at most %d", len(s), MaxNameBytes))
	case !utf8.ValidString(s):
		return fieldErr(field, s, "not valid UTF-8")
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return fieldErr(field, s, fmt.Sprintf("control character %U", r))
		}
	}
	return nil
}

// plainASCII reports whether s is printable ASCII with at least one
// character that is not a space: a valid name, whatever checkName's slow
// path would say of it.
func plainASCII(s string) bool {
	seen := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c >= 0x7f {
			return false
		}
		seen = seen || c != ' '
	}
	return seen
}

// validText reports in one pass whether s is a valid name, whatever
// checkName's slow path would say of it: valid UTF-8 with no control
// character and at least one character that is not a space.
func validText(s string) bool {
	seen := false
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c < 0x20 || c == 0x7f {
				return false
			}
			seen = seen || c != ' '
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if (r == utf8.RuneError && size == 1) || unicode.IsControl(r) {
			return false
		}
		seen = seen || !unicode.IsSpace(r)
		i += size
	}
	return seen
}

// parseDate is time.Parse(DateLayout, s) for a 10-byte s, without parsing
// the layout for every bet (a tenth of the cost of a bet): the same dates
// are accepted, in UTC.
func parseDate(s string) (time.Time, bool) {
	y, m, d, ok := parseYMD(s)
	if !ok {
		return time.Time{}, false
	}
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC), true
}

// parseYMD reads the date parseDate accepts as its year, month and day.
func parseYMD(s string) (int, time.Month, int, bool) {
	if len(s) != birthdateBytes || s[4] != '-' || s[7] != '-' {
		return 0, 0, 0, false
	}
	num := func(part string) (int, bool) {
		n := 0
		for i := 0; i < len(part); i++ {
			if part[i] < '0' || part[i] > '9' {
				return 0, false
			}
			n = n*10 + int(part[i]-'0')
		}
		return n, true
	}
	y, ok1 := num(s[:4])
	m, ok2 := num(s[5:7])
	d, ok3 := num(s[8:])
	if !ok1 || !ok2 || !ok3 || m < 1 || m > 12 || d < 1 || d > daysIn(time.Month(m), y) {
		return 0, 0, 0, false
	}
	return y, time.Month(m), d, true
}

func daysIn(m time.Month, year int) int {
	if m == time.February {
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			return 29
		}
		return 28
	}
	return 31 - int(m-1)%7%2
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// AppendRow appends the bet's five wire fields as strings, in row order, to
// dst (which it returns), for a csv.Writer.
func (b Bet) AppendRow(dst []string) []string {
	return append(dst, b.FirstName, b.LastName, b.Document,
		b.Birthdate.Format(DateLayout), strconv.Itoa(b.Number))
}
