//go:build linux

package nemesis

import (
	"sync"
	"time"

	"github.com/quiniela/quiniela/internal/harness"
	"github.com/quiniela/quiniela/internal/logline"
)

// CentralLog is what a central logged over all its lives: when it took and
// lost the lease, its draws, refusals and which node it was on.
type CentralLog struct {
	name string
	mu   sync.Mutex
	// Terms: each activation (central_activa success) and the step-down
	// (central_activa fail, or the end of the life) that ends it.
	terms      []Term
	sorteos    int
	recovered  int
	accepted   int
	refused    int // apuesta_rechazada
	leaseFails int // renovar_lease failures
	waiting    int // central_en_espera lines
	url        string
}

// Term is one activation of a central: from its central_activa success
// line to its step-down line (End zero: still active, or its life ended
// without a line: Killed).
type Term struct {
	Central    string
	Start, End time.Time
	Killed     bool
	Writes     int // stream messages it wrote in this term (filled by the checker)
}

func newCentralLog(name string) *CentralLog { return &CentralLog{name: name} }

// observe takes one stdout line of the central; it returns the parsed line.
func (c *CentralLog) observe(text string) (logline.Line, bool) {
	l, ok := logline.Parse(text)
	if !ok {
		return l, false
	}
	at, _ := harness.LineTime(text)
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case l.Action == "central_activa" && l.Result == logline.Success:
		c.terms = append(c.terms, Term{Central: c.name, Start: at})
	case l.Action == "central_activa" && l.Result == logline.Fail:
		if n := len(c.terms); n > 0 && c.terms[n-1].End.IsZero() {
			c.terms[n-1].End = at
		}
	case l.Action == "sorteo" && l.Result == logline.Success:
		c.sorteos++
	case l.Action == "sorteo_recuperado":
		c.recovered++
	case l.Action == "apuesta_recibida" && l.Result == logline.Success:
		c.accepted++
	case l.Action == "apuesta_rechazada":
		c.refused++
	case l.Action == "renovar_lease" && l.Result == logline.Fail:
		c.leaseFails++
	case l.Action == "central_en_espera":
		c.waiting++
	case l.Action == "central_lista":
		c.url = l.Fields["nats"]
	case l.Action == "nats_reconectado":
		c.url = l.Fields["url"]
	}
	return l, true
}

// lifeEnded closes the open term of a life that ended without a line.
func (c *CentralLog) lifeEnded(at time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if n := len(c.terms); n > 0 && c.terms[n-1].End.IsZero() {
		c.terms[n-1].End, c.terms[n-1].Killed = at, true
	}
	c.url = ""
}

// activeSince is the start of the open term, if there is one.
func (c *CentralLog) activeSince() (time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if n := len(c.terms); n > 0 && c.terms[n-1].End.IsZero() {
		return c.terms[n-1].Start, true
	}
	return time.Time{}, false
}

// Waiting reports whether the central has logged central_en_espera.
func (c *CentralLog) Waiting() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.waiting > 0
}

// URL is the node URL the central last said it is connected to.
func (c *CentralLog) URL() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.url
}

// Summary is the central's counts over all its lives.
type Summary struct {
	Terms                                        []Term
	Sorteos, Recovered, Accepted, Refused, Fails int
}

// Summary returns what the central logged.
func (c *CentralLog) Summary() Summary {
	c.mu.Lock()
	defer c.mu.Unlock()
	return Summary{Terms: append([]Term(nil), c.terms...), Sorteos: c.sorteos, Recovered: c.recovered,
		Accepted: c.accepted, Refused: c.refused, Fails: c.leaseFails}
}

// lineCounter counts an agency's retries over its lives and keeps its
// last winners count.
type lineCounter struct {
	mu       sync.Mutex
	resent   []time.Time // reenviar_lote lines
	retries  []time.Time // reintentar lines
	winners  []string
	failures []string
}

func (a *lineCounter) observe(text string) {
	l, ok := logline.Parse(text)
	if !ok {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	switch {
	case l.Action == "reenviar_lote":
		at, _ := harness.LineTime(text)
		a.resent = append(a.resent, at)
	case l.Action == "reintentar":
		at, _ := harness.LineTime(text)
		a.retries = append(a.retries, at)
	case l.Action == "consulta_ganadores" && l.Result == logline.Success:
		a.winners = append(a.winners, l.Fields["cant_ganadores"])
	case l.Result == logline.Fail:
		a.failures = append(a.failures, l.Action+": "+l.Fields["error"])
	}
}

func (a *lineCounter) counts() (resent, retries []time.Time, winners, failures []string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]time.Time(nil), a.resent...), append([]time.Time(nil), a.retries...), append([]string(nil), a.winners...), append([]string(nil), a.failures...)
}
