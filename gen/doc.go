// Package gen writes deterministic synthetic school districts as OneRoster
// 1.2 CSV bulk packages, for tests, demos and load runs of registrar.
//
// Everything it emits is fake: people are random combinations of built-in
// lists of common given and family names, places are invented word
// combinations, e-mail addresses use reserved names (.test and example.net,
// RFC 2606/6761), telephone numbers use the fictional 555-01xx range and
// sourcedIds are UUID-shaped values derived from the seed. The same Config
// (including Seed) always yields byte-identical output; nothing depends on
// the wall clock, map order or goroutine scheduling.
//
// Generation streams: every row is computed from (seed, entity kind, index)
// and written at once, so memory stays flat however many students are
// requested; no file is held in memory.
//
// The room must import only the standard library and
// registrar/oneroster/csvspec (which supplies every header), nothing else
// from registrar: it must stay usable by any test without pulling in
// storage or services.
package gen
