package test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// npmInstallTimeout bounds "npm ci" for the Node peers: one small package
// from the registry, so only a dead network takes this long.
const npmInstallTimeout = 5 * time.Minute

// nodePeerLock is the lock file, in test/interop, that serialises installs
// (test/interop/.gitignore keeps it out of git).
const nodePeerLock = ".npm-ci.lock"

// ensureNodePeer makes sure dir (test/interop) holds the pinned ws module,
// running "npm ci" there when it is missing or another version is installed.
// Test processes running at once (go test ./..., -count, -cpu) install it
// once: the install runs under an exclusive flock on a file in dir, and the
// check is repeated once the lock is held.
func ensureNodePeer(dir string) error {
	if nodePeerInstalled(dir) == nil {
		return nil // the usual case: no npm, no lock
	}
	npm, err := exec.LookPath("npm")
	if err != nil {
		return fmt.Errorf("npm not found in PATH (%v): it installs the Node ws peer the interop tests talk to", err)
	}
	lock, err := os.OpenFile(filepath.Join(dir, nodePeerLock), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("locking the Node peer install: %w", err)
	}
	defer lock.Close() // releases the flock too
	if err := flock(lock); err != nil {
		return fmt.Errorf("locking %s: %w", lock.Name(), err)
	}
	missing := nodePeerInstalled(dir)
	if missing == nil {
		return nil // another test process installed it while we waited
	}

	ctx, cancel := context.WithTimeout(context.Background(), npmInstallTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, npm, "ci", "--prefix", dir, "--no-audit", "--no-fund")
	cmd.Dir = dir
	cmd.WaitDelay = 5 * time.Second
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("installing the Node ws peer (%v) with %q failed: %v\n%s",
			missing, cmd.String(), err, out.String())
	}
	if err := nodePeerInstalled(dir); err != nil {
		return fmt.Errorf("after %q: %w\n%s", cmd.String(), err, out.String())
	}
	return nil
}

// flock takes an exclusive lock on f, waiting for it; closing f releases it.
func flock(f *os.File) error {
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX)
		if !errors.Is(err, syscall.EINTR) {
			return err
		}
	}
}

// nodePeerInstalled returns nil when dir/node_modules holds the ws version
// that dir/package-lock.json pins, and says what is wrong otherwise.
func nodePeerInstalled(dir string) error {
	var installed struct{ Version string }
	if err := readJSON(filepath.Join(dir, "node_modules", "ws", "package.json"), &installed); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return errors.New("node_modules/ws is missing")
		}
		return err
	}
	var lock struct {
		Packages map[string]struct{ Version string } `json:"packages"`
	}
	if err := readJSON(filepath.Join(dir, "package-lock.json"), &lock); err != nil {
		return err
	}
	pinned := lock.Packages["node_modules/ws"].Version
	if pinned == "" {
		return errors.New("package-lock.json pins no ws version")
	}
	if installed.Version != pinned {
		return fmt.Errorf("node_modules/ws is %s, package-lock.json pins %s", installed.Version, pinned)
	}
	return nil
}

func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}
