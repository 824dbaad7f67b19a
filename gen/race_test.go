//go:build race

package gen

// raceEnabled is true when the race detector is on; the 100k-student memory
// measurement is skipped then because instrumented code is far slower.
const raceEnabled = true
