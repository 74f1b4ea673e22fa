package harness

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// AgencyFile is an agency's bets file, agency-<ID>.csv.
type AgencyFile struct {
	ID   int
	Path string
}

// agencyFileName matches agency-N.csv; a leading zero is not matched, so
// agency-01.csv cannot pose as a second agency 1.
var agencyFileName = regexp.MustCompile(`^agency-([1-9][0-9]{0,8})\.csv$`)

// errNoAgencyFiles is returned (wrapped) when dir holds no agency file.
var errNoAgencyFiles = errors.New("no agency files")

// FindAgencyFiles finds the agency-N.csv files of dir, sorted by N. The
// central draws once agencies 1..K are done, so the files must be numbered
// 1..K without gaps: a gap would make it wait forever.
func FindAgencyFiles(dir string) ([]AgencyFile, error) {
	entries, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("looking for agency files: %w", err)
	}
	var files []AgencyFile
	for _, e := range entries {
		m := agencyFileName.FindStringSubmatch(e.Name())
		if m == nil || e.IsDir() {
			continue
		}
		id, _ := strconv.Atoi(m[1]) // the pattern bounds it to 9 digits
		files = append(files, AgencyFile{ID: id, Path: filepath.Join(dir, e.Name())})
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("%w (agency-1.csv, agency-2.csv, ...) in %s: run `make data` to generate them, or put the course's files there", errNoAgencyFiles, dir)
	}
	slices.SortFunc(files, func(a, b AgencyFile) int { return a.ID - b.ID })
	if first, total := missingIDs(files, 10); total > 0 {
		return nil, fmt.Errorf("agency files in %s must be numbered 1..%d without gaps: missing %s",
			dir, files[len(files)-1].ID, describeMissing(first, total))
	}
	return files, nil
}

// missingIDs returns the first limit numbers of 1..max(ID) without a file
// and how many there are in all; files are sorted by ID, and IDs are unique
// (one name per number).
func missingIDs(files []AgencyFile, limit int) (first []int, total int) {
	total = files[len(files)-1].ID - len(files)
	next := 1
	for _, f := range files {
		for ; next < f.ID && len(first) < limit; next++ {
			first = append(first, next)
		}
		next = f.ID + 1
	}
	return first, total
}

// describeMissing renders "agency-2.csv, agency-4.csv", and "and N more"
// when total is more than listed: a huge gap is told by its size.
func describeMissing(first []int, total int) string {
	names := make([]string, len(first))
	for i, id := range first {
		names[i] = fmt.Sprintf("agency-%d.csv", id)
	}
	s := strings.Join(names, ", ")
	if more := total - len(first); more > 0 {
		s += fmt.Sprintf(" and %d more", more)
	}
	return s
}

// CountBets counts the bets of the files: their non-blank lines, as the
// agency sends every line but blank ones (an invalid line makes it exit 3,
// which the tools report on their own).
func CountBets(files []AgencyFile) (int, error) {
	total := 0
	for _, f := range files {
		n, err := countLines(f.Path, true)
		if err != nil {
			return 0, err
		}
		total += n
	}
	return total, nil
}

// CountRows counts the rows of the central's bets file: one line a bet (no
// field may hold a line break, so a CSV record is one line).
func CountRows(path string) (int, error) {
	return countLines(path, false)
}

// countLines counts the lines of the file at path, a last line without a
// newline included; with skipBlank, empty lines (after the CR of a CRLF)
// are not counted.
func countLines(path string, skipBlank bool) (int, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, fmt.Errorf("counting lines: %w", err)
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 256<<10)
	n := 0
	blank := true // the current line has nothing yet but maybe a CR
	for {
		chunk, err := r.ReadSlice('\n')
		if len(chunk) > 0 {
			body := bytes.TrimSuffix(bytes.TrimSuffix(chunk, []byte{'\n'}), []byte{'\r'})
			blank = blank && len(body) == 0
			if chunk[len(chunk)-1] == '\n' {
				if !blank || !skipBlank {
					n++
				}
				blank = true
			}
		}
		switch {
		case errors.Is(err, bufio.ErrBufferFull):
			continue // a line longer than the buffer: read on
		case err == io.EOF:
			if !blank || (!skipBlank && len(chunk) > 0) {
				n++ // a last line without a newline
			}
			return n, nil
		case err != nil:
			return 0, fmt.Errorf("counting lines of %s: %w", path, err)
		}
	}
}
