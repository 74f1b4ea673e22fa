package harness

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"sync"
)

// Sink writes the lines of many processes to one writer, each prefixed
// with its process name padded to a common width so the bars align:
//
//	central  | 2026-11-24T08:09:59.271Z INFO action: central_lista | ...
//	agency-3 | 2026-11-24T08:09:59.301Z INFO action: resumen | ...
//
// Each line is one Write under one mutex, so lines of different processes
// never interleave mid-line.
type Sink struct {
	mu    sync.Mutex
	w     io.Writer
	width int
}

// NewSink returns a Sink writing to w, padding prefixes to the longest of
// names (a longer name later is written unpadded, never cut).
func NewSink(w io.Writer, names ...string) *Sink {
	s := &Sink{w: w}
	for _, n := range names {
		s.width = max(s.width, len(n))
	}
	return s
}

// writeLine writes one line of the process name; line must not end in a newline.
func (s *Sink) writeLine(name, line string) {
	buf := make([]byte, 0, s.width+len(line)+4)
	buf = append(buf, name...)
	for i := len(name); i < s.width; i++ {
		buf = append(buf, ' ')
	}
	buf = append(buf, " | "...)
	buf = append(buf, line...)
	buf = append(buf, '\n')
	s.mu.Lock()
	defer s.mu.Unlock()
	s.w.Write(buf) // a terminal or log file that fails has nowhere to report to
}

// Printf writes a formatted message as lines of name, one per line of text.
func (s *Sink) Printf(name, format string, args ...any) {
	text := strings.TrimRight(fmt.Sprintf(format, args...), "\n")
	for _, line := range strings.Split(text, "\n") {
		s.writeLine(name, line)
	}
}

// maxLine bounds a line held in memory: a process that writes megabytes
// without a newline gets them shown in pieces rather than buffered whole.
const maxLine = 64 << 10

// lineWriter is an io.Writer that cuts what is written into lines and
// emits each whole line, without its LF or CRLF. A last partial line is
// emitted by flush.
type lineWriter struct {
	buf  []byte
	emit func(line string)
}

func (lw *lineWriter) Write(p []byte) (int, error) {
	lw.buf = append(lw.buf, p...)
	rest := lw.buf
	for {
		i := bytes.IndexByte(rest, '\n')
		if i < 0 {
			break
		}
		lw.emit(string(bytes.TrimSuffix(rest[:i], []byte{'\r'})))
		rest = rest[i+1:]
	}
	for len(rest) >= maxLine {
		lw.emit(string(rest[:maxLine]))
		rest = rest[maxLine:]
	}
	lw.buf = lw.buf[:copy(lw.buf, rest)] // keep the partial line, reuse the buffer
	return len(p), nil
}

// flush emits the partial line left, if any.
func (lw *lineWriter) flush() {
	if len(lw.buf) > 0 {
		lw.emit(string(bytes.TrimSuffix(lw.buf, []byte{'\r'})))
		lw.buf = lw.buf[:0]
	}
}
