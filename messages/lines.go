package messages

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"
)

// HeaderLines names the lines of the agency's file that a batch's rows come
// from, in the order of the rows: "2-41,43,45-60". The central keeps
// which lines of each agency it has stored, so that a row is stored once
// per line whatever batch carries it: a line skipped as invalid and fixed
// later is stored when it comes, a stored line never twice.
const HeaderLines = "Quiniela-Lines"

// LineRange is the file lines First to Last, both included.
type LineRange struct{ First, Last uint64 }

// LineSet is a set of file lines as ranges in increasing order, none
// touching the next: 1-3,5 and never 1-2,3 or 5,1.
type LineSet []LineRange

// String writes ls as HeaderLines does: ranges joined by commas, a range of
// one line as its number.
func (ls LineSet) String() string { return string(ls.Append(nil)) }

// Append appends ls as String writes it.
func (ls LineSet) Append(dst []byte) []byte {
	for i, r := range ls {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = strconv.AppendUint(dst, r.First, 10)
		if r.Last != r.First {
			dst = strconv.AppendUint(append(dst, '-'), r.Last, 10)
		}
	}
	return dst
}

// Count is the number of lines in ls.
func (ls LineSet) Count() uint64 {
	var n uint64
	for _, r := range ls {
		n += r.Last - r.First + 1
	}
	return n
}

// Cut is the leading ranges of ls whose String takes at most maxBytes.
func (ls LineSet) Cut(maxBytes int) LineSet {
	n := 0
	for i, r := range ls {
		if i > 0 {
			n++ // the comma
		}
		if n += rangeLen(r); n > maxBytes {
			return ls[:i]
		}
	}
	return ls
}

// Add appends line, which must follow every line of ls.
func (ls LineSet) Add(line uint64) LineSet {
	if n := len(ls); n > 0 && ls[n-1].Last+1 == line {
		ls[n-1].Last = line
		return ls
	}
	return append(ls, LineRange{line, line})
}

// All calls fn with each line of ls in order until fn returns false.
func (ls LineSet) All(fn func(line uint64) bool) {
	for _, r := range ls {
		for l := r.First; ; l++ {
			if !fn(l) {
				return
			}
			if l == r.Last {
				break
			}
		}
	}
}

// ParseLineSet reads lines as String writes them: positive line numbers and
// ranges, increasing, none touching the next. The empty string is no line.
func ParseLineSet(s string) (LineSet, error) {
	if s == "" {
		return nil, nil
	}
	var ls LineSet
	for part := range strings.SplitSeq(s, ",") {
		first, last, isRange := strings.Cut(part, "-")
		a, err := strconv.ParseUint(first, 10, 64)
		b := a
		if err == nil && isRange {
			b, err = strconv.ParseUint(last, 10, 64)
			if err == nil && b <= a {
				return nil, fmt.Errorf("range %s: want its first line before its last", Clip(part))
			}
		}
		// One spelling per line: no leading zeros.
		if err != nil || a == 0 || first != strconv.FormatUint(a, 10) || (isRange && last != strconv.FormatUint(b, 10)) {
			return nil, fmt.Errorf("%s: want a line number (1 or more) or a range such as 2-41", Clip(part))
		}
		if n := len(ls); n > 0 && (a <= ls[n-1].Last || a == ls[n-1].Last+1) {
			return nil, fmt.Errorf("%s after %d: want increasing lines, ranges not touching", Clip(part), ls[n-1].Last)
		}
		ls = append(ls, LineRange{a, b})
	}
	return ls, nil
}

// linesLenAfterAdd is how many bytes Append writes for ls, which takes
// textLen, once line is added to it.
func linesLenAfterAdd(textLen int, ls LineSet, line uint64) int {
	n := len(ls)
	if n > 0 && ls[n-1].Last+1 == line {
		last := ls[n-1]
		before := rangeLen(last)
		last.Last = line
		return textLen - before + rangeLen(last)
	}
	if n > 0 {
		textLen++ // the comma
	}
	return textLen + rangeLen(LineRange{line, line})
}

func rangeLen(r LineRange) int {
	n := digits64(r.First)
	if r.Last != r.First {
		n += 1 + digits64(r.Last)
	}
	return n
}

// digits64 is the number of decimal digits of n, with no allocation: the
// encoder asks it for every bet.
func digits64(n uint64) int {
	d := 1
	for ; n >= 10; n /= 10 {
		d++
	}
	return d
}

// BatchSum is the checksum of a batch: the first 8 bytes, big-endian, of
// the SHA-256 of its Quiniela-Lines value, a LF and its payload. The
// central keeps it per (agency, batch) so that a resent batch is known to
// be the same batch (same lines, same rows) at once, without a look at
// each row. (A CRC-32 was too weak: valid one-row batches collide.)
func BatchSum(lines string, payload []byte) uint64 {
	h := sha256.New()
	h.Write([]byte(lines))
	h.Write([]byte{'\n'})
	h.Write(payload)
	var sum [sha256.Size]byte
	return binary.BigEndian.Uint64(h.Sum(sum[:0]))
}

// RowSum is the checksum of one stored row (agency, fields, LF), by which
// the central tells a row resent for a stored line from another row there.
func RowSum(row []byte) uint64 {
	sum := sha256.Sum256(row)
	return binary.BigEndian.Uint64(sum[:8])
}
