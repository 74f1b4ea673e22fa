// Command devcreds writes development NATS credentials for a lottery of N
// agencies (a user per agency, the central and its ledger user, the
// inspector and the auditor, in two accounts: internal/natsauth) into a
// folder that git ignores. It keeps existing ones for the same N.
//
//	go run ./tools/devcreds -out .creds -agencies 5
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/quiniela/quiniela/internal/natsauth"
)

func main() {
	out := flag.String("out", ".creds", "folder to write the credentials into")
	agencies := flag.Int("agencies", 5, "number of agencies")
	flag.Parse()
	if *agencies < 1 || flag.NArg() > 0 {
		flag.Usage()
		os.Exit(2)
	}
	if _, err := natsauth.Generate(*out, *agencies); err != nil {
		fmt.Fprintln(os.Stderr, "devcreds:", err)
		os.Exit(1)
	}
	fmt.Printf("credentials for %d agencies in %s (users.json, nats-server.conf, <user>.env)\n", *agencies, *out)
}
