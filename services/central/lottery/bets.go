package lottery

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"iter"
	"os"
	"strconv"
	"unsafe"

	"github.com/quiniela/quiniela/messages"
)

// The course's store helpers (store_bets, load_bets, has_won), in Go, with
// their semantics kept: bets.csv has one row a bet, columns
// agency,first_name,last_name,document,birthdate,number, no header, quoted
// only where CSV needs it.

// WinningNumber is the simulated draw's winning number.
const WinningNumber = 7574

// HasWon reports whether bet wins the draw.
func HasWon(bet messages.Bet) bool { return bet.Number == WinningNumber }

// StoreBets appends bets as rows of bets.csv to w, in one write. Like the
// course's store_bets it is not safe for concurrent use.
func StoreBets(w io.Writer, bets []messages.Bet) error {
	_, err := w.Write(RowsFrom(1, bets).Data)
	return err
}

// Rows are a batch's bets as bets.csv stores them, a row each (what
// StoreBets writes), and how many bets they are. The central makes them
// from a batch's payload in one pass (messages.DecodeRows), never building
// the bets.
type Rows struct {
	Data  []byte
	Bets  int
	Lines messages.LineSet // the agency file's line of each row, in order
}

// RowsFrom is bets as Rows, from the agency file's lines first, first+1, …
func RowsFrom(first uint64, bets []messages.Bet) Rows {
	data := make([]byte, 0, 64*len(bets)) // a row is about 50 bytes
	for _, b := range bets {
		data = strconv.AppendInt(data, int64(b.Agency), 10)
		data = append(data, ',')
		data = b.AppendCSV(data)
	}
	r := Rows{Data: data, Bets: len(bets)}
	if len(bets) > 0 {
		r.Lines = messages.LineSet{{First: first, Last: first + uint64(len(bets)) - 1}}
	}
	return r
}

// LoadBets streams the bets stored in the file at path, in the order stored,
// never holding more than one row in memory. A bad row ends the stream with
// an error naming its line.
func LoadBets(path string) iter.Seq2[messages.Bet, error] {
	return func(yield func(messages.Bet, error) bool) {
		bets, err := OpenBetsFile(path)
		if err != nil {
			yield(messages.Bet{}, fmt.Errorf("loading bets from %s: %w", path, err))
			return
		}
		defer bets.Close()
		loadRange(bets, 0, bets.Size(), nil)(yield)
	}
}

// Bets are the rows a store holds, in bets.csv's format and the order
// stored, opened for reading at any offset: the draw scans ranges of them
// in parallel. Size is fixed when they are opened.
type Bets interface {
	io.ReaderAt
	Size() int64
	Name() string // for errors: the file, or what stands for it
	Close() error
}

// betsFile is a bets file as Bets.
type betsFile struct {
	*os.File
	size int64
}

func (f betsFile) Size() int64 { return f.size }

// OpenBetsFile opens the bets file at path as Bets, of the size it has now.
func OpenBetsFile(path string) (Bets, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	info, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	return betsFile{File: f, size: info.Size()}, nil
}

// loadRange streams the bets of the rows that start in [from, to) of bets;
// from must be where a row starts. If keep is not nil, rows it refuses are
// passed over unparsed (and not yielded).
func loadRange(bets Bets, from, to int64, keep func(row string) bool) iter.Seq2[messages.Bet, error] {
	return func(yield func(messages.Bet, error) bool) {
		fail := func(err error) { yield(messages.Bet{}, fmt.Errorf("loading bets from %s: %w", bets.Name(), err)) }
		r := bufio.NewReaderSize(io.NewSectionReader(bets, from, bets.Size()-from), 256<<10)
		var fields []string
		for line, pos := 1, from; pos < to; line++ {
			where := func() string {
				if from == 0 {
					return fmt.Sprintf("line %d", line)
				}
				return fmt.Sprintf("row at byte %d", pos)
			}
			row, err := r.ReadSlice('\n')
			if err == io.EOF && len(row) == 0 {
				return
			}
			if err != nil && err != io.EOF {
				fail(fmt.Errorf("%s: %w", where(), err))
				return
			}
			pos += int64(len(row))
			row = bytes.TrimSuffix(bytes.TrimSuffix(row, []byte{'\n'}), []byte{'\r'})
			if keep != nil && !keep(unsafeString(row)) {
				continue
			}
			text := string(row)
			var bet messages.Bet
			fields, bet, err = ParseStoredRow(fields[:0], text)
			if err != nil {
				fail(fmt.Errorf("%s: %w", where(), err))
				return
			}
			if !yield(bet, nil) {
				return
			}
		}
	}
}

// unsafeString views b as a string without copying, for a look that ends
// before b changes.
func unsafeString(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

// ParseStoredRow parses a row of bets.csv: the agency, then a bet. It
// returns fields, grown, for the next row to reuse.
func ParseStoredRow(fields []string, text string) ([]string, messages.Bet, error) {
	fields, err := messages.SplitRow(fields, text)
	if err != nil {
		return fields, messages.Bet{}, err
	}
	if len(fields) != 1+messages.Fields {
		return fields, messages.Bet{}, fmt.Errorf("%d fields, want %d", len(fields), 1+messages.Fields)
	}
	agency, err := messages.ParseAgency(fields[0])
	if err != nil {
		return fields, messages.Bet{}, err
	}
	bet, err := messages.ParseBet(agency, fields[1:])
	return fields, bet, err
}

// splitRows cuts bets into at most n ranges of about equal size, each
// starting where a row starts, for a parallel scan.
func splitRows(f Bets, n int) []int64 {
	size := f.Size()
	cuts := []int64{0}
	buf := make([]byte, 4096)
	for i := 1; i < n; i++ {
		at := max(size*int64(i)/int64(n), cuts[len(cuts)-1])
		// The row that starts after the first newline at or past at.
		for at < size {
			m, err := f.ReadAt(buf, at)
			if k := bytes.IndexByte(buf[:m], '\n'); k >= 0 {
				at += int64(k) + 1
				break
			}
			if err != nil {
				at = size
				break
			}
			at += int64(m)
		}
		if at < size && at > cuts[len(cuts)-1] {
			cuts = append(cuts, at)
		}
	}
	return append(cuts, size)
}

// agencyRows calls fn with each row of agency in bets, in order, LF
// included, until fn returns false. A last row without its LF is another
// agency's being written, or a torn one: it is passed over.
func agencyRows(bets Bets, agency int, fn func(row []byte) bool) error {
	prefix := strconv.AppendInt(nil, int64(agency), 10)
	prefix = append(prefix, ',')
	r := bufio.NewReaderSize(io.NewSectionReader(bets, 0, bets.Size()), 256<<10)
	for {
		row, err := r.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			for err == bufio.ErrBufferFull { // no bet is that long: not one of ours
				_, err = r.ReadSlice('\n')
			}
			continue
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading %s: %w", bets.Name(), err)
		}
		if bytes.HasPrefix(row, prefix) && !fn(row) {
			return nil
		}
	}
}
