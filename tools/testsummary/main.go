// Command testsummary runs go test with -json and shows what go test shows
// without -v (each package's line, the output of the tests that fail),
// then the skipped tests, each with its reason, and one last line:
// "N passed, N failed, N skipped". It exits as go test does.
//
//	go run ./tools/testsummary -race -count=1 ./...
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"

	"github.com/quiniela/quiniela/internal/cli"
)

func main() {
	cli.Main("testsummary", run)
}

// run runs `go test -json args…` and summarises its events into stdout.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	goCmd := os.Getenv("GO")
	if goCmd == "" {
		goCmd = "go"
	}
	cmd := exec.CommandContext(ctx, goCmd, append([]string{"test", "-json"}, args...)...)
	cmd.Stderr = stderr
	events, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting go test: %w", err)
	}
	s := newSummary(stdout)
	readErr := s.read(events)
	waitErr := cmd.Wait()
	s.print()
	var exit *exec.ExitError
	switch {
	case readErr != nil:
		return fmt.Errorf("reading go test's events: %w", readErr)
	case errors.As(waitErr, &exit):
		return fmt.Errorf("go test failed (exit %d)", exit.ExitCode())
	case waitErr != nil:
		return waitErr
	case s.failed > 0:
		return fmt.Errorf("%d tests failed", s.failed)
	}
	return nil
}
