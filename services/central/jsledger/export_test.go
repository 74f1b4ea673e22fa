package jsledger

import "github.com/nats-io/nats.go/jetstream"

// SetStaged makes s call f with n after it hands message n of an atomic
// batch to the client, before the batch's commit.
func SetStaged(s *Store, f func(n int)) { s.staged = f }

// SetAttempt makes s make each attempt n of a stream write through f,
// which may call send to make it and returns what the write sees of it.
func SetAttempt(s *Store, f func(n int, send func() (*jetstream.PubAck, error)) (*jetstream.PubAck, error)) {
	s.attempt = f
}

// WrapLeaseKV makes l reach its bucket through what wrap returns, before
// Acquire.
func WrapLeaseKV(l *Lease, wrap func(jetstream.KeyValue) jetstream.KeyValue) { l.kv = wrap(l.kv) }
