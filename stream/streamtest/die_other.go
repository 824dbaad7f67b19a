//go:build !linux

package streamtest

import "os/exec"

// dieWithParent is Linux-only; elsewhere Stop (from TestMain) ends the emulator.
func dieWithParent(*exec.Cmd) {}
