package harness

import (
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/quiniela/quiniela/internal/logline"
	"github.com/quiniela/quiniela/internal/peakrss"
)

// Resumen is an agency's closing line, action: resumen.
type Resumen struct {
	Agency, Bets, Batches, Skipped, Resent, Winners int
	RTTP50ms, RTTP99ms, Seconds                     float64
	PeakRSSKiB                                      int64 // 0: not logged (not Linux)
	// The agency's critical path, ms since it started (Path: whether it
	// logged one).
	Path                                                  bool
	ConnectedMs, FirstAckMs, LastAckMs, DoneMs, WinnersMs float64
}

// parseResumen reads a resumen line's fields; a missing or malformed one is
// an error, so a change of the agency's format is noticed, not read as 0.
// Only the peak RSS may be missing: the agency knows it on Linux only.
func parseResumen(l logline.Line) (Resumen, error) {
	var r Resumen
	var errs []error
	num := func(key string, dst *int) {
		v, err := strconv.Atoi(l.Fields[key])
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %q", key, l.Fields[key]))
		}
		*dst = v
	}
	float := func(key string, dst *float64) {
		v, err := strconv.ParseFloat(l.Fields[key], 64)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %q", key, l.Fields[key]))
		}
		*dst = v
	}
	num("agency", &r.Agency)
	num("bets", &r.Bets)
	num("batches", &r.Batches)
	num("skipped", &r.Skipped)
	num("resent", &r.Resent)
	num("winners", &r.Winners)
	float("rtt_p50_ms", &r.RTTP50ms)
	float("rtt_p99_ms", &r.RTTP99ms)
	float("seconds", &r.Seconds)
	if _, ok := l.Fields["winners_ms"]; ok {
		r.Path = true
		float("connected_ms", &r.ConnectedMs)
		float("first_ack_ms", &r.FirstAckMs)
		float("last_ack_ms", &r.LastAckMs)
		float("done_ms", &r.DoneMs)
		float("winners_ms", &r.WinnersMs)
	}
	if _, ok := l.Fields[peakrss.Key]; ok {
		var kib int
		num(peakrss.Key, &kib)
		r.PeakRSSKiB = int64(kib)
	}
	if len(errs) > 0 {
		return r, fmt.Errorf("resumen line: bad fields %v", errs)
	}
	return r, nil
}

// AgencyLog follows an agency's stdout: its resumen and its last failure.
// Observe is called from the output goroutine, the getters from others.
type AgencyLog struct {
	mu        sync.Mutex
	resumen   *Resumen
	badLine   error  // a resumen line that did not parse
	lastError string // the error of the last fail line
}

// Observe takes one line of the agency's stdout.
func (a *AgencyLog) Observe(text string) {
	l, ok := logline.Parse(text)
	if !ok {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	switch {
	case l.Action == "resumen" && l.Result == logline.Success:
		r, err := parseResumen(l)
		if err != nil {
			a.badLine = err
			return
		}
		a.resumen = &r
	case l.Result == logline.Fail:
		a.lastError = l.Action + ": " + l.Fields["error"]
	}
}

// Resumen returns the agency's resumen; an error says why there is none.
func (a *AgencyLog) Resumen() (Resumen, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	switch {
	case a.resumen != nil:
		return *a.resumen, nil
	case a.badLine != nil:
		return Resumen{}, a.badLine
	default:
		return Resumen{}, fmt.Errorf("no resumen line")
	}
}

// LastError is the error of the agency's last fail line, or "".
func (a *AgencyLog) LastError() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.lastError
}

// CentralLog follows the central's stdout: when it is ready and at which
// NATS URL, how many times it drew and how long the draw took, and its
// fsyncs and peak RSS at shutdown.
type CentralLog struct {
	ready     chan struct{} // closed at the first central_lista
	mu        sync.Mutex
	url       string
	sorteos   int
	fsyncs    int
	hasFsyncs bool
	peakKiB   int // 0: not logged
	lastError string
	stepDowns int       // central_activa fail: a term that ended, or lapsed before it began
	allDoneAt time.Time // the first agencia_terminada that says done: K/K
	sorteoAt  time.Time // the first successful sorteo
}

// newCentralLog returns an empty CentralLog.
func newCentralLog() *CentralLog { return &CentralLog{ready: make(chan struct{})} }

// Observe takes one line of the central's stdout.
func (c *CentralLog) Observe(text string) {
	l, ok := logline.Parse(text)
	if !ok {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case l.Action == "central_lista" && l.Result == logline.Success:
		if c.url == "" {
			c.url = l.Fields["nats"]
			close(c.ready)
		}
	case l.Action == "agencia_terminada" && l.Result == logline.Success:
		// The first K/K line, not the last agencia_terminada: two agencies
		// finishing together can both read K/K, and the draw started
		// before either logged.
		if done, total, ok := parseDone(l.Fields["done"]); ok && done == total && c.allDoneAt.IsZero() {
			c.allDoneAt, _ = LineTime(text)
		}
	case l.Action == "sorteo" && l.Result == logline.Success:
		c.sorteos++
		if c.sorteos == 1 {
			c.sorteoAt, _ = LineTime(text)
		}
	case l.Action == "cerrar_apuestas" && l.Result == logline.Success:
		c.fsyncs, c.hasFsyncs = atoiOK(l.Fields["fsyncs"])
		c.peakKiB, _ = atoiOK(l.Fields[peakrss.Key])
	case l.Result == logline.Fail:
		c.lastError = l.Action + ": " + l.Fields["error"]
		if l.Action == "central_activa" {
			c.stepDowns++
		}
	}
}

func atoiOK(s string) (int, bool) {
	n, err := strconv.Atoi(s)
	return n, err == nil
}

// parseDone reads agencia_terminada's done field, "3/5".
func parseDone(s string) (done, total int, ok bool) {
	d, t, found := strings.Cut(s, "/")
	if !found {
		return 0, 0, false
	}
	done, okD := atoiOK(d)
	total, okT := atoiOK(t)
	return done, total, okD && okT && total > 0
}

// LineTime reads the timestamp that starts an operation line,
// "2026-11-24T08:54:49.627Z INFO action: ...".
func LineTime(text string) (time.Time, bool) {
	stamp, _, _ := strings.Cut(text, " ")
	t, err := time.Parse(time.RFC3339Nano, stamp)
	return t, err == nil
}

// DrawTime is how long the draw took by the central's own clock: from the
// line saying every agency is done (agencia_terminada with done: K/K) to
// the sorteo line. ok is false unless both were logged with timestamps.
// The timestamps have millisecond resolution, and the central starts the
// draw just before it logs the last agency done, so a draw shorter than
// that logging can come out as 0 but never negative.
func (c *CentralLog) DrawTime() (d time.Duration, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.allDoneAt.IsZero() || c.sorteoAt.IsZero() {
		return 0, false
	}
	return max(0, c.sorteoAt.Sub(c.allDoneAt)), true
}

// readyURL is the NATS URL of the central_lista line, for the agencies.
func (c *CentralLog) readyURL() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.url
}

// Sorteos is how many times the central logged a successful draw.
func (c *CentralLog) Sorteos() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sorteos
}

// Fsyncs is the fsyncs of the cerrar_apuestas line; ok is false without one.
func (c *CentralLog) Fsyncs() (n int, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.fsyncs, c.hasFsyncs
}

// PeakRSSKiB is the peak RSS of the cerrar_apuestas line; ok is false
// without one (not Linux).
func (c *CentralLog) PeakRSSKiB() (kib int64, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return int64(c.peakKiB), c.peakKiB > 0
}

// StepDowns is how many times the central logged central_activa as a
// failure: it stepped down (its lease lost, or its writes fenced), or its
// term lapsed before it could serve.
func (c *CentralLog) StepDowns() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stepDowns
}

// LastError is the error of the central's last fail line, or "".
func (c *CentralLog) LastError() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lastError
}
