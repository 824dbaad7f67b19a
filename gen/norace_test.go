//go:build !race

package gen

// raceEnabled is true when the race detector is on.
const raceEnabled = false
