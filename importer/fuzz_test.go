package importer

import (
	"bytes"
	"encoding/csv"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"registrar/oneroster/csvspec"
	"registrar/records"
)

// FuzzCSVReader: the reader never panics, its line numbers never go back, and every
// field it returns starts on or after its record's line.
func FuzzCSVReader(f *testing.F) {
	for _, dir := range []string{"bulk", "quirks", "delta", "errors/syntax", "errors/utf8"} {
		ents, _ := os.ReadDir(filepath.Join("..", "testdata", "csv", dir))
		for _, e := range ents {
			if b, err := os.ReadFile(filepath.Join("..", "testdata", "csv", dir, e.Name())); err == nil {
				f.Add(b)
			}
		}
	}
	f.Add([]byte("\uFEFFa,b\r\n\"x\ny\",\"z\"\"\"\r\n"))
	f.Add([]byte("a,\"b\nc"))
	f.Fuzz(func(t *testing.T, data []byte) {
		rd := newCSVReader(bytes.NewReader(data), "f.csv")
		last := 0
		for range 10000 {
			rec, err := rd.next()
			if errors.Is(err, io.EOF) {
				return
			}
			var se *errSyntax
			if errors.As(err, &se) {
				if se.line < last {
					t.Fatalf("syntax error at line %d after a record at line %d", se.line, last)
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error %v", err)
			}
			if rd.line < last {
				t.Fatalf("record at line %d after one at line %d", rd.line, last)
			}
			for i := range rec {
				if rd.fieldLine(i) < rd.line {
					t.Fatalf("field %d starts on line %d, before its record (%d)", i, rd.fieldLine(i), rd.line)
				}
			}
			last = rd.line
		}
	})
}

// One fuzz target per file of the binding: each drives that file's row decoder.
func FuzzDecodeOrgs(f *testing.F)             { fuzzFile(f, "orgs") }
func FuzzDecodeAcademicSessions(f *testing.F) { fuzzFile(f, "academicSessions") }
func FuzzDecodeCourses(f *testing.F)          { fuzzFile(f, "courses") }
func FuzzDecodeClasses(f *testing.F)          { fuzzFile(f, "classes") }
func FuzzDecodeUsers(f *testing.F)            { fuzzFile(f, "users") }
func FuzzDecodeUserProfiles(f *testing.F)     { fuzzFile(f, "userProfiles") }
func FuzzDecodeRoles(f *testing.F)            { fuzzFile(f, "roles") }
func FuzzDecodeEnrollments(f *testing.F)      { fuzzFile(f, "enrollments") }
func FuzzDecodeDemographics(f *testing.F)     { fuzzFile(f, "demographics") }
func FuzzDecodeResources(f *testing.F)        { fuzzFile(f, "resources") }
func FuzzDecodeClassResources(f *testing.F)   { fuzzFile(f, "classResources") }
func FuzzDecodeCourseResources(f *testing.F)  { fuzzFile(f, "courseResources") }
func FuzzDecodeUserResources(f *testing.F)    { fuzzFile(f, "userResources") }
func FuzzDecodeCategories(f *testing.F)       { fuzzFile(f, "categories") }
func FuzzDecodeScoreScales(f *testing.F)      { fuzzFile(f, "scoreScales") }
func FuzzDecodeLineItems(f *testing.F)        { fuzzFile(f, "lineItems") }
func FuzzDecodeLineItemLearningObjectiveIds(f *testing.F) {
	fuzzFile(f, "lineItemLearningObjectiveIds")
}
func FuzzDecodeLineItemScoreScales(f *testing.F)        { fuzzFile(f, "lineItemScoreScales") }
func FuzzDecodeResults(f *testing.F)                    { fuzzFile(f, "results") }
func FuzzDecodeResultLearningObjectiveIds(f *testing.F) { fuzzFile(f, "resultLearningObjectiveIds") }
func FuzzDecodeResultScoreScales(f *testing.F)          { fuzzFile(f, "resultScoreScales") }

// fuzzFile checks one file's decoder on arbitrary rows (in bulk and delta mode):
//   - it never panics;
//   - a problem never quotes the value of a sensitive column;
//   - a row without problems gives an object that passes records.Validate and that
//     the exporter writes back as a row decoding to the same object (entity files),
//     or a staged row whose entry survives the merge unchanged (child files).
//
// The seed corpus is every row of the golden packages.
func fuzzFile(f *testing.F, name string) {
	fi := fileNamed[name]
	for _, dir := range []string{"bulk", "quirks", "delta"} {
		b, err := os.ReadFile(filepath.Join("..", "testdata", "csv", dir, fi.spec.FileName))
		if err != nil {
			continue
		}
		lines := strings.Split(strings.ReplaceAll(string(b), "\r\n", "\n"), "\n")
		for _, l := range lines[1:] {
			if l != "" {
				f.Add(l, dir == "delta")
			}
		}
	}
	f.Add(strings.Repeat(",", len(fi.spec.Columns)-1), false)
	f.Fuzz(func(t *testing.T, row string, delta bool) {
		mode := csvspec.ModeBulk
		if delta {
			mode = csvspec.ModeDelta
		}
		src := strings.Join(fi.spec.Header(), ",") + "\n" + row + "\n"
		rd := newCSVReader(strings.NewReader(src), fi.spec.FileName)
		hdr, err := rd.next()
		if err != nil {
			t.Fatal(err)
		}
		h, msg, _ := matchHeader(fi, append([]string(nil), hdr...))
		if h == nil {
			t.Fatalf("the binding's own header does not match: %s", msg)
		}
		rec, err := rd.next()
		if err != nil {
			return // not one CSV record
		}
		probs := &problems{limit: 100}
		d := newRowDecoder(fi, mode, h, probs)
		loc := rd.locate(len(rec))
		if !d.start(rec, &loc) {
			return
		}
		var obj records.Object
		var kind int
		var child []byte
		if fi.entity != nil {
			obj, kind = d.entity()
		} else {
			r := d.child()
			child = r.Payload
		}
		for _, p := range probs.list {
			if p.Column == "" || !fi.sensitive[p.Column] {
				continue
			}
			// The message may list the column's vocabulary; it must not echo the value.
			c, _ := fi.spec.Column(p.Column)
			msg := p.Message
			for _, tok := range append([]string{c.Name, "ext:NAME"}, c.Enum...) {
				msg = strings.ReplaceAll(msg, tok, "")
			}
			if v := rec[h.idx[fi.spec.Index(p.Column)]]; len(v) >= 6 && strings.Contains(msg, v) {
				t.Fatalf("a problem shows the sensitive value of %s: %s", p.Column, p.Message)
			}
		}
		if d.failed {
			return
		}
		if fi.child != nil {
			es := applyChild(nil, "k", false, child)
			v, err := childValue(fi.child, es)
			if err != nil {
				t.Fatalf("merge: %v", err)
			}
			back, err := childEntries(fi.child, v)
			if err != nil || len(back) != 1 {
				t.Fatalf("entries of %v: %v %v", v, back, err)
			}
			if !jsonEqual(back[0].item, child) {
				t.Fatalf("entry changed in the merge: %s became %s", child, back[0].item)
			}
			return
		}
		if kind != rowActive {
			return
		}
		for _, fe := range records.Validate(fi.ent, obj) {
			if !d.childFields[fe.Field] { // fields filled from other files are checked once merged
				t.Fatalf("a row without problems gives an invalid object: %v", fe)
			}
		}
		// Export the object and decode it again.
		var buf bytes.Buffer
		o := &out{fi: fi, cw: csv.NewWriter(&buf), rec: make([]string, len(fi.spec.Columns))}
		ex := &exporter{opt: ExportOptions{Mode: mode}}
		if err := ex.row(o, obj); err != nil {
			t.Fatalf("export: %v", err)
		}
		o.cw.Flush()
		rd2 := newCSVReader(strings.NewReader(strings.Join(fi.spec.Header(), ",")+"\n"+buf.String()), fi.spec.FileName)
		rd2.next()
		rec2, err := rd2.next()
		if err != nil {
			t.Fatalf("the exported row does not read back: %v (%q)", err, buf.String())
		}
		probs2 := &problems{limit: 100}
		d2 := newRowDecoder(fi, mode, h, probs2)
		loc2 := rd2.locate(len(rec2))
		if !d2.start(rec2, &loc2) {
			t.Fatalf("the exported row does not decode: %v", probs2.list)
		}
		obj2, _ := d2.entity()
		if d2.failed {
			t.Fatalf("the exported row %q has problems: %v", buf.String(), probs2.list)
		}
		if !reflect.DeepEqual(obj, obj2) {
			t.Fatalf("round trip changed the object:\n  %v\n  %v", obj, obj2)
		}
	})
}

func jsonEqual(a, b []byte) bool { return bytes.Equal(compact(a), compact(b)) }
