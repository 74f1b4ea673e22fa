//go:build !linux

package procs

import "errors"

// RunSpawnerIfChild does nothing here: the spawner needs Linux (Pdeathsig,
// /proc), and PeakRSS says when a figure is only a bound.
func RunSpawnerIfChild() {}

func spawnerEnabled() bool { return false }

type spawnBatch struct{}

func prepareSpawned([]Spec) (*spawnBatch, error) {
	return nil, errors.New("no spawner on this platform")
}
func (*spawnBatch) start() ([]*Proc, error) { return nil, errors.New("no spawner on this platform") }
func (*spawnBatch) abort()                  {}

// ownPeakRSS: unknown here, so no figure is known to be exact.
func ownPeakRSS() (int64, bool) { return 0, false }
