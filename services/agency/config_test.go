package agency_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/quiniela/quiniela/internal/natstest"
	"github.com/quiniela/quiniela/services/agency"
)

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestLoadConfig(t *testing.T) {
	yaml := writeFile(t, "config.yaml", "batch:\n  maxAmount: 50\n  inFlight: 2\nlog:\n  level: DEBUG\nnats:\n  url: nats://file:4222\n")
	cases := []struct {
		name    string
		env     map[string]string
		check   func(agency.Config) bool
		wantErr string
	}{
		{"file values", map[string]string{"AGENCY_ID": "3", "AGENCY_CONFIG": yaml},
			func(c agency.Config) bool {
				return c.ID == 3 && c.MaxAmount == 50 && c.InFlight == 2 && c.LogLevel == "DEBUG" &&
					c.NATSURL == "nats://file:4222" && c.DataFile == ".data/agency-3.csv" && c.RequestTimeout == 5*time.Second
			}, ""},
		{"environment beats the file", map[string]string{"AGENCY_ID": "3", "AGENCY_CONFIG": yaml, "BATCH_MAX_AMOUNT": "7", "LOG_LEVEL": "WARN", "NATS_URL": "nats://env:1", "BATCH_IN_FLIGHT": "9", "AGENCY_DATA_FILE": "x.csv"},
			func(c agency.Config) bool {
				return c.MaxAmount == 7 && c.LogLevel == "WARN" && c.NATSURL == "nats://env:1" && c.InFlight == 9 && c.DataFile == "x.csv"
			}, ""},
		{"defaults without a file", map[string]string{"AGENCY_ID": "1", "AGENCY_CONFIG": ""},
			func(c agency.Config) bool {
				return c.MaxAmount == agency.DefaultMaxAmount && c.InFlight == 8 && c.LogLevel == "INFO" && c.NATSURL == "nats://127.0.0.1:4222" &&
					c.InvalidRows == agency.InvalidRowsDone
			}, ""},
		{"invalid rows: wait", map[string]string{"AGENCY_ID": "1", "AGENCY_CONFIG": yaml, "AGENCY_INVALID_ROWS": "wait"},
			func(c agency.Config) bool { return c.InvalidRows == agency.InvalidRowsWait }, ""},
		{"invalid rows: unknown", map[string]string{"AGENCY_ID": "1", "AGENCY_CONFIG": yaml, "AGENCY_INVALID_ROWS": "skip"}, nil, `AGENCY_INVALID_ROWS="skip": want done`},
		{"missing AGENCY_ID", map[string]string{"AGENCY_CONFIG": yaml}, nil, "AGENCY_ID"},
		{"AGENCY_ID not a number", map[string]string{"AGENCY_ID": "abc", "AGENCY_CONFIG": yaml}, nil, "AGENCY_ID"},
		{"AGENCY_ID zero", map[string]string{"AGENCY_ID": "0", "AGENCY_CONFIG": yaml}, nil, "AGENCY_ID=0"},
		{"named file missing", map[string]string{"AGENCY_ID": "1", "AGENCY_CONFIG": "/nonexistent/config.yaml"}, nil, "/nonexistent/config.yaml"},
		{"unknown key", map[string]string{"AGENCY_ID": "1", "AGENCY_CONFIG": writeFile(t, "typo.yaml", "batch:\n  maxAmmount: 5\n")}, nil, "maxAmmount"},
		{"not YAML", map[string]string{"AGENCY_ID": "1", "AGENCY_CONFIG": writeFile(t, "bad.yaml", "batch: [\n")}, nil, "bad.yaml"},
		{"AGENCY_ID in plain words", map[string]string{"AGENCY_ID": "abc", "AGENCY_CONFIG": yaml}, nil, `AGENCY_ID="abc": want a whole number`},
		{"a duration in plain words", map[string]string{"AGENCY_ID": "1", "AGENCY_CONFIG": yaml, "AGENCY_RETRY_FOR": "2"}, nil, `AGENCY_RETRY_FOR="2": want a duration such as`},
		{"unknown key without Go types", map[string]string{"AGENCY_ID": "1", "AGENCY_CONFIG": writeFile(t, "typo2.yaml", "batch:\n  maxAmont: 5\n")}, nil, `line 2: unknown key "maxAmont" (the keys are batch: {maxAmount`},
		{"wrong kind without Go types", map[string]string{"AGENCY_ID": "1", "AGENCY_CONFIG": writeFile(t, "kind.yaml", "batch:\n  maxAmount: many\n")}, nil, "line 2: `many`: want a whole number"},
		{"zero maxAmount", map[string]string{"AGENCY_ID": "1", "AGENCY_CONFIG": yaml, "BATCH_MAX_AMOUNT": "0"}, nil, "maxAmount 0"},
		{"zero maxAmount in the file", map[string]string{"AGENCY_ID": "1", "AGENCY_CONFIG": writeFile(t, "zero.yaml", "batch:\n  maxAmount: 0\n")}, nil, "maxAmount 0"},
		{"negative maxAmount", map[string]string{"AGENCY_ID": "1", "AGENCY_CONFIG": yaml, "BATCH_MAX_AMOUNT": "-5"}, nil, "maxAmount -5"},
		{"bad duration", map[string]string{"AGENCY_ID": "1", "AGENCY_CONFIG": yaml, "AGENCY_REQUEST_TIMEOUT": "soon"}, nil, "AGENCY_REQUEST_TIMEOUT"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			env := tc.env
			if _, set := env["AGENCY_CONFIG"]; set && env["AGENCY_CONFIG"] == "" {
				// Default config.yaml in a directory that has none.
				t.Chdir(t.TempDir())
			}
			cfg, err := agency.LoadConfig(context.Background(), natstest.Env(env))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one mentioning %q", err, tc.wantErr)
				}
				for _, internal := range []string{"strconv.", "struct {", "time: invalid", "*int"} {
					if strings.Contains(err.Error(), internal) {
						t.Errorf("error %q shows Go's internals (%s)", err, internal)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !tc.check(cfg) {
				t.Errorf("config %+v", cfg)
			}
		})
	}
}

// The config.yaml the project ships parses, with the documented default.
func TestShippedConfig(t *testing.T) {
	cfg, err := agency.LoadConfig(context.Background(), natstest.Env(map[string]string{"AGENCY_ID": "1", "AGENCY_CONFIG": "config.yaml"}))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MaxAmount != agency.DefaultMaxAmount {
		t.Errorf("config.yaml maxAmount %d, DefaultMaxAmount %d: keep them equal", cfg.MaxAmount, agency.DefaultMaxAmount)
	}
}
