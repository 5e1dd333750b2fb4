//go:build !crashtest

package main

import "github.com/delegation-program/uptime-coordinator/coordinator"

// checkpoint is the batch checkpoint of the shipped binary: none. The crash
// tests build the binary with -tags crashtest, which halts it at a chosen
// checkpoint (see checkpoint_crashtest.go).
func checkpoint() coordinator.Checkpoint { return nil }
