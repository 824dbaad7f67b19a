// Package query parses the OneRoster 1.2 collection query parameters
// (filter, sort, orderBy, fields, limit and offset) into a small AST and
// plain values. It does no SQL and knows nothing about resources: another
// package checks field names against a resource and compiles the AST to
// bound SQL parameters. This package must import nothing from registrar
// (standard library only), so that it stays a leaf of the import graph;
// a test enforces this.
//
// # Filter grammar
//
// The OneRoster 1.2 REST binding writes a filter as
// <field><predicate>'<value>' joined by " AND " / " OR ". This package
// accepts the following grammar (EBNF; "sp" is one or more ASCII spaces,
// "ws" is zero or more):
//
//	filter    = ws or-expr ws .
//	or-expr   = and-expr { sp "OR" sp and-expr } .
//	and-expr  = primary { sp "AND" sp primary } .
//	primary   = predicate | "(" ws or-expr ws ")" .
//	predicate = field ws op ws value .
//	field     = ident { "." ident } .
//	ident     = ( letter | "_" ) { letter | digit | "_" } .   (ASCII only)
//	op        = "=" | "!=" | ">" | ">=" | "<" | "<=" | "~" .
//	value     = "'" { any UTF-8 character except "'" and NUL | "''" } "'" .
//
// For example:
//
//	familyName='O''Brien' AND (role='student' OR role='teacher')
//	course.sourcedId = 'c-1' OR dateLastModified>='2024-01-01'
//
// Decisions where the specification is silent or loose (we are strict):
//
//   - AND binds tighter than OR; both are left-associative, so
//     a OR b AND c is a OR (b AND c) and a AND b AND c is (a AND b) AND c.
//   - Parentheses for grouping are an extension; they may nest at most
//     MaxDepth (32) levels.
//   - AND and OR are case-sensitive, as the specification writes them.
//     Lowercase or mixed-case "and"/"or" is rejected with a message that
//     names the correct spelling, rather than silently accepted.
//   - AND and OR must have at least one space on each side, even next to
//     a quote or a parenthesis ("a='1'AND b='2'" is rejected). Only the
//     ASCII space counts as white space (a "+" in a URL decodes to it);
//     tabs and newlines outside values are errors. Spaces are optional
//     around comparison operators and inside parentheses, and leading or
//     trailing spaces are ignored.
//   - A field named exactly AND or OR is rejected (it is read as a
//     misplaced logical operator).
//   - Every value must be single-quoted, numbers and booleans included;
//     a single quote inside a value is written as two single quotes in a
//     row (see the example below). A value may be empty.
//     Values are not interpreted: their type is checked by the compiler.
//     A value must be valid UTF-8 and contain no NUL byte; other
//     characters, including control characters, are kept as written.
//   - A run of operator characters that is not one of the seven
//     operators ("==", "<>", "=~", "!") is an unknown operator.
//   - At most MaxPredicates (64) predicates; at most MaxFilterLen
//     (8 KiB) bytes. An empty filter ("") means no filter; a filter of
//     only spaces is an error.
//
// # Errors
//
// Every parse error is an *Error. Its CodeMinor is the OneRoster
// imsx_codeMinorFieldValue to report:
//
//   - filter: "invalid_filter_field" when the text where a field name
//     must be is not a valid field name (bad first character, empty
//     segment around ".", a character such as "-" inside the name);
//     "invaliddata" for everything else (missing or unknown operator,
//     missing or unterminated quote, NUL or invalid UTF-8 in a value,
//     empty predicate, misplaced or wrongly-cased AND/OR, unbalanced
//     parentheses, trailing text, and the depth, count and length limits).
//   - sort: "invalid_sort_field" for a sort entry that is not a dotted
//     identifier. Note that "invalid_sort_field" comes from OneRoster 1.1:
//     the 1.2 OpenAPI imsx_codeMinorFieldValue enumeration does not list
//     it, so a strictly 1.2 response writer may map it to "invaliddata".
//   - fields: "invalid_selection_field".
//   - orderBy, limit, offset, and over-long sort or fields values:
//     "invaliddata".
//
// Pos is the 0-based byte offset of the offending text in the parameter
// value, or -1 when no single position applies (a number out of range).
// For an over-long value Pos is the first byte past the limit.
//
// # Sort, orderBy and fields
//
// sort and fields are comma-separated lists of dotted identifiers. Each
// entry is trimmed of ASCII spaces and tabs; an empty entry (",,", a
// trailing comma, or a value of only spaces) is an error; duplicates are
// dropped, keeping the first occurrence. The OpenAPI document declares
// fields as a form-style array, so a caller that receives repeated
// fields= parameters should join them with "," before calling
// ParseFields. orderBy must be exactly "asc" or "desc" (lowercase, as the
// OpenAPI enumeration lists them) or empty for ascending; it is checked
// even when sort is empty. Each list value is at most MaxListLen bytes.
//
// # Paging
//
// limit and offset are decimal integers written with ASCII digits only
// (no sign other than a leading "-", which is reported as a negative
// number; no spaces; leading zeros are allowed). The OpenAPI documents
// declare both as int32, so a value above 2147483647 is an overflow error
// rather than a clamp. limit defaults to DefaultLimit (100) and must be at
// least 1; a limit above the caller's max is clamped to max, not
// rejected, and so is the default. max < 1 means no maximum. offset
// defaults to 0, must not be negative, and may point past the end of the
// collection (that yields an empty page, not an error).
package query
