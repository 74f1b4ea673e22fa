// Command devcreds writes development NATS credentials for a lottery of N
// agencies (a user per agency, the central's service, replies and ledger
// users, the inspector and the auditor, in two accounts: internal/natsauth)
// into a folder that git ignores. It keeps existing ones for the same N and
// stream.
//
//	go run ./tools/devcreds -out .creds -agencies 5
//	go run ./tools/devcreds -out .creds -agencies 5 -stream QUINIELA_TEST   # a central with CENTRAL_STREAM=QUINIELA_TEST
package main

import (
	"flag"
	"fmt"
	"os"
	"regexp"

	"github.com/quiniela/quiniela/internal/natsauth"
)

// streamName is what CENTRAL_STREAM accepts.
var streamName = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

func main() {
	out := flag.String("out", ".creds", "folder to write the credentials into")
	agencies := flag.Int("agencies", 5, "number of agencies")
	stream := flag.String("stream", natsauth.DefaultStream, "the ledger's stream the central's ledger user may use (CENTRAL_STREAM; its lease is bucket <stream>_LEASE)")
	flag.Parse()
	if *agencies < 1 || flag.NArg() > 0 {
		flag.Usage()
		os.Exit(2)
	}
	if !streamName.MatchString(*stream) {
		fmt.Fprintf(os.Stderr, "devcreds: -stream %q: want letters, digits, - and _ only, as CENTRAL_STREAM\n", *stream)
		os.Exit(2)
	}
	if _, err := natsauth.GenerateStream(*out, *agencies, *stream); err != nil {
		fmt.Fprintln(os.Stderr, "devcreds:", err)
		os.Exit(1)
	}
	fmt.Printf("credentials for %d agencies, stream %s, in %s (users.json, nats-server.conf, <user>.env; central.env holds the central's three users)\n", *agencies, *stream, *out)
}
