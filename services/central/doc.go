// Package central runs the central: its configuration, the embedded NATS
// server, the claim that keeps one central to a server's lottery, and the
// micro service that turns agencies' requests into calls of the domain
// (package lottery) and its results and errors into replies, on one of
// two stores: fileledger (bets.csv and a journal) or jsledger (a JetStream
// stream, a local copy and a lease, for any number of centrals). Imports
// point one way: central → jsledger → fileledger → lottery → messages.
package central
