//go:build linux

package nemesis

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/quiniela/quiniela/internal/harness"
	"github.com/quiniela/quiniela/internal/logline"
)

// Run plays plan against a whole lottery in the lab: it starts the nodes,
// the active central, the standby and the agencies, plays each fault and
// heals it, waits for the agencies to finish, lets every central's copy
// catch up, stops the centrals with SIGTERM, reads the stream and judges
// it all (Check). The report says what was played and what was found; an
// error is a lab that could not run.
func Run(ctx context.Context, cfg Config, plan []Fault, limits Limits) (*Report, error) {
	c, err := NewCluster(cfg)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	rep := &Report{Lab: c.lab.Suffix, Started: time.Now()}
	drawc := make(chan struct{})
	var drawOnce sync.Once
	c.onLine = func(_ string, l logline.Line) {
		if l.Action == "agencia_terminada" && l.Result == logline.Success && l.Fields["done"] == strconv.Itoa(len(cfg.Files))+"/"+strconv.Itoa(len(cfg.Files)) {
			drawOnce.Do(func() { close(drawc) })
		}
	}
	for _, n := range nodeNames {
		if err := c.StartNode(ctx, n); err != nil {
			return nil, err
		}
	}
	nc, err := c.Observer()
	if err != nil {
		return nil, fmt.Errorf("connecting the observer: %w", err)
	}
	defer nc.Close()
	if err := c.WaitJetStream(ctx, nc); err != nil {
		return nil, err
	}
	if err := c.StartCentral("c1", false); err != nil {
		return nil, err
	}
	if err := c.poll(ctx, "c1 active", func() (bool, error) { return c.Active() == "c1", exitedErr(c, "c1") }); err != nil {
		return nil, err
	}
	if err := c.StartCentral("c2", false); err != nil {
		return nil, err
	}
	if err := c.poll(ctx, "c2 waiting", func() (bool, error) { return c.Central("c2").Log.Waiting(), exitedErr(c, "c2") }); err != nil {
		return nil, err
	}
	c.logf("cluster up: nodes %v, c1 active, c2 standby; %d agencies; schedule: %v", nodeNames, len(cfg.Files), plan)
	if err := c.StartAgencies(); err != nil {
		return nil, err
	}
	leader := func() (string, error) { return StreamLeader(ctx, nc) }

	drawFault, regular := plan[len(plan)-1], plan[:len(plan)-1]
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for i := 0; ; i++ {
		// Each fault waits for its gap; the draw's fault comes as soon as
		// the draw begins, whatever was next, and ends the schedule.
		var f Fault
		var gap <-chan time.Time
		if i < len(regular) {
			gap = time.After(regular[i].Gap)
		}
		ended := false
	wait:
		for !isClosed(drawc) {
			select {
			case <-gap:
				f = regular[i]
				break wait
			case <-drawc:
			case <-tick.C:
				if c.agenciesDone() { // no draw came: the checker says why
					ended = true
					break wait
				}
			case <-ctx.Done():
				return nil, context.Cause(ctx)
			}
		}
		if ended {
			break
		}
		if isClosed(drawc) {
			f = drawFault
		}
		if f.Kind == IsolateCentral || f.Kind == IsolateNode {
			// Aimed at the active central: wait for one (a takeover may
			// be under way), or the fault is skipped.
			c.waitActive(ctx, 15*time.Second)
		}
		p, heal := c.play(ctx, f, leader)
		if p.Skipped != "" {
			c.logf("fault %s skipped: %s", f, p.Skipped)
		} else {
			c.logf("fault %s on %s", f, p.Target)
		}
		if heal != nil {
			// A fault is cut short by the draw, whose fault comes next.
			cut := drawc
			if f.AtDraw {
				cut = nil
			}
			t := time.NewTimer(f.Hold)
			select {
			case <-t.C:
			case <-cut:
			case <-ctx.Done():
			}
			t.Stop()
			if err := heal(); err != nil {
				c.event("healing %s on %s: %v", f.Kind, p.Target, err)
			}
			p.Healed = time.Now()
			c.logf("healed %s on %s", f.Kind, p.Target)
		}
		rep.Played = append(rep.Played, p)
		if f.AtDraw {
			break
		}
	}
	// Everything heals: nothing stays cut, paused or dead.
	if err := c.lab.Heal(); err != nil {
		c.event("final heal: %v", err)
	}
	for _, n := range append(append([]string{}, nodeNames...), centralNames...) {
		c.Signal(n, syscall.SIGCONT)
	}
	rep.FaultsEnded = time.Now()
	agencyWait := limits.AgencyWait
	if agencyWait == 0 {
		agencyWait = 4 * time.Minute
	}
	waitCfg := c.cfg.WaitTimeout
	c.cfg.WaitTimeout = agencyWait
	err = c.poll(ctx, "every agency to finish", func() (bool, error) { return c.agenciesDone(), nil })
	c.cfg.WaitTimeout = waitCfg
	if err != nil {
		rep.Findings = append(rep.Findings, err.Error())
	}
	rep.AgenciesEnded = time.Now()

	// The copies catch up with the stream, then the centrals stop.
	want, _ := harness.CountBets(cfg.Files)
	for _, n := range centralNames {
		path := filepath.Join(c.Central(n).Dir, "bets.csv")
		if err := c.poll(ctx, n+"'s bets.csv to hold every bet", func() (bool, error) {
			got, _ := harness.CountRows(path)
			return got >= want, nil
		}); err != nil {
			rep.Findings = append(rep.Findings, err.Error())
		}
	}
	stream, err := ReadStream(ctx, nc)
	if err != nil {
		rep.Findings = append(rep.Findings, "reading the stream: "+err.Error())
	}
	for _, n := range centralNames {
		cp := c.Central(n)
		c.mu.Lock()
		cp.killing = true
		c.mu.Unlock()
		if killed := cp.Proc.Stop(20 * time.Second); killed || cp.Proc.ExitCode() != 0 {
			rep.Findings = append(rep.Findings, fmt.Sprintf("%s did not stop cleanly on SIGTERM: %s", n, cp.Proc.Exit()))
		}
	}
	Check(c, cfg, stream, limits, rep)
	return rep, nil
}

// agenciesDone reports whether every agency's current life has exited and
// none is being killed (a killed one is started again by its heal).
func (c *Cluster) agenciesDone() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, a := range c.agencies {
		if a.killing || !a.Proc.Exited() {
			return false
		}
	}
	return len(c.agencies) > 0
}

// waitActive waits up to d for an active central.
func (c *Cluster) waitActive(ctx context.Context, d time.Duration) {
	deadline := time.Now().Add(d)
	for c.Active() == "" && time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(50 * time.Millisecond)
	}
}

func exitedErr(c *Cluster, name string) error {
	if cp := c.Central(name); cp != nil && cp.Proc.Exited() {
		return fmt.Errorf("%s exited (%s) while starting", name, cp.Proc.Exit())
	}
	return nil
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// StreamMsg is a message of the ledger stream.
type StreamMsg struct {
	Seq     uint64
	Subject string
	Header  nats.Header
	Data    []byte
	Time    time.Time
}

// ReadStream reads every message of the ledger stream, in order. A
// cluster just healed may answer "temporarily unavailable" for a while
// (an election): each read is retried for up to a minute.
func ReadStream(ctx context.Context, nc *nats.Conn) ([]StreamMsg, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	var info *jetstream.StreamInfo
	var s jetstream.Stream
	err = retry(ctx, func(ctx context.Context) (err error) {
		if s, err = js.Stream(ctx, Stream); err == nil {
			info, err = s.Info(ctx)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	var out []StreamMsg
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && seq > 0; seq++ {
		var m *jetstream.RawStreamMsg
		if err := retry(ctx, func(ctx context.Context) (err error) {
			m, err = s.GetMsg(ctx, seq)
			return err
		}); err != nil {
			return nil, fmt.Errorf("message %d: %w", seq, err)
		}
		out = append(out, StreamMsg{Seq: m.Sequence, Subject: m.Subject, Header: m.Header, Data: m.Data, Time: m.Time})
	}
	return out, nil
}

// retry calls f, each call bounded by 5 s, until it succeeds or a minute
// has passed.
func retry(ctx context.Context, f func(context.Context) error) error {
	deadline := time.Now().Add(time.Minute)
	for {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := f(cctx)
		cancel()
		if err == nil || time.Now().After(deadline) || ctx.Err() != nil {
			return err
		}
		time.Sleep(200 * time.Millisecond)
	}
}
