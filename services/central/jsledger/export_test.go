package jsledger

// SetStaged makes s call f with n after it hands message n of an atomic
// batch to the client, before the batch's commit.
func SetStaged(s *Store, f func(n int)) { s.staged = f }
