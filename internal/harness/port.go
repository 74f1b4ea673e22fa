package harness

import (
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
)

// Ports below which every system's ephemeral range starts (Linux's at 32768,
// others' higher), and above the well-known and most registered ones.
const (
	lowestPort   = 10000
	ephemeralLow = 32768
)

// FreePort is a loopback TCP port free at the time of the call, for a
// server started a moment later that must know its port beforehand (a
// NATS cluster's routes, a process's NATS_PORT). It is picked below the
// ephemeral range: a port from that range, freed here, can be taken by
// any connection's source port before the server binds it, and the server
// then never gets ready (seen once in 20 runs of the e2e package, a
// cluster port in the 43,000s).
func FreePort() (int, error) {
	var err error
	for range 100 {
		port := lowestPort + rand.IntN(ephemeralLow-lowestPort)
		var ln net.Listener
		if ln, err = net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port)); err == nil {
			ln.Close()
			return port, nil
		}
	}
	return 0, fmt.Errorf("picking a free loopback port below %d: %w", ephemeralLow, err)
}
