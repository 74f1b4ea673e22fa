package harness

import (
	"net"
	"strconv"
	"testing"
)

// FreePort's ports are below the ephemeral range and free: a server can
// bind them.
func TestFreePort(t *testing.T) {
	for range 100 {
		port, err := FreePort()
		if err != nil {
			t.Fatal(err)
		}
		if port < lowestPort || port >= ephemeralLow {
			t.Fatalf("FreePort = %d, want one in [%d, %d)", port, lowestPort, ephemeralLow)
		}
	}
	port, err := FreePort()
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		t.Fatalf("binding FreePort's %d: %v", port, err)
	}
	ln.Close()
}
