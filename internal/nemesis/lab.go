//go:build linux

// Package nemesis is a fault lab for the cluster mode: three nats-server
// nodes, two centrals and the agencies, each in its own Linux network
// namespace on one bridge, and a seeded schedule of faults (partitions, a
// flaky link, SIGSTOP, kill -9) played against a whole lottery, whose end
// and path one checker judges. Its test (`make test`) runs a short
// schedule; `make soak-cluster` runs seeds for as long as asked.
package nemesis

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Lab is a set of network namespaces, one per member, joined by veth pairs
// to a bridge that lives in a namespace of its own (the hub): nothing of it
// touches the host's namespace, and its addresses (10.x.y.0/24, private)
// route nowhere else. Every name carries a random per-run suffix.
type Lab struct {
	Suffix  string
	hub     string // the hub namespace, which holds the bridge
	bridge  string
	subnet  string // "10.x.y."
	members map[string]*Member
	order   []string

	mu    sync.Mutex
	flaky map[string]bool // members whose link has a tbf qdisc
}

// Member is one namespace of the lab.
type Member struct {
	Name string // the role: n1, c1, ag …
	NS   string // the namespace's name
	IP   string
	hubV string // its veth's end in the hub
}

// Requirements says why the lab cannot run here, or "" if it can: it needs
// root, `ip` with netns support, `tc` and `iptables`.
func Requirements() string {
	if os.Geteuid() != 0 {
		return "the fault lab needs root (network namespaces, iptables, tc)"
	}
	for _, tool := range []string{"ip", "tc", "iptables"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Sprintf("the fault lab needs %s on PATH: %v", tool, err)
		}
	}
	if out, err := exec.Command("ip", "netns", "list").CombinedOutput(); err != nil {
		return fmt.Sprintf("the fault lab needs network namespaces (`ip netns list`: %v: %s)", err, strings.TrimSpace(string(out)))
	}
	return ""
}

// NewLab creates the hub, its bridge and one namespace per name, each with
// lo up and an address on the bridge. On error what was created is removed.
func NewLab(names ...string) (lab *Lab, err error) {
	b := make([]byte, 3)
	rand.Read(b)
	sfx := hex.EncodeToString(b)[:5]
	l := &Lab{
		Suffix: sfx, hub: "qn" + sfx + "-hub", bridge: "qbr" + sfx,
		subnet: fmt.Sprintf("10.%d.%d.", 200+int(b[0])%50, b[1]), members: map[string]*Member{}, flaky: map[string]bool{},
	}
	defer func() {
		if err != nil {
			l.Close()
		}
	}()
	if err := run("ip", "netns", "add", l.hub); err != nil {
		return nil, err
	}
	if err := l.inHub("ip", "link", "add", l.bridge, "type", "bridge"); err != nil {
		return nil, err
	}
	if err := l.inHub("ip", "link", "set", l.bridge, "up"); err != nil {
		return nil, err
	}
	for i, name := range names {
		m := &Member{Name: name, NS: "qn" + sfx + "-" + name, IP: l.subnet + fmt.Sprint(10+i), hubV: fmt.Sprintf("qv%s%d", sfx, i)}
		l.members[name] = m
		l.order = append(l.order, name)
		if err := run("ip", "netns", "add", m.NS); err != nil {
			return nil, err
		}
		// The pair is made in the hub with its other end put straight into
		// the member's namespace as eth0: no name ever lands in the host's.
		steps := [][]string{
			{"ip", "netns", "exec", l.hub, "ip", "link", "add", m.hubV, "type", "veth", "peer", "name", "eth0", "netns", m.NS},
			{"ip", "netns", "exec", l.hub, "ip", "link", "set", m.hubV, "master", l.bridge, "up"},
			{"ip", "netns", "exec", m.NS, "ip", "link", "set", "lo", "up"},
			{"ip", "netns", "exec", m.NS, "ip", "addr", "add", m.IP + "/24", "dev", "eth0"},
			{"ip", "netns", "exec", m.NS, "ip", "link", "set", "eth0", "up"},
		}
		for _, s := range steps {
			if err := run(s...); err != nil {
				return nil, err
			}
		}
	}
	return l, nil
}

// Member returns the member of that name; it panics on an unknown one (a
// bug of the caller).
func (l *Lab) Member(name string) *Member {
	m, ok := l.members[name]
	if !ok {
		panic("nemesis: no lab member " + name)
	}
	return m
}

// Command is the argv that runs argv inside the member's namespace: `ip
// netns exec` execs the program, so its pid is the program's own.
func (l *Lab) Command(member string, argv ...string) []string {
	return append([]string{"ip", "netns", "exec", l.Member(member).NS}, argv...)
}

// Partition cuts every member of a from every member of b, both ways, by
// dropping their packets in each one's namespace (a silent cut: no reset,
// connections hang as behind a broken switch). Heal undoes it.
func (l *Lab) Partition(a, b []string) error {
	for _, x := range a {
		for _, y := range b {
			for _, pair := range [][2]string{{x, y}, {y, x}} {
				m, peer := l.Member(pair[0]), l.Member(pair[1])
				if err := l.in(m, "iptables", "-w", "-A", "INPUT", "-s", peer.IP, "-j", "DROP"); err != nil {
					return err
				}
				if err := l.in(m, "iptables", "-w", "-A", "OUTPUT", "-d", peer.IP, "-j", "DROP"); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// Flaky makes a member's link lossy and slow: each packet in and out is
// dropped with probability loss (iptables' statistic match), and what it
// sends leaves at rateKbit through a token bucket (tc tbf), which queues
// and so delays it. This kernel has no sch_netem, hence not netem.
func (l *Lab) Flaky(member string, loss float64, rateKbit int) error {
	m := l.Member(member)
	p := fmt.Sprintf("%.3f", loss)
	for _, rule := range [][2]string{{"INPUT", "-i"}, {"OUTPUT", "-o"}} {
		if err := l.in(m, "iptables", "-w", "-A", rule[0], rule[1], "eth0", "-m", "statistic", "--mode", "random", "--probability", p, "-j", "DROP"); err != nil {
			return err
		}
	}
	l.mu.Lock()
	l.flaky[member] = true
	l.mu.Unlock()
	return l.in(m, "tc", "qdisc", "replace", "dev", "eth0", "root", "tbf",
		"rate", fmt.Sprintf("%dkbit", rateKbit), "burst", "16kb", "latency", "300ms")
}

// Heal removes every partition and flaky link.
func (l *Lab) Heal() error {
	var errs []error
	for _, name := range l.order {
		m := l.members[name]
		errs = append(errs, l.in(m, "iptables", "-w", "-F", "INPUT"), l.in(m, "iptables", "-w", "-F", "OUTPUT"))
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for name := range l.flaky {
		errs = append(errs, l.in(l.members[name], "tc", "qdisc", "del", "dev", "eth0", "root"))
		delete(l.flaky, name)
	}
	return errors.Join(errs...)
}

// Close deletes every namespace of the lab (their veths and the bridge go
// with them). It is safe to call on a half-built lab and twice.
func (l *Lab) Close() error {
	var errs []error
	for _, name := range l.order {
		if err := run("ip", "netns", "del", l.members[name].NS); err != nil && !strings.Contains(err.Error(), "No such file") {
			errs = append(errs, err)
		}
	}
	l.order = nil
	if l.hub != "" {
		if err := run("ip", "netns", "del", l.hub); err != nil && !strings.Contains(err.Error(), "No such file") {
			errs = append(errs, err)
		}
		l.hub = ""
	}
	return errors.Join(errs...)
}

// Leftovers lists the namespaces of this lab still present (none after Close).
func (l *Lab) Leftovers() []string {
	out, _ := exec.Command("ip", "netns", "list").Output()
	var left []string
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) > 0 && strings.HasPrefix(f[0], "qn"+l.Suffix+"-") {
			left = append(left, f[0])
		}
	}
	return left
}

// Dialer dials from inside a member's namespace, for a NATS client of the
// test process (nats.SetCustomDialer): each dial runs on a fresh OS thread
// moved into the namespace, which is thrown away after (a goroutine that
// exits locked to its thread takes the thread with it). The socket stays
// in the namespace it was made in.
type Dialer struct {
	NS string
}

// Dial implements nats.CustomDialer.
func (d Dialer) Dial(network, address string) (net.Conn, error) {
	var c net.Conn
	err := d.inside(func() (err error) {
		c, err = net.DialTimeout(network, address, 2*time.Second)
		return err
	})
	return c, err
}

// Listen listens inside the namespace.
func (d Dialer) Listen(network, address string) (net.Listener, error) {
	var l net.Listener
	err := d.inside(func() (err error) {
		l, err = net.Listen(network, address)
		return err
	})
	return l, err
}

// inside runs f on an OS thread of its own moved into the namespace.
func (d Dialer) inside(f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
		ns, err := os.Open("/run/netns/" + d.NS)
		if err != nil {
			errc <- err
			return
		}
		defer ns.Close()
		if err := unix.Setns(int(ns.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("entering namespace %s: %w", d.NS, err)
			return
		}
		errc <- f()
	}()
	return <-errc
}

func (l *Lab) inHub(argv ...string) error {
	return run(append([]string{"ip", "netns", "exec", l.hub}, argv...)...)
}

func (l *Lab) in(m *Member, argv ...string) error {
	return run(append([]string{"ip", "netns", "exec", m.NS}, argv...)...)
}

func run(argv ...string) error {
	out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}
