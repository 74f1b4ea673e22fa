package agency

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/quiniela/quiniela/internal/envcfg"
	"github.com/quiniela/quiniela/internal/natsconn"
	"gopkg.in/yaml.v3"
)

// DefaultMaxAmount is the default `batch: maxAmount`: the most bets one
// message can hold. The 8 kB rule is kept by the encoder, which counts every
// byte that goes on the wire and ends a batch when the next row would not
// fit (messages.BatchEncoder); maxAmount only caps the count. 418 rows of
// the shortest valid bet ("a,b,1,1900-01-01,0", 19 bytes) fill agency 1's
// first message — 8192 bytes less the HPUB line, a 128-byte reply
// allowance and the headers, Quiniela-Lines: 1-418 among them — so by
// default no batch ends on the count: each is as full as its rows allow, and the course's rows (47 bytes on average) go
// about 170 to a batch. The 118 the course's arithmetic gave (8 kB over a
// 67-byte row) made 44% more messages for the same bets, each with its
// request, reply, log line and journal record: a sixth more CPU in all.
const DefaultMaxAmount = 418

// Config is an agency's configuration: config.yaml, overridden by the
// environment.
type Config struct {
	ID             int           `env:"AGENCY_ID, required"`
	DataFile       string        `env:"AGENCY_DATA_FILE, overwrite"`        // default .data/agency-<ID>.csv
	ConfigFile     string        `env:"AGENCY_CONFIG, default=config.yaml"` // YAML: batch.maxAmount, batch.inFlight, log.level
	NATSURL        string        `env:"NATS_URL, overwrite, default=nats://127.0.0.1:4222"`
	LogLevel       string        `env:"LOG_LEVEL, overwrite, default=INFO"`
	MaxAmount      int           `env:"BATCH_MAX_AMOUNT, overwrite"`                    // bets per batch
	InFlight       int           `env:"BATCH_IN_FLIGHT, overwrite, default=8"`          // batches in flight until the central grants a window
	RequestTimeout time.Duration `env:"AGENCY_REQUEST_TIMEOUT, overwrite, default=5s"`  // wait for one reply, then resend
	RetryFor       time.Duration `env:"AGENCY_RETRY_FOR, overwrite, default=2m"`        // give up on a request unanswered this long
	WinnersWait    time.Duration `env:"AGENCY_WINNERS_WAIT, overwrite, default=30m"`    // how long to wait for the draw
	ConnectWait    time.Duration `env:"AGENCY_CONNECT_TIMEOUT, overwrite, default=60s"` // how long to wait for NATS at start
	InvalidRows    string        `env:"AGENCY_INVALID_ROWS, overwrite, default=done"`   // done or wait: see InvalidRowsWait
	Auth           natsconn.Auth // NATS_USER, NATS_PASSWORD, NATS_CREDS
}

// What an agency does after it skipped invalid rows (AGENCY_INVALID_ROWS).
const (
	// InvalidRowsDone: say done all the same; the draw runs when every
	// agency is done, with the fixed rows if a run brings them before.
	InvalidRowsDone = "done"
	// InvalidRowsWait: do not say done, so that the draw waits for a run
	// with the rows fixed (or one with AGENCY_INVALID_ROWS=done).
	InvalidRowsWait = "wait"
)

// fileConfig is config.yaml. Unknown keys are errors, so a typo is caught.
type fileConfig struct {
	Batch struct {
		MaxAmount *int `yaml:"maxAmount"` // nil: not given (0 is refused)
		InFlight  int  `yaml:"inFlight"`
	} `yaml:"batch"`
	Log struct {
		Level string `yaml:"level"`
	} `yaml:"log"`
	NATS struct {
		URL string `yaml:"url"`
	} `yaml:"nats"`
}

// LoadConfig reads config.yaml (AGENCY_CONFIG), then the environment through
// getenv, which wins. An empty variable counts as unset.
func LoadConfig(ctx context.Context, getenv func(string) string) (Config, error) {
	var cfg Config
	process := func() error { return envcfg.Process(ctx, getenv, &cfg) }
	if err := process(); err != nil {
		return cfg, fmt.Errorf("reading configuration: %w", err)
	}
	fc, err := readConfigFile(cfg.ConfigFile, getenv("AGENCY_CONFIG") != "")
	if err != nil {
		return cfg, err
	}
	// The file's values, then the environment again: it overrides them.
	maxAmount := DefaultMaxAmount
	if fc.Batch.MaxAmount != nil {
		maxAmount = *fc.Batch.MaxAmount
	}
	cfg = Config{
		ID: cfg.ID, ConfigFile: cfg.ConfigFile, Auth: cfg.Auth,
		MaxAmount: maxAmount, InFlight: fc.Batch.InFlight,
		LogLevel: fc.Log.Level, NATSURL: fc.NATS.URL,
	}
	if err := process(); err != nil {
		return cfg, fmt.Errorf("reading configuration: %w", err)
	}
	if v := getenv("BATCH_MAX_AMOUNT"); v != "" {
		cfg.MaxAmount, _ = strconv.Atoi(v) // parsed by process already; "0" too, which it takes for unset
	}
	if cfg.DataFile == "" {
		cfg.DataFile = ".data/agency-" + strconv.Itoa(cfg.ID) + ".csv"
	}
	switch {
	case cfg.ID < 1:
		return cfg, fmt.Errorf("AGENCY_ID=%d: want a positive agency number", cfg.ID)
	case cfg.MaxAmount < 1:
		return cfg, fmt.Errorf("batch maxAmount %d (BATCH_MAX_AMOUNT or config.yaml's batch: maxAmount): want at least 1 bet per batch (bytes are capped at 8 kB whatever it says)", cfg.MaxAmount)
	case cfg.InFlight < 1 || cfg.InFlight > 64:
		return cfg, fmt.Errorf("batch inFlight %d: want 1 to 64", cfg.InFlight)
	case cfg.InvalidRows != InvalidRowsDone && cfg.InvalidRows != InvalidRowsWait:
		return cfg, fmt.Errorf("AGENCY_INVALID_ROWS=%q: want %s (say done all the same) or %s (leave the draw waiting for a run with them fixed)", cfg.InvalidRows, InvalidRowsDone, InvalidRowsWait)
	case cfg.RequestTimeout <= 0 || cfg.RetryFor <= 0 || cfg.WinnersWait <= 0 || cfg.ConnectWait <= 0:
		return cfg, errors.New("AGENCY_REQUEST_TIMEOUT, AGENCY_RETRY_FOR, AGENCY_WINNERS_WAIT and AGENCY_CONNECT_TIMEOUT must be positive")
	}
	return cfg, nil
}

// readConfigFile reads the YAML file at path. A missing file is an error
// only when it was asked for by name.
func readConfigFile(path string, explicit bool) (fileConfig, error) {
	var fc fileConfig
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) && !explicit {
		return fc, nil
	}
	if err != nil {
		return fc, fmt.Errorf("reading config file: %w", err)
	}
	defer f.Close()
	dec := yaml.NewDecoder(f)
	dec.KnownFields(true)
	if err := dec.Decode(&fc); err != nil && !errors.Is(err, io.EOF) {
		return fc, fmt.Errorf("config file %s: %s", path, yamlProblems(err))
	}
	return fc, nil
}

var (
	unknownKey = regexp.MustCompile(`^(line \d+): field (\S+) not found in type .*$`)
	wrongType  = regexp.MustCompile(`^(line \d+): cannot unmarshal !!\w+ (.*) into \*?(\w+)$`)
)

// yamlProblems says what is wrong in YAML's decoding error without the Go
// types it names (field maxAmont not found in type struct { MaxAmount …).
func yamlProblems(err error) string {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return err.Error()
	}
	var out []string
	for _, e := range te.Errors {
		if m := unknownKey.FindStringSubmatch(e); m != nil {
			e = fmt.Sprintf("%s: unknown key %q (the keys are batch: {maxAmount, inFlight}, log: {level}, nats: {url})", m[1], m[2])
		} else if m := wrongType.FindStringSubmatch(e); m != nil {
			want := "a value of another kind"
			switch {
			case strings.HasPrefix(m[3], "int"):
				want = "a whole number"
			case m[3] == "string":
				want = "a string"
			}
			e = fmt.Sprintf("%s: %s: want %s", m[1], m[2], want)
		}
		out = append(out, e)
	}
	return strings.Join(out, "; ")
}
