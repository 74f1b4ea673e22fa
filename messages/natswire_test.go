package messages_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// replySubject is a reply subject of exactly MaxReplyBytes (128) bytes, the
// most the 8 kB rule allows for.
var replySubject = "_INBOX." + strings.Repeat("r", 121)

// wireBytes builds, by hand and independently of the package, the bytes a
// NATS client writes to publish m with headers and the given reply subject:
//
//	HPUB <subject> <reply> <hdrlen> <totlen>\r\n<header block><payload>\r\n
//
// where the header block is NATS/1.0\r\n, one "Key: value\r\n" per value and
// a closing \r\n.
func wireBytes(m *nats.Msg, reply string) []byte {
	var hdr bytes.Buffer
	hdr.WriteString("NATS/1.0\r\n")
	for k, vs := range m.Header {
		for _, v := range vs {
			fmt.Fprintf(&hdr, "%s: %s\r\n", k, v)
		}
	}
	hdr.WriteString("\r\n")
	var b bytes.Buffer
	fmt.Fprintf(&b, "HPUB %s %s %d %d\r\n", m.Subject, reply, hdr.Len(), hdr.Len()+len(m.Data))
	b.Write(hdr.Bytes())
	b.Write(m.Data)
	b.WriteString("\r\n")
	return b.Bytes()
}

// fakeServer is just enough of a NATS server to let nats.go connect and
// publish: it records every HPUB/PUB exactly as the client wrote it.
type fakeServer struct {
	ln   net.Listener
	mu   sync.Mutex
	pubs [][]byte
	done chan struct{}
	err  error
}

func newFakeServer(t *testing.T) *fakeServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &fakeServer{ln: ln, done: make(chan struct{})}
	go s.serve()
	t.Cleanup(func() {
		ln.Close()
		<-s.done
		if s.err != nil && s.err != io.EOF && !strings.Contains(s.err.Error(), "closed") {
			t.Errorf("fake server: %v", s.err)
		}
	})
	return s
}

func (s *fakeServer) url() string { return "nats://" + s.ln.Addr().String() }

func (s *fakeServer) serve() {
	defer close(s.done)
	conn, err := s.ln.Accept()
	if err != nil {
		return
	}
	defer conn.Close()
	port := s.ln.Addr().(*net.TCPAddr).Port
	fmt.Fprintf(conn, `INFO {"server_id":"fake","server_name":"fake","version":"2.10.0","proto":1,"go":"go","host":"127.0.0.1","port":%d,"headers":true,"max_payload":1048576}`+"\r\n", port)
	r := bufio.NewReader(conn)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			s.err = err
			return
		}
		verb, args, _ := strings.Cut(strings.TrimRight(line, "\r\n"), " ")
		switch strings.ToUpper(verb) {
		case "PING":
			io.WriteString(conn, "PONG\r\n")
		case "HPUB", "PUB":
			f := strings.Fields(args)
			size, err := strconv.Atoi(f[len(f)-1])
			if err != nil {
				s.err = fmt.Errorf("%q: %v", line, err)
				return
			}
			body := make([]byte, size+2)
			if _, err := io.ReadFull(r, body); err != nil {
				s.err = err
				return
			}
			s.mu.Lock()
			s.pubs = append(s.pubs, append([]byte(line), body...))
			s.mu.Unlock()
		}
	}
}

// sent returns the raw bytes of every publication so far, and forgets them.
func (s *fakeServer) sent() [][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.pubs
	s.pubs = nil
	return p
}

// natsWire publishes msgs with the real nats.go client to a fake server, with
// the 128-byte reply subject, and returns the bytes the client wrote for each.
type natsWire struct {
	srv *fakeServer
	nc  *nats.Conn
}

func newNATSWire(t *testing.T) *natsWire {
	t.Helper()
	srv := newFakeServer(t)
	nc, err := nats.Connect(srv.url(), nats.NoReconnect(), nats.Timeout(5*time.Second))
	if err != nil {
		t.Fatalf("connect to fake server: %v", err)
	}
	t.Cleanup(nc.Close)
	return &natsWire{srv: srv, nc: nc}
}

func (w *natsWire) publish(t *testing.T, msgs ...*nats.Msg) [][]byte {
	t.Helper()
	for _, m := range msgs {
		out := &nats.Msg{Subject: m.Subject, Reply: replySubject, Header: m.Header, Data: m.Data}
		if err := w.nc.PublishMsg(out); err != nil {
			t.Fatalf("publish: %v", err)
		}
	}
	if err := w.nc.FlushTimeout(5 * time.Second); err != nil {
		t.Fatalf("flush: %v", err)
	}
	got := w.srv.sent()
	if len(got) != len(msgs) {
		t.Fatalf("fake server got %d publications, want %d", len(got), len(msgs))
	}
	return got
}

// TestWireBytesMatchNATSClient checks the hand-built wire bytes against what
// nats.go really writes, so that the other tests can rely on wireBytes.
func TestWireBytesMatchNATSClient(t *testing.T) {
	w := newNATSWire(t)
	h := nats.Header{}
	h.Set("Quiniela-Agency", "12")
	h.Set("Quiniela-Batch", "345")
	msgs := []*nats.Msg{
		{Subject: "bets.agency.12", Header: h, Data: []byte("Juan,Perez,30123456,1990-05-17,7574\n")},
		{Subject: "bets.agency.12", Header: h, Data: bytes.Repeat([]byte("x"), 8000)},
		{Subject: "bets.agency.12.done", Header: h},
	}
	got := w.publish(t, msgs...)
	for i, m := range msgs {
		want := wireBytes(m, replySubject)
		// Header order follows map iteration: compare lengths and the parts
		// that have a fixed place.
		if len(got[i]) != len(want) {
			t.Errorf("msg %d: client wrote %d bytes, wireBytes says %d\nclient: %q\nmine:   %q", i, len(got[i]), len(want), got[i], want)
		}
		if line, _, _ := bytes.Cut(got[i], []byte("\r\n")); !bytes.Equal(line, bytes.SplitN(want, []byte("\r\n"), 2)[0]) {
			t.Errorf("msg %d: protocol line %q, want %q", i, line, bytes.SplitN(want, []byte("\r\n"), 2)[0])
		}
		if !bytes.HasSuffix(got[i], append(bytes.Clone(m.Data), '\r', '\n')) {
			t.Errorf("msg %d: payload is not at the end of %q", i, got[i])
		}
	}
}
