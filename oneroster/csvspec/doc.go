// Package csvspec is the single source of truth for the OneRoster 1.2 CSV
// binding: which files exist, their exact header order, column types,
// required flags, vocabularies and cross-file references, plus the
// manifest.csv reader and writer.
//
// It is used by the CSV importer, the CSV exporter and the synthetic data
// generator (registrar/gen), so that all three agree on byte-level layout.
//
// The room is pure data plus small helpers: it must import only the standard
// library and nothing from registrar (no storage, no HTTP, no records).
//
// # Sources
//
// The tables target the 1EdTech OneRoster CSV Binding 1.2.1 (Final Release,
// 22 August 2023, https://www.imsglobal.org/spec/oneroster/v1p2/bind/csv/);
// a package declares oneroster.version "1.2" in its manifest. The binding's
// own tables were not readable offline, so header orders were taken from
// public open-source 1.2 CSV implementations (several independent ones agree
// on the rostering files; the gradebook and resources files rest on one
// validator that targets 1.2.1 explicitly), and field meanings, required
// fields and vocabularies were checked against the OneRoster 1.2 REST
// OpenAPI documents (rostering and gradebook services). Treat the gradebook
// and resources tables as the less certain part.
//
// Two header variants are seen in the wild; [MatchHeader] accepts them on
// input, while exporters write the form held in [Files]:
//
//   - users.csv with a resourceSourcedIds column after userMasterIdentifier,
//     as many producers of the original 1.2 binding write it; the 1.2.1
//     corrections drop it (user resources travel in userResources.csv).
//   - lineItems.csv with gradingPeriodSourcedId (the 1.1 name) in place of
//     academicSessionSourcedId.
//
// # Format rules encoded here
//
//   - UTF-8, RFC 4180 quoting, header row required, header names are
//     case-sensitive and in the order given by [File.Columns]; extension
//     columns (metadata.*) may follow the defined ones.
//   - Files with no data rows must not be shipped; the manifest marks them
//     "absent".
//   - Multi-valued fields (List, GUIDList) hold comma-separated values inside
//     one quoted field.
//   - The first three columns of every data file are sourcedId, status and
//     dateLastModified. In a bulk file status and dateLastModified must be
//     empty; in a delta file both must be filled (see [CheckLifecycle]).
package csvspec
