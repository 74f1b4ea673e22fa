// Package logline writes and reads the operation lines that every process of
// quiniela logs, in the course's format:
//
//	2026-11-24T08:00:00.123Z INFO action: apuesta_recibida | result: success | cantidad: 94
//
// It is a slog.Handler, so a line is a plain slog call whose message is the
// action and whose attributes are the fields:
//
//	log.Info("apuesta_recibida", "cantidad", 94)   // result: success
//	log.Error("apuesta_recibida", "cantidad", 3)   // result: fail
//	log.Info("reintentar", "result", logline.InProgress, "attempt", 2)
//
// The result is the "result" attribute if there is one, else success at
// DEBUG and INFO and fail at WARN and ERROR. One format for every line lets
// one parser (Parse) serve the tests, the local runner and the benchmark.
package logline

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"unicode/utf8"
)

// Results an operation line can report.
const (
	Success    = "success"
	Fail       = "fail"
	InProgress = "in_progress"
)

// New returns a logger that writes operation lines to w at the given level
// ("DEBUG", "INFO", "WARN", "ERROR"; case-insensitive).
func New(w io.Writer, level string) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log level %q: want DEBUG, INFO, WARN or ERROR", level)
	}
	return slog.New(&handler{w: w, mu: &sync.Mutex{}, level: lvl}), nil
}

// MaxValueBytes bounds one value of a line: a peer's 2 kB header does not
// become a 2 kB log line.
const MaxValueBytes = 256

// appendField appends " | key: value" with the value escaped, so that no
// value, whoever sent it, can end its field or its line: "|" becomes
// "\x7c", a backslash "\\", control bytes and invalid UTF-8 "\xNN" ("\n",
// "\r", "\t" for those), C1 controls "\u00NN", and past MaxValueBytes it is
// cut with "…". So no "|" a peer sent reaches a line, and
// "| action: sorteo | result: success" cannot be forged into one.
func appendField(buf []byte, key, value string) []byte {
	buf = append(buf, " | "...)
	buf = appendEscaped(buf, key)
	buf = append(buf, ": "...)
	return appendEscaped(buf, value)
}

func appendEscaped(buf []byte, s string) []byte {
	const hex = "0123456789abcdef"
	start := len(buf)
	for i := 0; i < len(s); {
		if len(buf)-start >= MaxValueBytes {
			return append(buf, "…"...)
		}
		c := s[i]
		if c >= 0x20 && c < 0x7f {
			switch c {
			case '|':
				buf = append(buf, `\x7c`...)
			case '\\':
				buf = append(buf, `\\`...)
			default:
				buf = append(buf, c)
			}
			i++
			continue
		}
		if c >= utf8.RuneSelf {
			if r, size := utf8.DecodeRuneInString(s[i:]); r != utf8.RuneError || size > 1 {
				if r >= 0x80 && r < 0xa0 { // C1 controls
					buf = append(buf, `\u00`...)
					buf = append(buf, hex[r>>4], hex[r&0xf])
				} else {
					buf = append(buf, s[i:i+size]...)
				}
				i += size
				continue
			}
		}
		switch c {
		case '\n':
			buf = append(buf, `\n`...)
		case '\r':
			buf = append(buf, `\r`...)
		case '\t':
			buf = append(buf, `\t`...)
		default:
			buf = append(buf, '\\', 'x', hex[c>>4], hex[c&0xf])
		}
		i++
	}
	return buf
}

// Line is a parsed operation line.
type Line struct {
	Action string
	Result string
	Fields map[string]string // the key: value pairs after result, in any order
	Keys   []string          // the keys of Fields, in the order logged
}

// Parse finds an operation line in text (any prefix before "action: " is
// ignored). ok is false when text holds no operation line.
func Parse(text string) (line Line, ok bool) {
	i := strings.Index(text, "action: ")
	if i < 0 {
		return Line{}, false
	}
	parts := strings.Split(strings.TrimRight(text[i:], "\r\n"), " | ")
	line.Fields = make(map[string]string, len(parts))
	for n, p := range parts {
		k, v, found := strings.Cut(p, ": ")
		if !found {
			return Line{}, false
		}
		switch {
		case n == 0 && k == "action":
			line.Action = v
		case n == 1 && k == "result":
			line.Result = v
		case n > 1:
			line.Fields[k] = v
			line.Keys = append(line.Keys, k)
		default:
			return Line{}, false
		}
	}
	return line, line.Result != ""
}

// handler prints "TIME LEVEL action: MESSAGE | result: R | k: v ..." on one
// line, values escaped (appendField), so the line keeps the course's exact
// text.
type handler struct {
	w     io.Writer
	mu    *sync.Mutex
	level slog.Level
	attrs []slog.Attr
}

func (h *handler) Enabled(_ context.Context, l slog.Level) bool { return l >= h.level }

func (h *handler) Handle(_ context.Context, r slog.Record) error {
	result := Success
	if r.Level >= slog.LevelWarn {
		result = Fail
	}
	findResult := func(a slog.Attr) bool {
		if a.Key == "result" {
			result = a.Value.Resolve().String()
			return false
		}
		return true
	}
	r.Attrs(findResult)
	buf := make([]byte, 0, 128)
	buf = r.Time.UTC().AppendFormat(buf, "2006-01-02T15:04:05.000Z07:00")
	buf = append(buf, ' ')
	buf = append(buf, r.Level.String()...)
	buf = append(buf, " action: "...)
	buf = appendEscaped(buf, r.Message)
	buf = append(buf, " | result: "...)
	buf = appendEscaped(buf, result)
	appendAttr := func(a slog.Attr) bool {
		if a.Key != "result" {
			buf = appendField(buf, a.Key, a.Value.Resolve().String())
		}
		return true
	}
	for _, a := range h.attrs {
		appendAttr(a)
	}
	r.Attrs(appendAttr)
	buf = append(buf, '\n')
	h.mu.Lock()
	defer h.mu.Unlock()
	_, err := h.w.Write(buf)
	return err
}

func (h *handler) WithAttrs(attrs []slog.Attr) slog.Handler {
	h2 := *h
	h2.attrs = append(append([]slog.Attr(nil), h.attrs...), attrs...)
	return &h2
}

// WithGroup is not used by quiniela; groups are flattened.
func (h *handler) WithGroup(string) slog.Handler { return h }

var _ slog.Handler = (*handler)(nil)
