//go:build linux

package nemesis

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/quiniela/quiniela/internal/harness"
	"github.com/quiniela/quiniela/internal/logline"
	"github.com/quiniela/quiniela/internal/natsauth"
)

// The lab's members: three nodes, two centrals, the agencies, and the
// observer (the test's own NATS clients, never cut off).
var (
	nodeNames    = []string{"n1", "n2", "n3"}
	centralNames = []string{"c1", "c2"}
)

const (
	agenciesMember = "ag"
	observerMember = "ob"
	clientPort     = 4222
	routePort      = 6222
	// Stream is the ledger's stream (the central's default CENTRAL_STREAM).
	Stream = "QUINIELA"
)

// Config is one run's setup.
type Config struct {
	Bin         string               // holds central, agency and nats-server
	Dir         string               // the run's folder: stores, configs, bets.csv copies
	Files       []harness.AgencyFile // the agencies' data
	AgencyConf  string               // the agencies' config.yaml
	MaxPayload  int                  // the nodes' max_payload; 0: the server's default (1 MiB)
	AgencyEnv   []string             // e.g. BATCH_MAX_AMOUNT=10
	CentralEnv  []string             // e.g. CENTRAL_MAX_WINDOW=2
	Sink        *harness.Sink        // every process's lines and the nemesis's own
	LeaseTTL    time.Duration        // the centrals' CENTRAL_LEASE_TTL (0: 2 s, their default)
	WaitTimeout time.Duration        // bound on each wait for the system (0: 60 s)
}

// Cluster is the lottery's processes in the lab.
type Cluster struct {
	cfg   Config
	lab   *Lab
	users natsauth.Users

	mu    sync.Mutex
	nodes map[string]*harness.Proc
	// nodeKilled: the node's current life's end was asked for.
	nodeKilled map[string]bool
	centrals   map[string]*CentralProc
	agencies   map[int]*AgencyProc
	// onLine is called with each central's parsed operation lines (the
	// nemesis's draw trigger).
	onLine func(central string, l logline.Line)
	events []Event // unexpected exits and the like, for the checker
}

// Event is something the lab saw that the checker judges.
type Event struct {
	At   time.Time
	What string
}

// CentralProc is a central's current life and what all its lives logged.
type CentralProc struct {
	Name    string
	Dir     string
	Proc    *harness.Proc
	Log     *CentralLog
	Lives   int
	killing bool // this life's end was asked for: not unexpected
}

// AgencyProc is an agency's current life.
type AgencyProc struct {
	ID      int
	Proc    *harness.Proc
	Log     *harness.AgencyLog
	Lives   int
	Lines   *lineCounter
	killing bool
}

// NewCluster creates the lab's namespaces and the credentials; Start
// starts the processes.
func NewCluster(cfg Config) (*Cluster, error) {
	if cfg.WaitTimeout == 0 {
		cfg.WaitTimeout = 60 * time.Second
	}
	members := append(append(append([]string{}, nodeNames...), centralNames...), agenciesMember, observerMember)
	lab, err := NewLab(members...)
	if err != nil {
		return nil, fmt.Errorf("creating the lab's namespaces: %w", err)
	}
	users, err := natsauth.Generate(filepath.Join(cfg.Dir, "creds"), len(cfg.Files))
	if err != nil {
		lab.Close()
		return nil, err
	}
	return &Cluster{cfg: cfg, lab: lab, users: users, nodes: map[string]*harness.Proc{}, nodeKilled: map[string]bool{},
		centrals: map[string]*CentralProc{}, agencies: map[int]*AgencyProc{}}, nil
}

// Lab is the cluster's network.
func (c *Cluster) Lab() *Lab { return c.lab }

// logf writes a line of the nemesis into the run's log.
func (c *Cluster) logf(format string, args ...any) {
	if c.cfg.Sink != nil {
		c.cfg.Sink.Printf("nemesis", "%s "+format, append([]any{time.Now().UTC().Format("15:04:05.000")}, args...)...)
	}
}

func (c *Cluster) event(format string, args ...any) {
	c.mu.Lock()
	c.events = append(c.events, Event{At: time.Now(), What: fmt.Sprintf(format, args...)})
	c.mu.Unlock()
	c.logf(format, args...)
}

// Events are the unexpected things seen so far.
func (c *Cluster) Events() []Event {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Event(nil), c.events...)
}

// nodeURL is a node's client URL.
func (c *Cluster) nodeURL(node string) string {
	return "nats://" + net.JoinHostPort(c.lab.Member(node).IP, strconv.Itoa(clientPort))
}

// NodeOfURL is the node whose client URL is url ("" if none).
func (c *Cluster) NodeOfURL(url string) string {
	for _, n := range nodeNames {
		if strings.Contains(url, "//"+c.lab.Member(n).IP+":") {
			return n
		}
	}
	return ""
}

// urls lists every node's URL, first at the given index, for NATS_URL.
func (c *Cluster) urls(first int) string {
	var out []string
	for i := range nodeNames {
		out = append(out, c.nodeURL(nodeNames[(first+i)%len(nodeNames)]))
	}
	return strings.Join(out, ",")
}

// writeNodeConf writes a node's nats-server.conf: JetStream fsyncing every
// write (sync_interval: always), the cluster's routes, and the users and
// permissions the project generates (natsauth), included.
func (c *Cluster) writeNodeConf(node string) (string, error) {
	m := c.lab.Member(node)
	var routes []string
	for _, n := range nodeNames {
		routes = append(routes, fmt.Sprintf("%q", "nats://"+net.JoinHostPort(c.lab.Member(n).IP, strconv.Itoa(routePort))))
	}
	var b strings.Builder
	fmt.Fprintf(&b, "server_name: %s\nlisten: %q\n", node, net.JoinHostPort(m.IP, strconv.Itoa(clientPort)))
	if c.cfg.MaxPayload > 0 {
		fmt.Fprintf(&b, "max_payload: %d\n", c.cfg.MaxPayload)
	}
	fmt.Fprintf(&b, "jetstream {\n  store_dir: %q\n  sync_interval: always\n}\n", filepath.Join(c.cfg.Dir, node))
	fmt.Fprintf(&b, "cluster {\n  name: quiniela\n  listen: %q\n  routes: [%s]\n}\n",
		net.JoinHostPort(m.IP, strconv.Itoa(routePort)), strings.Join(routes, ", "))
	fmt.Fprintf(&b, "include %q\n", filepath.Join("creds", "nats-server.conf"))
	path := filepath.Join(c.cfg.Dir, node+".conf")
	return path, os.WriteFile(path, []byte(b.String()), 0o600)
}

// StartNode starts (or restarts, on its store) a node and waits until it
// accepts connections.
func (c *Cluster) StartNode(ctx context.Context, node string) error {
	conf, err := c.writeNodeConf(node)
	if err != nil {
		return err
	}
	p, err := harness.Start(harness.Spec{
		Name: node, Path: "ip", Args: c.lab.Command(node, filepath.Join(c.cfg.Bin, "nats-server"), "-c", conf)[1:],
		Clean: true, Sink: c.cfg.Sink,
	})
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.nodes[node] = p
	c.nodeKilled[node] = false
	c.mu.Unlock()
	go c.watch(node, p, func() bool { c.mu.Lock(); defer c.mu.Unlock(); return c.nodeKilled[node] })
	d := Dialer{NS: c.lab.Member(observerMember).NS}
	addr := net.JoinHostPort(c.lab.Member(node).IP, strconv.Itoa(clientPort))
	return c.poll(ctx, node+" accepting connections on "+addr, func() (bool, error) {
		if p.Exited() {
			return false, fmt.Errorf("%s exited (%s) before accepting connections", node, p.Exit())
		}
		conn, err := d.Dial("tcp", addr)
		if err == nil {
			conn.Close()
		}
		return err == nil, nil
	})
}

// poll calls cond every 50 ms until it holds, fails, ctx ends or the
// wait timeout passes.
func (c *Cluster) poll(ctx context.Context, what string, cond func() (bool, error)) error {
	deadline := time.Now().Add(c.cfg.WaitTimeout)
	for {
		ok, err := cond()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("waited %v for %s", c.cfg.WaitTimeout, what)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w", what, context.Cause(ctx))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Observer connects the test's own client, as the central's ledger user
// (the account that holds the stream and the lease), from the observer's
// namespace to every node.
func (c *Cluster) Observer() (*nats.Conn, error) {
	return nats.Connect(c.urls(0), nats.SetCustomDialer(Dialer{NS: c.lab.Member(observerMember).NS}),
		nats.UserInfo(natsauth.LedgerUser, c.users.Passwords[natsauth.LedgerUser]),
		nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond), nats.Timeout(2*time.Second))
}

// WaitJetStream waits until JetStream answers on the cluster (the
// ledger user's $JS.API.INFO); a central started while the cluster still
// forms waits for its stream's placement itself.
func (c *Cluster) WaitJetStream(ctx context.Context, nc *nats.Conn) error {
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	var last error
	err = c.poll(ctx, "JetStream answering", func() (bool, error) {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		_, last = js.AccountInfo(cctx)
		return last == nil, nil
	})
	if err != nil {
		return fmt.Errorf("%w (last: %v)", err, last)
	}
	return nil
}

// StartCentral starts (or restarts) a central; with wipe its folder is
// emptied first (a central on a new machine).
func (c *Cluster) StartCentral(name string, wipe bool) error {
	c.mu.Lock()
	cp := c.centrals[name]
	if cp == nil {
		cp = &CentralProc{Name: name, Dir: filepath.Join(c.cfg.Dir, name), Log: newCentralLog(name)}
		c.centrals[name] = cp
	}
	c.mu.Unlock()
	if wipe {
		os.RemoveAll(cp.Dir)
	}
	if err := os.MkdirAll(cp.Dir, 0o755); err != nil {
		return err
	}
	idx := 0
	for i, n := range centralNames {
		if n == name {
			idx = i
		}
	}
	env := append([]string{"NATS_URL=" + c.urls(idx)}, c.users.CentralEnv()...) // its three users
	env = append(append(env,
		"CENTRAL_LEDGER=jetstream", "CENTRAL_REPLICAS=3", "CENTRAL_NAME="+name,
		"CENTRAL_AGENCIES="+strconv.Itoa(len(c.cfg.Files)), "CENTRAL_BETS_FILE="+filepath.Join(cp.Dir, "bets.csv"),
		"LOG_LEVEL=INFO",
	), c.cfg.CentralEnv...)
	if c.cfg.LeaseTTL > 0 {
		env = append(env, "CENTRAL_LEASE_TTL="+c.cfg.LeaseTTL.String())
	}
	p, err := harness.Start(harness.Spec{
		Name: name, Path: "ip", Args: c.lab.Command(name, filepath.Join(c.cfg.Bin, "central"))[1:],
		Env: env, Clean: true, Sink: c.cfg.Sink,
		OnLine: func(text string) {
			if l, ok := cp.Log.observe(text); ok && c.onLine != nil {
				c.onLine(name, l)
			}
		},
	})
	if err != nil {
		return err
	}
	c.mu.Lock()
	cp.Proc, cp.killing = p, false
	cp.Lives++
	c.mu.Unlock()
	go func() {
		c.watch(name, p, func() bool { c.mu.Lock(); defer c.mu.Unlock(); return cp.killing })
		cp.Log.lifeEnded(time.Now())
	}()
	return nil
}

// watch records a process's exit that nobody asked for.
func (c *Cluster) watch(name string, p *harness.Proc, asked func() bool) {
	<-p.Done()
	if !asked() {
		c.event("%s exited on its own: %s", name, p.Exit())
	}
}

// StartAgencies starts one agency per file in the agencies' namespace,
// agency i with node i mod 3 first in its NATS_URL (spread over the nodes).
func (c *Cluster) StartAgencies() error {
	for i, f := range c.cfg.Files {
		if err := c.StartAgency(f.ID, i); err != nil {
			return err
		}
	}
	return nil
}

// StartAgency starts (or restarts) agency id.
func (c *Cluster) StartAgency(id, index int) error {
	c.mu.Lock()
	ap := c.agencies[id]
	if ap == nil {
		ap = &AgencyProc{ID: id, Lines: &lineCounter{}}
		c.agencies[id] = ap
	}
	c.mu.Unlock()
	var file harness.AgencyFile
	for _, f := range c.cfg.Files {
		if f.ID == id {
			file = f
		}
	}
	user := natsauth.AgencyUser(id)
	log := &harness.AgencyLog{}
	env := append([]string{
		"AGENCY_ID=" + strconv.Itoa(id), "AGENCY_DATA_FILE=" + file.Path, "AGENCY_CONFIG=" + c.cfg.AgencyConf,
		"NATS_URL=" + c.urls(index), "NATS_USER=" + user, "NATS_PASSWORD=" + c.users.Passwords[user],
	}, c.cfg.AgencyEnv...)
	name := harness.AgencyName(id)
	p, err := harness.Start(harness.Spec{
		Name: name, Path: "ip", Args: c.lab.Command(agenciesMember, filepath.Join(c.cfg.Bin, "agency"))[1:],
		Env: env, Clean: true, Sink: c.cfg.Sink,
		OnLine: func(text string) { log.Observe(text); ap.Lines.observe(text) },
	})
	if err != nil {
		return err
	}
	c.mu.Lock()
	ap.Proc, ap.Log, ap.killing = p, log, false
	ap.Lives++
	c.mu.Unlock()
	return nil
}

// Node, Central and Agency return a process's current life.
func (c *Cluster) Node(name string) *harness.Proc {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodes[name]
}

func (c *Cluster) Central(name string) *CentralProc {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.centrals[name]
}

func (c *Cluster) Agencies() []*AgencyProc {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*AgencyProc
	for _, f := range c.cfg.Files {
		out = append(out, c.agencies[f.ID])
	}
	return out
}

// KillCentral kills a central with SIGKILL (an exit the checker expects).
func (c *Cluster) KillCentral(name string) {
	cp := c.Central(name)
	c.mu.Lock()
	cp.killing = true
	p := cp.Proc
	c.mu.Unlock()
	p.Kill()
}

// KillNode kills a node with SIGKILL.
func (c *Cluster) KillNode(name string) {
	c.mu.Lock()
	c.nodeKilled[name] = true
	p := c.nodes[name]
	c.mu.Unlock()
	p.Kill()
}

// KillAgency kills an agency with SIGKILL.
func (c *Cluster) KillAgency(id int) {
	c.mu.Lock()
	ap := c.agencies[id]
	ap.killing = true
	p := ap.Proc
	c.mu.Unlock()
	p.Kill()
}

// Signal sends sig to the current life of a node or central.
func (c *Cluster) Signal(name string, sig syscall.Signal) error {
	if p := c.Node(name); p != nil {
		return p.Signal(sig)
	}
	if cp := c.Central(name); cp != nil {
		return cp.Proc.Signal(sig)
	}
	return fmt.Errorf("no node or central %s", name)
}

// Active is the central that logged the last activation and has not
// stepped down since, "" if none.
func (c *Cluster) Active() string {
	best, at := "", time.Time{}
	for _, n := range centralNames {
		cp := c.Central(n)
		if cp == nil || cp.Proc.Exited() {
			continue
		}
		if t, active := cp.Log.activeSince(); active && t.After(at) {
			best, at = n, t
		}
	}
	return best
}

// StreamLeader is the node that leads the ledger stream, as JetStream says.
func StreamLeader(ctx context.Context, nc *nats.Conn) (string, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return "", err
	}
	cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	s, err := js.Stream(cctx, Stream)
	if err != nil {
		return "", err
	}
	info, err := s.Info(cctx)
	if err != nil {
		return "", err
	}
	if info.Cluster == nil || info.Cluster.Leader == "" {
		return "", errors.New("the stream has no leader now")
	}
	return info.Cluster.Leader, nil
}

// Close stops every process (SIGKILL: the checks are done by then) and
// removes the lab's namespaces.
func (c *Cluster) Close() error {
	c.mu.Lock()
	var procs []*harness.Proc
	for _, a := range c.agencies {
		a.killing = true
		procs = append(procs, a.Proc)
	}
	for _, cp := range c.centrals {
		cp.killing = true
		procs = append(procs, cp.Proc)
	}
	for n, p := range c.nodes {
		c.nodeKilled[n] = true
		procs = append(procs, p)
	}
	c.mu.Unlock()
	for _, p := range procs {
		p.Signal(syscall.SIGCONT)
		p.Kill()
	}
	return c.lab.Close()
}
