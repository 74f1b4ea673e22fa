package deploy_test

import (
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The images, built from this repository for each run, with tags of their own.

type images struct{ central, agency, nats string }

// buildImages builds the three images with tags unique to this run, from
// binaries built here, and removes the tags when the test ends.
func buildImages(t *testing.T, busybox string) images {
	t.Helper()
	start := time.Now()
	root := repoRoot(t)
	tag := "test-" + randomID()
	imgs := images{central: "quiniela-central:" + tag, agency: "quiniela-agency:" + tag, nats: "quiniela-nats:" + tag}

	tmp := t.TempDir()
	bin := filepath.Join(tmp, "bin")
	env := append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
	if _, err := run(t.Context(), env, root, "go", "build", "-trimpath", "-o", bin+"/",
		"./services/central/cmd/central", "./services/agency/cmd/agency", "github.com/nats-io/nats-server/v2"); err != nil {
		t.Fatal(err)
	}
	t.Logf("static binaries built in %v", time.Since(start).Round(time.Millisecond))

	// One small context per image, laid out as the Dockerfiles say.
	contexts := map[string]map[string]string{ // image → file in context → source
		imgs.central: {"central": filepath.Join(bin, "central")},
		imgs.agency:  {"agency": filepath.Join(bin, "agency")},
		imgs.nats:    {"nats-server": filepath.Join(bin, "nats-server"), "busybox": busybox},
	}
	dockerfiles := map[string]string{imgs.central: "central.Dockerfile", imgs.agency: "agency.Dockerfile", imgs.nats: "nats.Dockerfile"}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
		defer cancel()
		if _, err := run(ctx, nil, "", "docker", "rmi", imgs.central, imgs.agency, imgs.nats); err != nil {
			t.Logf("removing test images: %v", err)
		}
	})
	for _, img := range []string{imgs.central, imgs.agency, imgs.nats} {
		dir := filepath.Join(tmp, strings.ReplaceAll(strings.ReplaceAll(img, ":", "_"), "/", "_"))
		if err := os.MkdirAll(filepath.Join(dir, "var", "lib", "quiniela"), 0o755); err != nil {
			t.Fatal(err)
		}
		for name, src := range contexts[img] {
			if err := copyFile(src, filepath.Join(dir, name)); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := run(t.Context(), nil, "", "docker", "build", "-q", "-t", img,
			"-f", filepath.Join(root, "deploy", dockerfiles[img]), dir); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("images %s, %s, %s built in %v", imgs.central, imgs.agency, imgs.nats, time.Since(start).Round(time.Millisecond))
	return imgs
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copying %s: %w", src, err)
	}
	return out.Close()
}

// staticBusybox finds a statically linked busybox: the NATS image has no
// libc for a dynamic one.
func staticBusybox() (string, error) {
	path := "/bin/busybox"
	if _, err := os.Stat(path); err != nil {
		if path, err = exec.LookPath("busybox"); err != nil {
			return "", errors.New("no busybox in /bin or on PATH")
		}
	}
	f, err := elf.Open(path)
	if err != nil {
		return "", fmt.Errorf("reading %s: %w", path, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return "", fmt.Errorf("%s is dynamically linked", path)
		}
	}
	return path, nil
}

// natsTool is the nats CLI, with a configuration directory of the test's
