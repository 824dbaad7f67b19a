package importer

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
)

// Problem is one thing wrong with a package, located by file, line and column. Its
// message never holds the value of a sensitive column.
type Problem struct {
	File    string `json:"file"`
	Line    int    `json:"line,omitempty"`
	Column  string `json:"column,omitempty"`
	Message string `json:"message"`
}

// String formats a problem as FILE:LINE: column COL: message.
func (p Problem) String() string {
	var b strings.Builder
	b.WriteString(p.File)
	if p.Line > 0 {
		b.WriteString(":" + strconv.Itoa(p.Line))
	}
	b.WriteString(": ")
	if p.Column != "" {
		b.WriteString("column " + p.Column + ": ")
	}
	b.WriteString(p.Message)
	return b.String()
}

// DefaultMaxProblems is how many problems an import keeps (it counts them all).
const DefaultMaxProblems = 1000

// InvalidError is the error of an import whose package has problems: nothing was
// written.
type InvalidError struct {
	Problems []Problem // the first problems found, in file order, then line order
	Total    int       // how many problems were found in all
}

func (e *InvalidError) Error() string {
	if len(e.Problems) == 0 {
		return "the package is not valid"
	}
	if e.Total == 1 {
		return "the package is not valid: " + e.Problems[0].String()
	}
	return fmt.Sprintf("the package is not valid: %d problems, the first: %s", e.Total, e.Problems[0].String())
}

// ProblemList returns the problems kept and how many there are in all.
func (e *InvalidError) ProblemList() (any, int) { return e.Problems, e.Total }

// problems collects the problems of one import, up to a limit. Pass 2's producer and
// writer add to it concurrently.
type problems struct {
	mu    sync.Mutex
	list  []Problem
	total int
	limit int
}

func (ps *problems) count() int {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	return ps.total
}

func (ps *problems) add(file string, line int, col, format string, args ...any) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	ps.total++
	if len(ps.list) < ps.limit {
		ps.list = append(ps.list, Problem{File: file, Line: line, Column: col, Message: fmt.Sprintf(format, args...)})
	}
}

// err returns the problems as an *InvalidError, or nil if there are none.
func (ps *problems) err() error {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if ps.total == 0 {
		return nil
	}
	list := append([]Problem(nil), ps.list...)
	sort.SliceStable(list, func(i, j int) bool {
		a, b := list[i], list[j]
		if a.File != b.File {
			return fileRank(a.File) < fileRank(b.File)
		}
		return a.Line < b.Line
	})
	return &InvalidError{Problems: list, Total: ps.total}
}

// fileRank orders files as a reader of the package would check them: the manifest,
// then the data files in the binding's order, then anything else.
func fileRank(name string) int {
	if name == "manifest.csv" {
		return -1
	}
	if fi, ok := fileNamed[name]; ok {
		return fi.index
	}
	return len(files)
}

// quote shows a non-sensitive value in a message, shortened.
func quote(v string) string {
	if len(v) > 64 {
		v = v[:61] + "..."
	}
	return strconv.Quote(strings.ToValidUTF8(v, "?"))
}
