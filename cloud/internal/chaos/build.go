package chaos

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"time"
)

// BuildPrograms builds the cloud and controller programs into dir and
// returns their paths. It runs `go build` inside the beaconvend module
// (the caller's working directory must be in it), bounded to 5 minutes.
func BuildPrograms(ctx context.Context, dir string) (cloud, controller string, err error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", dir+string(filepath.Separator), "beaconvend/cloud/cmd/cloud", "beaconvend/controller/cmd/controller")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", "", fmt.Errorf("chaos: go build: %w\n%s", err, out)
	}
	return filepath.Join(dir, "cloud"), filepath.Join(dir, "controller"), nil
}
