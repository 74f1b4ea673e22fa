// Package natstest holds test helpers: an in-process NATS server, a log
// buffer that parses operation lines, and the course's data set.
package natstest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/quiniela/quiniela/internal/harness"
)

// StartServer starts a NATS server on a random loopback port and shuts it
// down when the test ends.
func StartServer(t testing.TB) *server.Server {
	t.Helper()
	return StartServerOn(t, server.RANDOM_PORT)
}

// StartServerOn starts a NATS server on the given loopback port (a restart
// test reuses the port of the server it stopped).
func StartServerOn(t testing.TB, port int) *server.Server {
	t.Helper()
	return StartServerWith(t, &server.Options{Port: port})
}

// StartServerWith starts a NATS server on loopback with opts (users, port…).
func StartServerWith(t testing.TB, opts *server.Options) *server.Server {
	t.Helper()
	o := *opts
	o.Host, o.NoLog, o.NoSigs = "127.0.0.1", true, true
	if o.Port == 0 {
		o.Port = server.RANDOM_PORT
	}
	port := o.Port
	ns, err := server.NewServer(&o)
	if err != nil {
		t.Fatalf("configuring NATS server: %v", err)
	}
	go ns.Start()
	// Generous: a JetStream node of a cluster starting while the machine
	// runs other test binaries (-count=20) has been seen to need over 10 s.
	if !ns.ReadyForConnections(30 * time.Second) {
		ns.Shutdown()
		t.Fatalf("NATS server %q not ready in 30 s (client port %d, cluster port %d)", o.ServerName, port, o.Cluster.Port)
	}
	t.Cleanup(func() {
		ns.Shutdown()
		ns.WaitForShutdown()
	})
	return ns
}

// Connect connects a plain client to ns, closed when the test ends.
func Connect(t testing.TB, ns *server.Server) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatalf("connecting to NATS: %v", err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// Env is a getenv built from a map, for the run functions.
func Env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

// StartCluster starts n NATS servers on loopback, routed to each other as
// one cluster, and returns once every route is up.
func StartCluster(t testing.TB, n int) []*server.Server {
	t.Helper()
	return startCluster(t, n, nil)
}

// StartJetStreamCluster starts n NATS servers with JetStream on, each with
// its own store in a temporary folder, as one cluster (JetStream needs a
// server name per node and a cluster name), and returns once JetStream has
// a meta leader that every node follows and that counts every node online:
// before it does, an R3 stream is refused "no suitable peers for placement,
// peer offline" (nats-server's own tests wait alike, waitOnPeerCount).
func StartJetStreamCluster(t testing.TB, n int) []*server.Server {
	t.Helper()
	return StartJetStreamClusterWith(t, n, nil)
}

// StartJetStreamClusterWith is StartJetStreamCluster with each node's
// options given to configure first (accounts and users: natsauth's
// Users.Configure).
func StartJetStreamClusterWith(t testing.TB, n int, configure func(*server.Options) error) []*server.Server {
	t.Helper()
	nodes := startCluster(t, n, func(o *server.Options) {
		if configure != nil {
			if err := configure(o); err != nil {
				t.Fatalf("configuring node %s: %v", o.ServerName, err)
			}
		}
		o.JetStream = true
		o.StoreDir = t.TempDir()
		o.SyncAlways = true // as the project runs JetStream everywhere
	})
	WaitJetStreamFormed(t, nodes)
	return nodes
}

// WaitJetStreamFormed waits until JetStream has a meta leader that every
// node of nodes follows and that sees all of them online.
func WaitJetStreamFormed(t testing.TB, nodes []*server.Server) {
	t.Helper()
	n := len(nodes)
	WaitFor(t, 20*time.Second, "JetStream meta leader elected, followed by every node, seeing all of them online", func() bool {
		var leader *server.Server
		for _, ns := range nodes {
			if ns.JetStreamIsLeader() {
				if leader != nil {
					return false
				}
				leader = ns
			}
			if !ns.JetStreamIsCurrent() {
				return false
			}
		}
		return leader != nil && len(leader.JetStreamClusterPeers()) == n
	})
}

// StartJetStreamServer starts one NATS server with JetStream on.
func StartJetStreamServer(t testing.TB) *server.Server {
	t.Helper()
	return StartServerWith(t, &server.Options{JetStream: true, StoreDir: t.TempDir(), SyncAlways: true})
}

// JetStreamClusterOptions are the options of the n nodes of a JetStream
// cluster, for a test that starts them itself, one at a time (a cluster
// still forming, say): start each with StartServerWith.
func JetStreamClusterOptions(t testing.TB, n int) []*server.Options {
	t.Helper()
	return clusterOptions(t, n, func(o *server.Options) {
		o.JetStream = true
		o.StoreDir = t.TempDir()
	})
}

// ClusterOptions are the options of the n nodes of a cluster without
// JetStream, for a test that starts them itself.
func ClusterOptions(t testing.TB, n int) []*server.Options {
	t.Helper()
	return clusterOptions(t, n, nil)
}

func clusterOptions(t testing.TB, n int, configure func(*server.Options)) []*server.Options {
	t.Helper()
	// JetStream wants every node to have routes configured, the first too:
	// each is given all the nodes' cluster addresses (a route to itself is
	// ignored), on ports picked free beforehand.
	ports := make([]int, n)
	var routes []string
	for i := range ports {
		ports[i] = FreePort(t)
		routes = append(routes, "nats://127.0.0.1:"+strconv.Itoa(ports[i]))
	}
	// In the order a configuration reload sorts them into, in place, while
	// the server's route goroutines read them (nats-server's imposeOrder):
	// sorted already, they are not written.
	slices.Sort(routes)
	all := make([]*server.Options, n)
	for i := range n {
		opts := &server.Options{ServerName: "node-" + strconv.Itoa(i+1)}
		opts.Cluster.Name = "quiniela"
		opts.Cluster.Host = "127.0.0.1"
		opts.Cluster.Port = ports[i]
		opts.Routes = server.RoutesFromStr(strings.Join(routes, ","))
		if configure != nil {
			configure(opts)
		}
		all[i] = opts
	}
	return all
}

func startCluster(t testing.TB, n int, configure func(*server.Options)) []*server.Server {
	t.Helper()
	return StartNodes(t, clusterOptions(t, n, configure))
}

// StartNodes starts a server for each of opts (ClusterOptions,
// JetStreamClusterOptions) and returns once each has a route to every
// other one.
func StartNodes(t testing.TB, opts []*server.Options) []*server.Server {
	t.Helper()
	var nodes []*server.Server
	for _, o := range opts {
		nodes = append(nodes, StartServerWith(t, o))
	}
	WaitFor(t, 10*time.Second, "cluster formed", func() bool {
		for _, ns := range nodes {
			if ns.NumRoutes() < len(nodes)-1 {
				return false
			}
		}
		return true
	})
	return nodes
}

// FreePort is harness.FreePort, failing the test when there is none.
func FreePort(t testing.TB) int {
	t.Helper()
	port, err := harness.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// WaitFor polls cond until it holds, failing the test after timeout. It is
// for conditions a server offers no event for, as nats-server's own tests
// do (checkClusterFormed, waitOnLeader); a log line has Log.WaitFor.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited %v for: %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// URLs is the comma-separated client URLs of servers, as NATS_URL takes them.
func URLs(servers ...*server.Server) string {
	urls := make([]string, len(servers))
	for i, ns := range servers {
		urls[i] = ns.ClientURL()
	}
	return strings.Join(urls, ",")
}

// TLSFiles writes a throwaway CA and a certificate for 127.0.0.1 signed by
// it, and returns the files: CA, certificate, key.
func TLSFiles(t testing.TB) (ca, cert, key string) {
	t.Helper()
	dir := t.TempDir()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "quiniela test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	srvKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	srvTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:    x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	caCert, _ := x509.ParseCertificate(caDER)
	srvDER, err := x509.CreateCertificate(rand.Reader, srvTmpl, caCert, &srvKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalECPrivateKey(srvKey)
	write := func(name, kind string, der []byte) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	return write("ca.pem", "CERTIFICATE", caDER), write("server.pem", "CERTIFICATE", srvDER), write("server-key.pem", "EC PRIVATE KEY", keyDER)
}
