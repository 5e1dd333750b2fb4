//go:build crashtest

package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"

	"github.com/delegation-program/uptime-coordinator/coordinator"
)

// haltAtVar names the checkpoint at which a crashtest build halts. It is read
// here rather than through config because it exists only in this build: the
// shipped binary has neither the variable nor any way to halt.
const haltAtVar = "COORDINATOR_HALT_AT"

// checkpoint implements COORDINATOR_HALT_AT=name#n for the crash tests: the
// n-th time a batch reaches checkpoint name, the process prints
// "HALT name n" to stderr and blocks until it is killed (or stopped by a
// signal, which abandons the batch), or resumed by SIGUSR1. n counts
// across batches and retries; the engine and the postgres.Database share
// the one Checkpoint.
func checkpoint() coordinator.Checkpoint {
	spec := os.Getenv(haltAtVar)
	if spec == "" {
		return nil
	}
	name, nth, _ := strings.Cut(spec, "#")
	want, err := strconv.Atoi(nth)
	if err != nil || want < 1 {
		want = 1
	}
	var reached atomic.Int64
	return func(ctx context.Context, point string) {
		if point != name || reached.Add(1) != int64(want) {
			return
		}
		// SIGUSR1 resumes (tests of what waits on a halted process), so
		// it is caught before the halt is announced.
		resume := make(chan os.Signal, 1)
		signal.Notify(resume, syscall.SIGUSR1)
		defer signal.Stop(resume)
		fmt.Fprintf(os.Stderr, "HALT %s %d\n", name, want)
		select {
		case <-ctx.Done():
		case <-resume:
			fmt.Fprintf(os.Stderr, "RESUME %s %d\n", name, want)
		}
	}
}
