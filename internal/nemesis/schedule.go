//go:build linux

package nemesis

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"syscall"
	"time"
)

// Kind is a kind of fault.
type Kind string

// The faults. Every one heals: a cut is undone, a paused process continued,
// a killed one restarted.
const (
	IsolateCentral Kind = "isolate-central" // the active central cut from every node
	IsolateNode    Kind = "isolate-node"    // the active central's node cut from the other nodes (its clients still reach it), or from everyone
	SplitLeader    Kind = "split-leader"    // the stream's leader alone | the two other nodes
	CutAgencies    Kind = "cut-agencies"    // the agencies cut from one node (those connected to it wait on it)
	FlakyLink      Kind = "flaky-link"      // a node's or a central's link: packets lost at random, the rest slowed by a token bucket
	PauseNode      Kind = "pause-node"      // SIGSTOP … SIGCONT
	PauseCentral   Kind = "pause-central"
	KillNode       Kind = "kill-node" // kill -9, restarted on its store
	KillCentral    Kind = "kill-central"
	KillAgency     Kind = "kill-agency" // kill -9 of an agency, started again on its file
)

// Kinds is every kind of fault, in a fixed order.
var Kinds = []Kind{IsolateCentral, IsolateNode, SplitLeader, CutAgencies, FlakyLink, PauseNode, PauseCentral, KillNode, KillCentral, KillAgency}

// drawKinds are those played at the draw: on the central drawing or on
// what it stands on.
var drawKinds = []Kind{IsolateCentral, SplitLeader, PauseCentral, KillCentral, KillNode, IsolateNode}

// Fault is one fault of a schedule. Its target is a role resolved when it
// is played (the active central, its node, the stream's leader), or
// picked by Pick among the candidates then.
type Fault struct {
	Kind   Kind
	Gap    time.Duration // quiet time before it
	Hold   time.Duration // how long it lasts before it heals
	AtDraw bool          // played when the active central starts the draw
	Pick   int           // which candidate, modulo their number (standby or active, which node …)
	Loss   float64       // flaky-link: drop probability
	Kbit   int           // flaky-link: the token bucket's rate
	Wipe   bool          // kill-central: restarted on an empty folder
}

func (f Fault) String() string {
	s := fmt.Sprintf("%s hold=%v", f.Kind, f.Hold.Round(time.Millisecond))
	if f.Kind == FlakyLink {
		s += fmt.Sprintf(" loss=%.0f%% rate=%dkbit", f.Loss*100, f.Kbit)
	}
	if f.Wipe {
		s += " wipe"
	}
	if f.AtDraw {
		s += " at-draw"
	}
	return s
}

// Plan is a seeded schedule: n faults of the given kinds (each used once
// before any is used again, in a seeded order), then one at the draw. The
// same seed gives the same schedule; when each fault lands in the run
// depends on the machine's speed.
func Plan(seed uint64, n int, kinds []Kind) []Fault {
	r := rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))
	var order []Kind
	for len(order) < n {
		k := slices.Clone(kinds)
		r.Shuffle(len(k), func(i, j int) { k[i], k[j] = k[j], k[i] })
		order = append(order, k...)
	}
	var plan []Fault
	for _, k := range order[:n] {
		plan = append(plan, fault(r, k))
	}
	f := fault(r, drawKinds[r.IntN(len(drawKinds))])
	f.AtDraw, f.Gap = true, 0
	return append(plan, f)
}

func fault(r *rand.Rand, k Kind) Fault {
	ms := func(lo, hi int) time.Duration { return time.Duration(lo+r.IntN(hi-lo+1)) * time.Millisecond }
	f := Fault{Kind: k, Gap: ms(300, 2000), Pick: r.IntN(1 << 16)}
	switch k {
	case IsolateCentral, IsolateNode, SplitLeader, CutAgencies:
		f.Hold = ms(1000, 6000) // around the 2 s lease: shorter and longer
	case FlakyLink:
		f.Hold = ms(3000, 8000)
		f.Loss = 0.02 + 0.08*r.Float64()
		f.Kbit = 256 << r.IntN(4)
	case PauseNode, PauseCentral:
		f.Hold = ms(500, 5000)
	case KillNode, KillCentral, KillAgency:
		f.Hold = ms(200, 4000) // down this long, then restarted
		f.Wipe = k == KillCentral && r.IntN(3) == 0
	}
	return f
}

// ParseKinds reads a comma-separated list of kinds ("" or "all": every one).
func ParseKinds(s string) ([]Kind, error) {
	if s == "" || s == "all" {
		return Kinds, nil
	}
	var out []Kind
	for _, name := range strings.Split(s, ",") {
		k := Kind(strings.TrimSpace(name))
		if !slices.Contains(Kinds, k) {
			return nil, fmt.Errorf("no fault kind %q: kinds are %v", k, Kinds)
		}
		out = append(out, k)
	}
	return out, nil
}

// Played is a fault as played: on what, when, and whether it could be.
type Played struct {
	Fault
	Target  string
	At      time.Time
	Healed  time.Time
	Skipped string // why it could not be played (e.g. no active central then)
}

// play applies f and returns its heal.
func (c *Cluster) play(ctx context.Context, f Fault, obs func() (string, error)) (p Played, heal func() error) {
	p = Played{Fault: f, At: time.Now()}
	active := c.Active()
	others := func(x string, all []string) []string {
		var out []string
		for _, n := range all {
			if n != x {
				out = append(out, n)
			}
		}
		return out
	}
	pickCentral := func() string {
		if f.Pick%3 != 0 && active != "" { // the active one, two times in three
			return active
		}
		return centralNames[f.Pick%len(centralNames)]
	}
	healNet := func() error { return c.lab.Heal() }
	switch f.Kind {
	case IsolateCentral:
		if active == "" {
			p.Skipped = "no active central"
			return p, nil
		}
		p.Target = active
		return p, c.netFault(c.lab.Partition([]string{active}, nodeNames), healNet)
	case IsolateNode:
		node := c.NodeOfURL(c.Central(orFirst(active)).Log.URL())
		if node == "" {
			p.Skipped = "the active central's node is unknown"
			return p, nil
		}
		p.Target = node
		if f.Pick%2 == 1 {
			// From everyone: its clients too, which wait or move on.
			p.Target += " (from all)"
			return p, c.netFault(c.lab.Partition([]string{node}, others(node, c.lab.order)), healNet)
		}
		return p, c.netFault(c.lab.Partition([]string{node}, others(node, nodeNames)), healNet)
	case SplitLeader:
		leader, err := obs()
		if err != nil {
			p.Skipped = "stream leader unknown: " + err.Error()
			return p, nil
		}
		p.Target = leader
		return p, c.netFault(c.lab.Partition([]string{leader}, others(leader, nodeNames)), healNet)
	case CutAgencies:
		p.Target = nodeNames[f.Pick%len(nodeNames)]
		return p, c.netFault(c.lab.Partition([]string{agenciesMember}, []string{p.Target}), healNet)
	case FlakyLink:
		all := append(append([]string{}, nodeNames...), centralNames...)
		p.Target = all[f.Pick%len(all)]
		return p, c.netFault(c.lab.Flaky(p.Target, f.Loss, f.Kbit), healNet)
	case PauseNode, PauseCentral:
		p.Target = nodeNames[f.Pick%len(nodeNames)]
		if f.Kind == PauseCentral {
			p.Target = pickCentral()
		}
		if err := c.Signal(p.Target, syscall.SIGSTOP); err != nil {
			p.Skipped = err.Error()
			return p, nil
		}
		target := p.Target
		return p, func() error { return c.Signal(target, syscall.SIGCONT) }
	case KillNode:
		p.Target = nodeNames[f.Pick%len(nodeNames)]
		c.KillNode(p.Target)
		target := p.Target
		return p, func() error { return c.StartNode(ctx, target) }
	case KillCentral:
		p.Target = pickCentral()
		c.KillCentral(p.Target)
		target := p.Target
		return p, func() error { return c.StartCentral(target, f.Wipe) }
	case KillAgency:
		ags := c.Agencies()
		var running []*AgencyProc
		for _, a := range ags {
			if !a.Proc.Exited() {
				running = append(running, a)
			}
		}
		if len(running) == 0 {
			p.Skipped = "no agency running"
			return p, nil
		}
		a := running[f.Pick%len(running)]
		p.Target = fmt.Sprintf("agency-%d", a.ID)
		c.KillAgency(a.ID)
		index := slices.Index(ags, a)
		return p, func() error { return c.StartAgency(a.ID, index) }
	}
	p.Skipped = "unknown kind"
	return p, nil
}

func (c *Cluster) netFault(err error, heal func() error) func() error {
	if err != nil {
		c.event("applying a network fault: %v", err)
	}
	return heal
}

func orFirst(name string) string {
	if name == "" {
		return centralNames[0]
	}
	return name
}
