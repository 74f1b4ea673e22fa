//go:build linux

package nemesis

import (
	"bytes"
	"encoding/csv"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/quiniela/quiniela/internal/harness"
	"github.com/quiniela/quiniela/messages"
	"github.com/quiniela/quiniela/services/central/lottery"
)

// Limits bound a run's path: an exact end reached through a storm of
// step-downs or resends is a livelock, not a pass. Each is a base plus so
// much per fault played.
type Limits struct {
	Activations, ActivationsPerFault int // central_activa success lines, all centrals
	Refused, RefusedPerFault         int // apuesta_rechazada lines (batches refused by a central)
	Resends, ResendsPerFault         int // agencies' reenviar_lote and reintentar lines
	LeaseTTL                         time.Duration
	AgencyWait                       time.Duration // bound on the agencies' end after the last fault (0: 4 min)
}

// DefaultLimits are the bounds of the tests.
var DefaultLimits = Limits{
	Activations: 2, ActivationsPerFault: 3,
	Refused: 20, RefusedPerFault: 40,
	Resends: 200, ResendsPerFault: 400,
	LeaseTTL: 2 * time.Second,
}

// Report is a run's outcome.
type Report struct {
	Lab                                    string
	Started, FaultsEnded, AgenciesEnded    time.Time
	Played                                 []Played
	Findings                               []string // failures; none: the run passed
	Activations, StepDowns, Refused        int
	Resent, Retries, Bets, Messages, Lives int
	Superseded                             int // batch parts written again by the next central
	LateWrites                             int // writes stored after the next central took the lease, sent before
	Costs                                  []Cost
}

// Cost is what a played fault cost: the time until a central was active
// again when the fault ended a term (0: no takeover), and the agencies'
// resends and retries until the next fault.
type Cost struct {
	Fault           string
	Takeover        time.Duration
	Resends, Retrys int
}

// Failed reports whether the run found anything.
func (r *Report) Failed() bool { return len(r.Findings) > 0 }

func (r *Report) fail(format string, args ...any) {
	r.Findings = append(r.Findings, fmt.Sprintf(format, args...))
}

// String is the report for a log: the faults with their costs, the path's
// counts, and the findings.
func (r *Report) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "lab %s: %d bets, %d stream messages, %d faults played in %v (agencies done %v after the last)\n",
		r.Lab, r.Bets, r.Messages, r.played(), r.FaultsEnded.Sub(r.Started).Round(time.Millisecond), r.AgenciesEnded.Sub(r.FaultsEnded).Round(time.Millisecond))
	for i, p := range r.Played {
		if p.Skipped != "" {
			fmt.Fprintf(&b, "  %-60s skipped: %s\n", p.Fault.String(), p.Skipped)
			continue
		}
		c := r.Costs[i]
		fmt.Fprintf(&b, "  %-60s on %-9s takeover %-8v resends %d retries %d\n", p.Fault.String(), p.Target, c.Takeover.Round(time.Millisecond), c.Resends, c.Retrys)
	}
	fmt.Fprintf(&b, "  path: %d activations, %d step-downs, %d batches refused, %d resent, %d retries, %d process lives, %d batch parts superseded, %d late writes\n",
		r.Activations, r.StepDowns, r.Refused, r.Resent, r.Retries, r.Lives, r.Superseded, r.LateWrites)
	for _, f := range r.Findings {
		fmt.Fprintf(&b, "  FAIL: %s\n", f)
	}
	return b.String()
}

func (r *Report) played() int {
	n := 0
	for _, p := range r.Played {
		if p.Skipped == "" {
			n++
		}
	}
	return n
}

// Check judges a run: its end (each agency its own winners, every bet
// exactly once in the stream and in every central's bets.csv, all
// identical, one draw), its safety (no write accepted from a central after
// another took the lease), and its path (bounded activations, refusals
// and resends, no process exiting on its own).
func Check(c *Cluster, cfg Config, stream []StreamMsg, lim Limits, r *Report) {
	input, winners, err := readInput(cfg.Files)
	if err != nil {
		r.fail("reading the input: %v", err)
		return
	}
	r.Bets = len(input)
	r.Messages = len(stream)
	for _, e := range c.Events() {
		r.fail("%s: %s", e.At.UTC().Format("15:04:05.000"), e.What)
	}

	// Agencies: exit 0, their own winners.
	for _, a := range c.Agencies() {
		resent, retries, got, failures := a.Lines.counts()
		r.Resent += len(resent)
		r.Retries += len(retries)
		r.Lives += a.Lives
		if a.Proc.ExitCode() != 0 {
			r.fail("agency %d exited %s (last failures: %v)", a.ID, a.Proc.Exit(), lastN(failures, 2))
			continue
		}
		want := strconv.Itoa(winners[a.ID])
		if len(got) == 0 || got[len(got)-1] != want {
			r.fail("agency %d: consulta_ganadores said %v, want %s winners", a.ID, got, want)
		}
	}

	checkStream(r, stream, input, cfg.Files)

	// Every central's copy: the input, byte for byte the same as the others'.
	var first []byte
	for i, n := range centralNames {
		path := filepath.Join(c.Central(n).Dir, "bets.csv")
		data, err := os.ReadFile(path)
		if err != nil {
			r.fail("%s's bets.csv: %v", n, err)
			continue
		}
		rows, err := csvRows(bytes.NewReader(data))
		if err != nil {
			r.fail("%s's bets.csv: %v", n, err)
		}
		compare(r, n+"'s bets.csv", input, rows)
		if i == 0 {
			first = data
		} else if !bytes.Equal(first, data) {
			r.fail("%s's bets.csv differs from %s's (%d and %d bytes)", n, centralNames[0], len(data), len(first))
		}
	}

	// The centrals' lives: one draw, their terms, the path.
	sorteos := 0
	var terms []Term
	for _, n := range centralNames {
		cp := c.Central(n)
		s := cp.Log.Summary()
		sorteos += s.Sorteos
		r.Refused += s.Refused
		r.Lives += cp.Lives
		terms = append(terms, s.Terms...)
	}
	slices.SortFunc(terms, func(a, b Term) int { return a.Start.Compare(b.Start) })
	if sorteos != 1 && !(sorteos == 0 && drawnByKilled(stream, terms)) {
		r.fail("sorteo logged %d times over the centrals' lives, want once", sorteos)
	}
	r.Activations = len(terms)
	for _, t := range terms {
		if !t.End.IsZero() && !t.Killed {
			r.StepDowns++
		}
	}
	checkWriters(r, stream, terms, lim.LeaseTTL)

	faults := r.played()
	if max := lim.Activations + lim.ActivationsPerFault*faults; r.Activations > max {
		r.fail("livelock: %d lease activations for %d faults (at most %d)", r.Activations, faults, max)
	}
	if max := lim.Refused + lim.RefusedPerFault*faults; r.Refused > max {
		r.fail("livelock: %d batches refused for %d faults (at most %d)", r.Refused, faults, max)
	}
	if max := lim.Resends + lim.ResendsPerFault*faults; r.Resent+r.Retries > max {
		r.fail("livelock: %d resends and retries for %d faults (at most %d)", r.Resent+r.Retries, faults, max)
	}
	r.Costs = costs(r, c, terms)
}

// checkStream fails unless the stream holds every bet of input once, each
// agency's batches contiguous from 1, then one done each, and one draw. It
// reads the stream as the centrals' copy does: a batch in parts counts once
// its last part is read, and a part 1 starts the batch over (the parts
// that a central which lost the lease left behind, written again by the
// next: counted in r.Superseded); a batch numbered below the agency's next
// adds rows to that earlier batch (an agency run again with fixed rows).
func checkStream(r *Report, stream []StreamMsg, input []string, files []harness.AgencyFile) {
	type pending struct {
		batch uint64
		part  int
		rows  []string
	}
	var streamRows []string
	draws := 0
	next := map[int]uint64{} // each agency's last whole batch
	open := map[int]*pending{}
	dones := map[int]int{}
	for _, m := range stream {
		if strings.HasSuffix(m.Subject, ".draw") {
			draws++
			continue
		}
		agency, _ := strconv.Atoi(m.Header.Get(messages.HeaderAgency))
		if m.Header.Get(messages.HeaderBatches) != "" {
			dones[agency]++
			continue
		}
		if dones[agency] > 0 {
			r.fail("stream message %d: batches of agency %d after its done", m.Seq, agency)
		}
		first, _ := strconv.ParseUint(m.Header.Get(messages.HeaderBatch), 10, 64)
		counts := strings.Split(m.Header.Get(messages.HeaderCounts), ",")
		rows, err := csvRows(bytes.NewReader(m.Data))
		if err != nil {
			r.fail("stream message %d: %v", m.Seq, err)
		}
		if i, n, ok := messagePart(m.Header); ok {
			p := open[agency]
			switch {
			case i == 1:
				if p != nil {
					r.Superseded += p.part
				}
				if want := next[agency] + 1; first != want {
					r.fail("stream message %d: agency %d's batch %d part 1/%d where batch %d was next", m.Seq, agency, first, n, want)
				}
				p = &pending{batch: first}
				open[agency] = p
			case p == nil || p.batch != first || p.part+1 != i:
				r.fail("stream message %d: agency %d's batch %d part %d/%d out of order", m.Seq, agency, first, i, n)
				continue
			}
			p.part = i
			p.rows = append(p.rows, rows...)
			if i == n {
				streamRows = append(streamRows, p.rows...)
				next[agency] = first
				delete(open, agency)
			}
			continue
		}
		if p := open[agency]; p != nil {
			r.fail("stream message %d: agency %d's batch %d after its batch %d left at part %d", m.Seq, agency, first, p.batch, p.part)
			delete(open, agency)
		}
		switch want := next[agency] + 1; {
		case first == want:
			next[agency] = first + uint64(len(counts)) - 1
		case first > want:
			r.fail("stream message %d: agency %d's batch %d where %d was next", m.Seq, agency, first, want)
			next[agency] = first + uint64(len(counts)) - 1
		}
		streamRows = append(streamRows, rows...)
	}
	for agency, p := range open {
		r.fail("the stream ends with agency %d's batch %d at part %d", agency, p.batch, p.part)
	}
	compare(r, "the stream", input, streamRows)
	if draws != 1 {
		r.fail("the stream holds %d draws, want 1", draws)
	}
	for _, f := range files {
		if dones[f.ID] != 1 {
			r.fail("the stream holds %d dones of agency %d, want 1", dones[f.ID], f.ID)
		}
	}
}

// messagePart reads a message's part header, if it has one.
func messagePart(h nats.Header) (i, n int, ok bool) {
	a, b, found := strings.Cut(h.Get(messages.HeaderPart), "/")
	if !found {
		return 0, 0, false
	}
	i, err1 := strconv.Atoi(a)
	n, err2 := strconv.Atoi(b)
	return i, n, err1 == nil && err2 == nil && i >= 1 && i <= n
}

// drawnByKilled reports whether the stream's draw was written by a central
// killed in that term, between its write and its sorteo line: the draw
// happened once, and the one line that would have said so died with it
// (the next central logs sorteo_recuperado).
func drawnByKilled(stream []StreamMsg, terms []Term) bool {
	for _, m := range stream {
		if !strings.HasSuffix(m.Subject, ".draw") {
			continue
		}
		w := m.Header.Get(messages.HeaderWriter)
		for _, t := range terms {
			if t.Central == w && t.Killed && !m.Time.Before(t.Start) && !m.Time.After(t.End) {
				return true
			}
		}
	}
	return false
}

// lateWindow bounds how long after its writer's term ended a write sent
// during the term may be stored: the longest partition of a schedule (8 s)
// and a retransmission.
const lateWindow = 10 * time.Second

// checkWriters fails every stream message accepted from a central after
// another central had taken the lease: a message's time (the stream's,
// when the leader stored it) must fall after its writer's latest
// activation and before any later activation of another central, unless
// its writer's term had ended when it was stored, up to lateWindow before:
// sent during the term (a central writes nothing after) and held in the
// broker by a partition, it is counted in r.LateWrites. An activation
// counts once that central held the lease for real: it wrote,
// or it stayed active a lease's length (a central that logged itself
// active and stepped down at once had already lost the lease: issue 18's
// defect 5, which would otherwise accuse the next holder).
func checkWriters(r *Report, stream []StreamMsg, terms []Term, ttl time.Duration) {
	in := func(t Term, at time.Time) bool {
		return !at.Before(t.Start) && (t.End.IsZero() || !at.After(t.End.Add(ttl)))
	}
	for _, m := range stream {
		w := m.Header.Get(messages.HeaderWriter)
		for i := range terms {
			if terms[i].Central == w && in(terms[i], m.Time) {
				terms[i].Writes++
				break
			}
		}
	}
	real := func(t Term) bool {
		return t.Writes > 0 || t.End.IsZero() || t.End.Sub(t.Start) >= ttl
	}
	for _, m := range stream {
		w := m.Header.Get(messages.HeaderWriter)
		if w == "" {
			r.fail("stream message %d (%s) names no writer", m.Seq, m.Subject)
			continue
		}
		var own *Term
		for i := range terms {
			if terms[i].Central == w && !terms[i].Start.After(m.Time) {
				own = &terms[i]
			}
		}
		if own == nil {
			r.fail("stream message %d (%s) written by %s at %s, before it was ever active", m.Seq, m.Subject, w, stamp(m.Time))
			continue
		}
		for _, t := range terms {
			if t.Central != w && t.Start.After(own.Start) && t.Start.Before(m.Time) && real(t) {
				if !own.End.IsZero() && !m.Time.Before(own.End) && m.Time.Sub(own.End) <= lateWindow {
					// Sent before its term ended (a central writes
					// nothing after), stored late: held in the broker
					// by a partition. The per-subject sequence check
					// keeps the stream exact (README, Fencing).
					r.LateWrites++
					break
				}
				r.fail("stream message %d (%s) accepted from %s at %s, after %s took the lease (active at %s)",
					m.Seq, m.Subject, w, stamp(m.Time), t.Central, stamp(t.Start))
				break
			}
		}
	}
}

// costs measures each played fault: the takeover it caused (from the
// fault to the next activation, if the term open at the fault ended by
// then) and the agencies' resends and retries until the next fault.
func costs(r *Report, c *Cluster, terms []Term) []Cost {
	var resends, retries []time.Time
	for _, a := range c.Agencies() {
		rs, rt, _, _ := a.Lines.counts()
		resends, retries = append(resends, rs...), append(retries, rt...)
	}
	count := func(ts []time.Time, from, to time.Time) int {
		n := 0
		for _, t := range ts {
			if !t.Before(from) && t.Before(to) {
				n++
			}
		}
		return n
	}
	out := make([]Cost, len(r.Played))
	for i, p := range r.Played {
		end := r.AgenciesEnded
		if i+1 < len(r.Played) {
			end = r.Played[i+1].At
		}
		cost := Cost{Fault: string(p.Kind), Resends: count(resends, p.At, end), Retrys: count(retries, p.At, end)}
		var open *Term
		for j := range terms {
			if !terms[j].Start.After(p.At) && (terms[j].End.IsZero() || terms[j].End.After(p.At)) {
				open = &terms[j]
			}
		}
		if open != nil && !open.End.IsZero() && open.End.Before(end) {
			for _, t := range terms {
				if t.Start.After(open.End) || (t.Start.After(p.At) && t.Central != open.Central) {
					cost.Takeover = t.Start.Sub(p.At)
					break
				}
			}
		}
		out[i] = cost
	}
	return out
}

// readInput reads the agencies' files as rows agency,fields… and counts
// each agency's winners by the course's rule (lottery.HasWon).
func readInput(files []harness.AgencyFile) (rows []string, winners map[int]int, err error) {
	winners = map[int]int{}
	for _, f := range files {
		fh, err := os.Open(f.Path)
		if err != nil {
			return nil, nil, err
		}
		r := csv.NewReader(fh)
		r.FieldsPerRecord = -1
		for {
			rec, err := r.Read()
			if err == io.EOF {
				break
			}
			if err != nil {
				fh.Close()
				return nil, nil, fmt.Errorf("%s: %w", f.Path, err)
			}
			bet, err := messages.ParseBet(f.ID, rec)
			if err != nil {
				fh.Close()
				return nil, nil, fmt.Errorf("%s: %w", f.Path, err)
			}
			if lottery.HasWon(bet) {
				winners[f.ID]++
			}
			rows = append(rows, strings.Join(append([]string{strconv.Itoa(f.ID)}, rec...), "\x1f"))
		}
		fh.Close()
	}
	return rows, winners, nil
}

// csvRows reads stored rows (agency,first,last,document,birthdate,number).
func csvRows(r io.Reader) ([]string, error) {
	cr := csv.NewReader(r)
	var rows []string
	for {
		rec, err := cr.Read()
		if err == io.EOF {
			return rows, nil
		}
		if err != nil {
			return rows, err
		}
		rows = append(rows, strings.Join(rec, "\x1f"))
	}
}

// compare fails unless got holds exactly the rows of want, as multisets.
func compare(r *Report, what string, want, got []string) {
	w, g := slices.Clone(want), slices.Clone(got)
	slices.Sort(w)
	slices.Sort(g)
	if slices.Equal(w, g) {
		return
	}
	seen := map[string]int{}
	for _, x := range w {
		seen[x]++
	}
	dup, extra := 0, 0
	for _, x := range g {
		switch {
		case seen[x] > 0:
			seen[x]--
		case slices.Contains(w, x):
			dup++
		default:
			extra++
		}
	}
	missing := 0
	for _, n := range seen {
		missing += n
	}
	r.fail("%s: %d rows for %d bets: %d missing, %d stored twice, %d unknown", what, len(got), len(want), missing, dup, extra)
}

func stamp(t time.Time) string { return t.UTC().Format("15:04:05.000") }

func lastN(s []string, n int) []string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
