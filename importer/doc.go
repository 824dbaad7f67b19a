// Package importer moves OneRoster 1.2 CSV packages (a folder or a zip holding
// manifest.csv and one file per entity) into and out of the store.
//
// An import is strict and all-or-nothing. Pass 1 streams every file of the package
// once and checks everything that can be checked without writing: the manifest,
// header names and order, field counts, UTF-8, required values, types, dates,
// vocabularies, duplicate sourcedIds and references across files and into the store.
// It keeps only compact sets (16-byte keyed hashes and line numbers) so memory stays
// flat whatever the package size, and it reports every problem of the package (up to
// a limit) with its file, line and column. Pass 2 streams the package again inside ONE
// store transaction (sqlstore's Write): rows are upserted in batches through the same
// sealing, change-log and audit rules as every other write, rows absent from bulk
// files are marked tobedeleted in SQL, and one audit event describes the whole import.
// A failure or a kill at any moment leaves the store as it was; a rerun of the same
// package changes nothing.
//
// The mapping from CSV columns to records fields is data (mapping.go): one table per
// file. Files that describe parts of another entity's record (roles.csv and
// userProfiles.csv fill a user's roles and userProfiles; classResources.csv a class's
// resources; the learning-objective and score-scale files fill line items and results)
// are staged in a temporary table inside the transaction and merged into their owners.
//
// Export writes the objects a caller may see as a valid OneRoster 1.2 CSV package.
//
// importer imports records, audit, the CSV binding (oneroster/csvspec) and the store;
// never httpapi or cmd.
package importer
