package harness

import (
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// SyncAlways is the JetStream sync setting the project runs everywhere by
// default: each write is fsynced before JetStream acknowledges it
// (nats-server's sync_interval: always). A duration instead (nats-server's
// default is 2 minutes) fsyncs that often, and a power cut takes what came
// since: Jepsen lost 14 % of acknowledged writes that way (NATS 2.12.1).
const SyncAlways = "always"

// JetStreamConf writes, into dir, a nats-server configuration file that
// sets JetStream's sync interval to sync (SyncAlways or a duration such as
// "120s"), and returns its path, for nats-server's -c: the command line has
// no flag for it.
func JetStreamConf(dir, sync string) (string, error) {
	if err := CheckJetStreamSync(sync); err != nil {
		return "", err
	}
	path := filepath.Join(dir, "jetstream-sync.conf")
	conf := fmt.Sprintf("# Written by the quiniela harness: when JetStream fsyncs.\njetstream {\n  sync_interval: %q\n}\n", sync)
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		return "", fmt.Errorf("writing nats-server configuration: %w", err)
	}
	return path, nil
}

// CheckJetStreamSync says what is wrong with a JetStream sync setting.
func CheckJetStreamSync(sync string) error {
	if sync == SyncAlways {
		return nil
	}
	if d, err := time.ParseDuration(sync); err != nil || d <= 0 {
		return fmt.Errorf("JetStream sync %q: want %s or a positive duration such as 120s", sync, SyncAlways)
	}
	return nil
}
