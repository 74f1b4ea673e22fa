package procs

import "sync/atomic"

// spawnerEnv marks the spawner: a program run with it serves as one.
const spawnerEnv = "QUINIELA_PROCS_SPAWNER"

// hooked is set by RunSpawnerIfChild in the program itself.
var hooked atomic.Bool
