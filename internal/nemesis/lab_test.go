//go:build linux

package nemesis

import (
	"io"
	"net"
	"testing"
)

// A partition stops traffic between its sides and nothing else; a flaky
// link is set and removed; healing restores everything; closing the lab
// leaves no namespace behind.
func TestLabPartitionsAndHeals(t *testing.T) {
	if why := Requirements(); why != "" {
		t.Skip("SKIP: " + why)
	}
	lab, err := NewLab("a", "b", "c")
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		lab.Close()
		if left := lab.Leftovers(); len(left) > 0 {
			t.Errorf("namespaces left after Close: %v", left)
		}
	}()
	ln, err := Dialer{NS: lab.Member("b").NS}.Listen("tcp", net.JoinHostPort(lab.Member("b").IP, "7000"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()
	reaches := func(from string) bool {
		c, err := Dialer{NS: lab.Member(from).NS}.Dial("tcp", ln.Addr().String())
		if err != nil {
			return false
		}
		defer c.Close()
		c.Write([]byte("x"))
		buf := make([]byte, 1)
		_, err = io.ReadFull(c, buf)
		return err == nil
	}
	if !reaches("a") || !reaches("c") {
		t.Fatal("b not reachable before any fault")
	}
	if err := lab.Partition([]string{"a"}, []string{"b"}); err != nil {
		t.Fatal(err)
	}
	if reaches("a") {
		t.Error("a reaches b across the partition")
	}
	if !reaches("c") {
		t.Error("c, outside the partition, does not reach b")
	}
	if err := lab.Flaky("c", 0.05, 512); err != nil {
		t.Fatal(err)
	}
	if err := lab.Heal(); err != nil {
		t.Fatal(err)
	}
	if !reaches("a") || !reaches("c") {
		t.Error("b not reachable after healing")
	}
}
