package agency

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	"github.com/quiniela/quiniela/messages"
)

// maxLineBytes bounds a line of an agency file. A valid row is far shorter
// (messages' field limits); a longer line is reported and skipped without
// being held in memory.
const maxLineBytes = 4096

// BetFile streams the bets of an agency file, one line at a time, so a
// file of any size takes the same memory. Each line is one record: a stray
// quote cannot swallow the lines after it, as it would in a multi-line CSV
// record, since no field of a bet may hold a line break.
type BetFile struct {
	path string
	f    *os.File
	r    *bufio.Reader
	line int
}

// InvalidRowError is a line of an agency file that is not a valid bet.
type InvalidRowError struct {
	Path   string
	Line   int
	Reason error
}

func (e *InvalidRowError) Error() string { return fmt.Sprintf("%s:%d: %v", e.Path, e.Line, e.Reason) }

// OpenBetFile opens the agency file at path.
func OpenBetFile(path string, agency int) (*BetFile, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrPermission) {
		// In Docker the agency runs as uid 65532, which reads a bind-mounted
		// file as "others" (deploy/README.md).
		return nil, fmt.Errorf("opening bets of agency %d: %w: this process runs as uid %d, gid %d, which must be able to read the file (and search its folders): chmod o+r it, or chown it to that user",
			agency, err, os.Getuid(), os.Getgid())
	}
	if err != nil {
		return nil, fmt.Errorf("opening bets of agency %d: %w", agency, err)
	}
	r := bufio.NewReaderSize(f, 64<<10)
	if bom, _ := r.Peek(3); bytes.Equal(bom, []byte("\xef\xbb\xbf")) {
		r.Discard(3) // a UTF-8 BOM, as some spreadsheets write
	}
	return &BetFile{path: path, f: f, r: r}, nil
}

// Next appends the next bet to dst as its CSV row, as the encoder takes it
// (messages.AppendBetCSV), with no Bet built. It returns an
// *InvalidRowError for a line that is not a valid bet (the caller reports it
// and goes on), and io.EOF at the end. Blank lines are skipped.
func (b *BetFile) Next(dst []byte) ([]byte, error) {
	for {
		line, err := b.readLine()
		if err != nil {
			return dst, err
		}
		if len(line) == 0 {
			continue
		}
		if dst, err = messages.AppendBetCSV(dst, line); err != nil {
			return dst, &InvalidRowError{Path: b.path, Line: b.line, Reason: err}
		}
		return dst, nil
	}
}

// errLineTooLong marks a line over maxLineBytes.
var errLineTooLong = fmt.Errorf("line longer than %d bytes: no bet is that long", maxLineBytes)

// readLine returns the next line without its LF or CRLF. The slice is valid
// until the next call.
func (b *BetFile) readLine() ([]byte, error) {
	b.line++
	line, err := b.r.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) || (err == nil && len(line) > maxLineBytes) {
		for errors.Is(err, bufio.ErrBufferFull) { // skip the rest of the line
			_, err = b.r.ReadSlice('\n')
		}
		if err != nil && err != io.EOF {
			return nil, fmt.Errorf("reading %s: %w", b.path, err)
		}
		return nil, &InvalidRowError{Path: b.path, Line: b.line, Reason: errLineTooLong}
	}
	if err == io.EOF && len(line) > 0 {
		err = nil // a last line without a newline
	}
	if err == io.EOF {
		return nil, io.EOF
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", b.path, err)
	}
	line = bytes.TrimSuffix(line, []byte{'\n'})
	return bytes.TrimSuffix(line, []byte{'\r'}), nil
}

// Line is the line number of the last line read.
func (b *BetFile) Line() int { return b.line }

// Close closes the file.
func (b *BetFile) Close() error { return b.f.Close() }
