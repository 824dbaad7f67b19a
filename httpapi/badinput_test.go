package httpapi_test

// Bad input: each malformed request gets a 4xx whose message names what is wrong,
// nothing is stored, a replaced object is left as it was, and no input at all makes
// any route answer 5xx.

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"testing"

	"registrar/authz"
	"registrar/internal/testdistrict"
	"registrar/records"
)

func marshal(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// badCase is one malformed write and what the answer must say.
type badCase struct {
	name      string
	body      []byte
	header    []string // extra header pairs
	status    int
	codeMinor string
	mention   []string // each must appear in imsx_description
	secret    string   // must not appear anywhere in the answer
}

func lineItemWith(t testing.TB, change func(o map[string]any)) []byte {
	return marshal(t, gradebookBody(records.LineItem, change))
}

func ref(id, typ string) map[string]any { return map[string]any{"sourcedId": id, "type": typ} }

// badLineItems are bodies a PUT of a line item must refuse.
func badLineItems(t testing.TB) []badCase {
	valid := lineItemWith(t, nil)
	set := func(field string, v any) []byte { return lineItemWith(t, func(o map[string]any) { o[field] = v }) }
	drop := func(field string) []byte { return lineItemWith(t, func(o map[string]any) { delete(o, field) }) }
	nested := strings.Repeat("[", 20000) + strings.Repeat("]", 20000)
	return []badCase{
		{name: "malformed JSON", body: []byte(`{"lineItem": {"title": "T",`), status: 400, codeMinor: "invaliddata", mention: []string{"JSON"}},
		{name: "a second JSON value after the object", body: append(append([]byte{}, valid...), " {}"...), status: 400, codeMinor: "invaliddata", mention: []string{"body"}},
		{name: "an empty body", body: []byte{}, status: 400, codeMinor: "invaliddata", mention: []string{"empty"}},
		{name: "a JSON null body", body: []byte(`null`), status: 400, codeMinor: "invaliddata", mention: []string{"lineItem"}},
		{name: "a JSON array body", body: []byte(`[]`), status: 400, codeMinor: "invaliddata", mention: []string{"body"}},
		{name: "a null object", body: []byte(`{"lineItem": null}`), status: 400, codeMinor: "invaliddata", mention: []string{"lineItem"}},
		{name: "a list for the object", body: []byte(`{"lineItem": []}`), status: 400, codeMinor: "invaliddata", mention: []string{"body"}},
		{name: "a second key beside the envelope", body: []byte(`{"lineItem": {}, "extra": 1}`), status: 400, codeMinor: "invaliddata", mention: []string{"lineItem"}},
		{name: "the collection envelope for one object", body: []byte(`{"lineItems": {}}`), status: 400, codeMinor: "invaliddata", mention: []string{"lineItem"}},
		{name: "a number sent as a string", body: set("resultValueMax", "100"), status: 400, codeMinor: "invaliddata", mention: []string{"resultValueMax", "number"}},
		{name: "a string sent as a number", body: set("title", 5), status: 400, codeMinor: "invaliddata", mention: []string{"title", "string"}},
		{name: "a boolean for a date-time", body: set("assignDate", true), status: 400, codeMinor: "invaliddata", mention: []string{"assignDate"}},
		{name: "an object where a list is expected", body: set("learningObjectiveSet", map[string]any{"source": "case"}), status: 400, codeMinor: "invaliddata", mention: []string{"learningObjectiveSet", "list"}},
		{name: "a string where a list is expected", body: set("learningObjectiveSet", "LO-1"), status: 400, codeMinor: "invaliddata", mention: []string{"learningObjectiveSet"}},
		{name: "a list where a reference is expected", body: set("class", []any{testdistrict.ClassMathA}), status: 400, codeMinor: "invaliddata", mention: []string{"class", "reference"}},
		{name: "a bare id where a reference is expected", body: set("category", testdistrict.Category), status: 400, codeMinor: "invaliddata", mention: []string{"category", "reference"}},
		{name: "a reference without a sourcedId", body: set("category", map[string]any{"type": "category"}), status: 400, codeMinor: "invaliddata", mention: []string{"category", "sourcedId"}},
		{name: "a reference of the wrong type", body: set("school", ref(testdistrict.SchoolA, "class")), status: 400, codeMinor: "invaliddata", mention: []string{"school", "org"}},
		{name: "a reference with an unknown key", body: set("class", map[string]any{"sourcedId": testdistrict.ClassMathA, "name": "x"}), status: 400, codeMinor: "invaliddata", mention: []string{"class", "name"}},
		{name: "an unknown field", body: set("colour", "red"), status: 400, codeMinor: "invaliddata", mention: []string{"colour"}},
		{name: "two unknown fields", body: lineItemWith(t, func(o map[string]any) { o["colour"] = "red"; o["points"] = 3 }), status: 400, codeMinor: "invaliddata", mention: []string{"colour", "points"}},
		{name: "a class that does not exist", body: set("class", ref("no-such-class", "class")), status: 400, codeMinor: "invaliddata", mention: []string{"class", "no-such-class"}},
		{name: "a category that does not exist", body: set("category", ref("no-such-category", "category")), status: 400, codeMinor: "invaliddata", mention: []string{"category", "no-such-category"}},
		{name: "a grading period that does not exist", body: set("gradingPeriod", ref("no-such-period", "academicSession")), status: 400, codeMinor: "invaliddata", mention: []string{"gradingPeriod", "no-such-period"}},
		{name: "a sourcedId in the body that differs from the path", body: set("sourcedId", "another-id"), status: 400, codeMinor: "invaliddata", mention: []string{"sourcedId", "another-id"}},
		{name: "a missing title", body: drop("title"), status: 400, codeMinor: "invaliddata", mention: []string{"title", "required"}},
		{name: "a missing class", body: drop("class"), status: 400, codeMinor: "invaliddata", mention: []string{"class", "required"}},
		{name: "a missing assignDate", body: drop("assignDate"), status: 400, codeMinor: "invaliddata", mention: []string{"assignDate", "required"}},
		{name: "every required field missing at once", body: []byte(`{"lineItem": {}}`), status: 400, codeMinor: "invaliddata",
			mention: []string{"title", "assignDate", "dueDate", "class", "school", "category"}},
		{name: "a blank title", body: set("title", "   "), status: 400, codeMinor: "invaliddata", mention: []string{"title", "empty"}},
		{name: "an invalid status", body: set("status", "deleted"), status: 400, codeMinor: "invaliddata", mention: []string{"status", "deleted"}},
		{name: "a month 13", body: set("assignDate", "2026-13-01T00:00:00Z"), status: 400, codeMinor: "invaliddata", mention: []string{"assignDate"}},
		{name: "February 30th", body: set("dueDate", "2026-02-30T00:00:00Z"), status: 400, codeMinor: "invaliddata", mention: []string{"dueDate"}},
		{name: "a date-time in words", body: set("dueDate", "next week"), status: 400, codeMinor: "invaliddata", mention: []string{"dueDate", "next week"}},
		{name: "a number too large for a float", body: []byte(strings.Replace(string(valid), `"resultValueMax":20`, `"resultValueMax":1e999`, 1)), status: 400, codeMinor: "invaliddata", mention: []string{"resultValueMax"}},
		{name: "a NUL character in the title", body: set("title", "a\x00b"), status: 400, codeMinor: "invaliddata", mention: []string{"title", "NUL"}},
		{name: "a title longer than the limit", body: set("title", strings.Repeat("x", records.MaxText+1)), status: 400, codeMinor: "invaliddata", mention: []string{"title"}},
		{name: "invalid UTF-8 in the body", body: []byte(strings.Replace(string(valid), "Lab report 1", "Lab \xff\xfe report", 1)), status: 400, codeMinor: "invaliddata", mention: []string{"UTF-8"}},
		{name: "JSON nested too deeply", body: []byte(`{"lineItem": {"title": "T", "learningObjectiveSet": ` + nested + `}}`), status: 400, codeMinor: "invaliddata", mention: []string{"body"}},
		{name: "a text/plain content type", body: valid, header: []string{"Content-Type", "text/plain"}, status: 400, codeMinor: "invaliddata", mention: []string{"Content-Type", "text/plain"}},
		{name: "a form content type", body: valid, header: []string{"Content-Type", "application/x-www-form-urlencoded"}, status: 400, codeMinor: "invaliddata", mention: []string{"Content-Type"}},
		{name: "a body over 1 MiB", body: set("description", strings.Repeat("x", 1<<20+1)), status: 413, codeMinor: "invaliddata", mention: []string{"larger than"}},
	}
}

func TestBadLineItemsAreRefusedAndNothingIsStored(t *testing.T) {
	t.Parallel()
	h, tok := newWriteHarness(t)
	for i, tt := range badLineItems(t) {
		path := fmt.Sprintf("%s/lineItems/bad-%02d", orG, i)
		t.Run(tt.name+" is refused", func(t *testing.T) {
			t.Parallel()
			r := send(t, h, "PUT", path, tok, tt.body, tt.header...)
			wantFailure(t, r, tt.status, tt.codeMinor, tt.mention...)
			wantFailure(t, send(t, h, "GET", path, tok, nil), 404, "unknownobject")
		})
	}
}

func TestBadReplacesLeaveTheObjectAsItWas(t *testing.T) {
	t.Parallel()
	h, tok := newWriteHarness(t)
	path := orG + "/lineItems/" + testdistrict.LineItemA
	before := send(t, h, "GET", path, tok, nil)
	if before.status != 200 {
		t.Fatalf("GET %s: status %d", path, before.status)
	}
	// Not parallel: each case compares with the same object.
	for _, tt := range badLineItems(t) {
		t.Run(tt.name+" leaves the line item unchanged", func(t *testing.T) {
			r := send(t, h, "PUT", path, tok, tt.body, tt.header...)
			if r.status < 400 || r.status >= 500 {
				t.Fatalf("PUT: status %d, want 4xx: %s", r.status, clipBody(r.body))
			}
			if after := send(t, h, "GET", path, tok, nil); string(after.body) != string(before.body) {
				t.Errorf("after a refused PUT the line item is\n%s\nwant\n%s", after.body, before.body)
			}
		})
	}
	results := send(t, h, "GET", orG+"/classes/"+testdistrict.ClassMathA+"/lineItems/"+testdistrict.LineItemA+"/results", tok, nil)
	if n := len(listOf(t, results, "results")); n != 2 {
		t.Errorf("the line item has %d results after refused replaces, want 2", n)
	}
}

func TestBadGradebookObjectsOfEveryKindAreRefused(t *testing.T) {
	t.Parallel()
	h, tok := newWriteHarness(t)
	const secret = "SECRET-VALUE-5e1f"
	result := func(change func(o map[string]any)) []byte { return marshal(t, gradebookBody(records.Result, change)) }
	tests := []struct {
		path string
		badCase
	}{
		{orG + "/results/bad-status", badCase{name: "a result with an unknown scoreStatus", body: result(func(o map[string]any) { o["scoreStatus"] = secret }),
			status: 400, codeMinor: "invaliddata", mention: []string{"scoreStatus"}, secret: secret}},
		{orG + "/results/bad-comment", badCase{name: "a result with a comment that is a number", body: result(func(o map[string]any) { o["comment"] = 5 }),
			status: 400, codeMinor: "invaliddata", mention: []string{"comment"}}},
		{orG + "/results/bad-comment-nul", badCase{name: "a result with a NUL in its comment", body: result(func(o map[string]any) { o["comment"] = secret + "\x00" }),
			status: 400, codeMinor: "invaliddata", mention: []string{"comment"}, secret: secret}},
		{orG + "/results/bad-score", badCase{name: "a result with a score sent as a string", body: result(func(o map[string]any) { o["score"] = "93" }),
			status: 400, codeMinor: "invaliddata", mention: []string{"score", "number"}}},
		{orG + "/results/bad-date", badCase{name: "a result with scoreDate February 30th", body: result(func(o map[string]any) { o["scoreDate"] = "2026-02-30" }),
			status: 400, codeMinor: "invaliddata", mention: []string{"scoreDate"}}},
		{orG + "/results/bad-datetime", badCase{name: "a result with a date-time for its date", body: result(func(o map[string]any) { o["scoreDate"] = "2026-09-12T08:00:00Z" }),
			status: 400, codeMinor: "invaliddata", mention: []string{"scoreDate"}}},
		{orG + "/results/bad-student", badCase{name: "a result for a student who does not exist", body: result(func(o map[string]any) { o["student"] = ref("no-such-student", "user") }),
			status: 400, codeMinor: "invaliddata", mention: []string{"student", "no-such-student"}}},
		{orG + "/results/bad-lineitem", badCase{name: "a result for a line item that does not exist", body: result(func(o map[string]any) { o["lineItem"] = ref("no-such-li", "lineItem") }),
			status: 400, codeMinor: "invaliddata", mention: []string{"lineItem", "no-such-li"}}},
		{orG + "/results/no-lineitem", badCase{name: "a result without a line item", body: result(func(o map[string]any) { delete(o, "lineItem") }),
			status: 400, codeMinor: "invaliddata", mention: []string{"lineItem", "required"}}},
		{orG + "/results/bad-late", badCase{name: "a result with late = maybe", body: result(func(o map[string]any) { o["late"] = "maybe" }),
			status: 400, codeMinor: "invaliddata", mention: []string{"late"}}},
		{orG + "/categories/bad-weight", badCase{name: "a category with a weight in words", body: []byte(`{"category": {"title": "Labs", "weight": "heavy"}}`),
			status: 400, codeMinor: "invaliddata", mention: []string{"weight"}}},
		{orG + "/categories/no-title", badCase{name: "a category without a title", body: []byte(`{"category": {"weight": 1}}`),
			status: 400, codeMinor: "invaliddata", mention: []string{"title"}}},
		{orG + "/categories/wrong-envelope", badCase{name: "a category sent as a line item", body: []byte(`{"lineItem": {"title": "Labs"}}`),
			status: 400, codeMinor: "invaliddata", mention: []string{"category"}}},
		{orG + "/scoreScales/bad-values", badCase{name: "a score scale whose values are an object", body: marshal(t, gradebookBody(records.ScoreScale, func(o map[string]any) { o["scoreScaleValue"] = map[string]any{"A": "90"} })),
			status: 400, codeMinor: "invaliddata", mention: []string{"scoreScaleValue"}}},
		{orG + "/scoreScales/no-class", badCase{name: "a score scale without a class", body: marshal(t, gradebookBody(records.ScoreScale, func(o map[string]any) { delete(o, "class") })),
			status: 400, codeMinor: "invaliddata", mention: []string{"class"}}},
		{orG + "/assessmentResults/bad-parent", badCase{name: "an assessment result for a missing assessment line item", body: marshal(t, gradebookBody(records.AssessmentResult, func(o map[string]any) {
			o["assessmentLineItem"] = ref("no-such-ali", "assessmentLineItem")
		})), status: 400, codeMinor: "invaliddata", mention: []string{"assessmentLineItem", "no-such-ali"}}},
		{orG + "/assessmentLineItems/bad-parent", badCase{name: "an assessment line item whose parent is missing", body: marshal(t, gradebookBody(records.AssessmentLineItem, func(o map[string]any) {
			o["parentAssessmentLineItem"] = ref("no-such-ali", "assessmentLineItem")
		})), status: 400, codeMinor: "invaliddata", mention: []string{"parentAssessmentLineItem"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name+" is refused", func(t *testing.T) {
			t.Parallel()
			r := send(t, h, "PUT", tt.path, tok, tt.body, tt.header...)
			wantFailure(t, r, tt.status, tt.codeMinor, tt.mention...)
			if tt.secret != "" && strings.Contains(string(r.body), tt.secret) {
				t.Errorf("the answer echoes the sensitive value: %s", r.body)
			}
			wantFailure(t, send(t, h, "GET", tt.path, tok, nil), 404, "unknownobject")
		})
	}
}

func TestBadIDsInThePathAreRefused(t *testing.T) {
	t.Parallel()
	h, tok := newWriteHarness(t)
	body := []byte(`{"category": {"title": "Labs"}}`)
	tests := []struct{ name, id, mention string }{
		{"invalid UTF-8", "%FF%FE", "UTF-8"},
		{"a NUL byte", "cat%00egory", "control"},
		{"a control character", "cat%01", "control"},
		{"a DEL character", "cat%7F", "control"},
		{"a leading space", "%20cat", "spaces"},
		{"a trailing tab", "cat%09", "control"},
		{"an id longer than 256 bytes", strings.Repeat("c", records.MaxID+1), "longer"},
	}
	t.Run("refusals", func(t *testing.T) {
		for _, tt := range tests {
			t.Run("a sourcedId with "+tt.name+" is refused", func(t *testing.T) {
				t.Parallel()
				path := orG + "/categories/" + tt.id
				wantFailure(t, send(t, h, "PUT", path, tok, body), 400, "invaliddata", "sourcedId", tt.mention)
				if r := send(t, h, "GET", path, tok, nil); r.status != 404 && r.status != 400 {
					t.Errorf("GET %s after the refused PUT: status %d, want 404 or 400", path, r.status)
				}
				if r := send(t, h, "DELETE", path, tok, nil); r.status != 404 && r.status != 400 {
					t.Errorf("DELETE %s: status %d, want 404 or 400", path, r.status)
				}
			})
		}
	})
	r := send(t, h, "GET", orG+"/categories", tok, nil)
	if got := idsOf(listOf(t, r, "categories")); len(got) != 1 || got[0] != testdistrict.Category {
		t.Errorf("categories = %v after refused PUTs, want only %s", got, testdistrict.Category)
	}
}

func TestBadPostsAreRefusedWhole(t *testing.T) {
	t.Parallel()
	h, tok := newWriteHarness(t)
	classLineItems := orG + "/classes/" + testdistrict.ClassMathA + "/lineItems"
	li := func(title string, change func(o map[string]any)) map[string]any {
		o := gradebookBody(records.LineItem, func(o map[string]any) {
			o["title"] = title
			o["sourcedId"] = "client-" + title
			if change != nil {
				change(o)
			}
		})["lineItem"].(map[string]any)
		return o
	}
	res := func(change func(o map[string]any)) map[string]any {
		return gradebookBody(records.Result, change)["result"].(map[string]any)
	}
	many := make([]any, 1001)
	for i := range many {
		many[i] = li("many", nil)
	}
	tests := []struct {
		path string
		badCase
	}{
		{classLineItems, badCase{name: "a single-object envelope", body: marshal(t, map[string]any{"lineItem": li("single", nil)}), status: 400, codeMinor: "invaliddata", mention: []string{"lineItems"}}},
		{classLineItems, badCase{name: "an empty list", body: []byte(`{"lineItems": []}`), status: 400, codeMinor: "invaliddata", mention: []string{"lineItems", "1 to"}}},
		{classLineItems, badCase{name: "more than 1000 objects", body: marshal(t, map[string]any{"lineItems": many}), status: 400, codeMinor: "invaliddata", mention: []string{"1000"}}},
		{classLineItems, badCase{name: "a null in the list", body: []byte(`{"lineItems": [null]}`), status: 400, codeMinor: "invaliddata", mention: []string{"lineItems[0]"}}},
		{classLineItems, badCase{name: "malformed JSON", body: []byte(`{"lineItems": [`), status: 400, codeMinor: "invaliddata", mention: []string{"lineItems"}}},
		{classLineItems, badCase{name: "a second object without a title", body: marshal(t, map[string]any{"lineItems": []any{li("atomic-1", nil), li("atomic-2", func(o map[string]any) { o["title"] = "" })}}),
			status: 400, codeMinor: "invaliddata", mention: []string{"lineItems[1]", "title"}}},
		{classLineItems, badCase{name: "a second object with an unknown field", body: marshal(t, map[string]any{"lineItems": []any{li("atomic-3", nil), li("atomic-4", func(o map[string]any) { o["colour"] = "red" })}}),
			status: 400, codeMinor: "invaliddata", mention: []string{"lineItems[1]", "colour"}}},
		{classLineItems, badCase{name: "a class in the body other than the path's", body: marshal(t, map[string]any{"lineItems": []any{li("other-class", func(o map[string]any) { o["class"] = ref(testdistrict.ClassSciA, "class") })}}),
			status: 400, codeMinor: "invaliddata", mention: []string{"class", testdistrict.ClassSciA}}},
		{classLineItems, badCase{name: "a text/plain content type", body: marshal(t, map[string]any{"lineItems": []any{li("plain", nil)}}), header: []string{"Content-Type", "text/plain"},
			status: 400, codeMinor: "invaliddata", mention: []string{"Content-Type"}}},
		{orG + "/classes/no-such-class/lineItems", badCase{name: "a class that does not exist", body: marshal(t, map[string]any{"lineItems": []any{li("nowhere", nil)}}), status: 404, codeMinor: "unknownobject"}},
		{orG + "/lineItems/" + testdistrict.LineItemA + "/results", badCase{name: "a result for a student who does not exist", body: marshal(t, map[string]any{"results": []any{res(func(o map[string]any) {
			o["student"] = ref("no-such-student", "user")
		})}}), status: 400, codeMinor: "invaliddata", mention: []string{"results[0]", "student"}}},
		{orG + "/classes/" + testdistrict.ClassMathA + "/academicSessions/" + testdistrict.GP1 + "/results", badCase{name: "a result whose line item is of another class",
			body: marshal(t, map[string]any{"results": []any{res(func(o map[string]any) { o["lineItem"] = ref(testdistrict.LineItemB, "lineItem") })}}), status: 400, codeMinor: "invaliddata", mention: []string{"results[0]", "lineItem"}}},
		{orG + "/classes/" + testdistrict.ClassMathA + "/academicSessions/" + testdistrict.Term2 + "/results", badCase{name: "a result whose line item is of another session",
			body: marshal(t, map[string]any{"results": []any{res(nil)}}), status: 400, codeMinor: "invaliddata", mention: []string{"results[0]", "academic session"}}},
	}
	t.Run("refusals", func(t *testing.T) {
		for _, tt := range tests {
			t.Run(tt.name+" is refused", func(t *testing.T) {
				t.Parallel()
				wantFailure(t, send(t, h, "POST", tt.path, tok, tt.body, tt.header...), tt.status, tt.codeMinor, tt.mention...)
			})
		}
	})
	// After every refusal: nothing was stored, not even the valid objects of a refused set.
	if got := idsOf(listOf(t, send(t, h, "GET", classLineItems, tok, nil), "lineItems")); len(got) != 1 || got[0] != testdistrict.LineItemA {
		t.Errorf("the class's line items are %v after refused POSTs, want only %s", got, testdistrict.LineItemA)
	}
	if n := len(listOf(t, send(t, h, "GET", orG+"/results", tok, nil), "results")); n != len(wantGets["getAllResults"]) {
		t.Errorf("%d results after refused POSTs, want %d", n, len(wantGets["getAllResults"]))
	}
}

// fillAll replaces every {param} segment of a route pattern with id, or, when id is
// "", with a test district id for the parameter.
func fillAll(pattern, id string) string {
	segs := strings.Split(pattern, "/")
	for i, s := range segs {
		if !strings.HasPrefix(s, "{") {
			continue
		}
		switch v, ok := pathParams[strings.Trim(s, "{}.")]; {
		case id != "":
			segs[i] = id
		case ok:
			segs[i] = url.PathEscape(v)
		default:
			segs[i] = "sweep-object"
		}
	}
	return strings.Join(segs, "/")
}

func TestNoRouteAnswers5xxToHostileInput(t *testing.T) {
	t.Parallel()
	for _, en := range bothEngines(t) {
		t.Run(en.name, func(t *testing.T) {
			t.Parallel()
			hostileInput(t, en.h, en.tok)
		})
	}
}

// hostileInput sends every route hostile ids, queries, bodies and tokens on h.
func hostileInput(t *testing.T, h *harness, tok string) {
	doc, statusInfo := statusInfoSchema(t)
	// Path ids; those no stored id can equal (records.ValidText) are refused with 400
	// before any query, alike on both engines (wrap).
	ids := []string{"%FF", "%00", "..%2F..%2Fetc%2Fpasswd", strings.Repeat("x", 5000), url.PathEscape("' OR 1=1 --"), "%25"}
	refused := map[string]bool{"%FF": true, "%00": true}
	// Queries that every list shares the parsing of; the others each stress one parser.
	queries := []string{
		"limit=-1", "offset=abc", "filter=%FF%FE", "filter=" + url.QueryEscape("sourcedId~'%'"), "sort=%00", "fields=,,",
		"limit=99999999999999999999", "limit=1&limit=x",
		"filter=" + url.QueryEscape(strings.Repeat("(", 5000)),
		"filter=" + url.QueryEscape(strings.Repeat("sourcedId='1' AND ", 100)+"sourcedId='1'"),
		"filter=" + url.QueryEscape("sourcedId='\x00'"),
		"filter=" + url.QueryEscape("dateLastModified>'9999-99-99'"), "filter=" + url.QueryEscape("status>='"+strings.Repeat("z", 9000)+"'"),
		"sort=" + strings.Repeat("a,", 5000), "sort=sourcedId&orderBy=%FF", "fields=" + strings.Repeat("x", 10000),
	}
	const shared = 6
	nested := []byte(strings.Repeat(`{"a":`, 50000) + "1" + strings.Repeat("}", 50000))
	bodies := [][]byte{[]byte("{"), []byte("null"), []byte("[]"), []byte(`{"x":1}`), []byte("\xff\xfe"), []byte(`{"lineItems":[null]}`),
		[]byte(`{"results":[{}]}`), []byte(`{"category":{"title":{"a":1}}}`), nested,
		[]byte(`{"results":[{"lineItem":{"sourcedId":"li-math-a-1"},"student":{"sourcedId":"user-student-3"},"scoreStatus":"exempt","scoreDate":"2026-01-01","score":1e400}]}`),
		[]byte(`{"result":{"score":-0,"scoreStatus":"ext:` + strings.Repeat("a", 20000) + `"}}`)}
	type probe struct {
		what, path, token string
		body              []byte
		header            []string
		want400           bool // an authenticated request that must be refused with 400
	}
	t.Run("routes", func(t *testing.T) {
		for _, rt := range routeTable() {
			write := rt.Method == "PUT" || rt.Method == "POST"
			var probes []probe
			for _, id := range ids {
				if strings.Contains(rt.Pattern, "{") {
					probes = append(probes, probe{"id " + id[:min(len(id), 20)], fillAll(rt.Pattern, id), tok, nil, nil, refused[id]})
				}
			}
			for i, q := range queries {
				switch {
				case rt.Method != "GET" && i > 0:
					continue // a write reads no query parameters: one probe suffices
				case i >= shared && strings.Contains(rt.Pattern, "{"):
					continue // parsed as for the top-level collection of the same entity
				}
				probes = append(probes, probe{"query " + q[:min(len(q), 30)], fillAll(rt.Pattern, "") + "?" + q, tok, nil, nil, false})
			}
			// The parameters of registrar's own routes (OneRoster's ignore them), with
			// text no stored value holds.
			for _, name := range []string{"student", "principal", "action", "chain", "cursor", "before", "since", "after", "reason", "mode"} {
				for _, v := range []string{"%00", "%FF"} {
					if strings.HasPrefix(rt.Pattern, "/v1/") {
						probes = append(probes, probe{"query " + name + "=" + v, fillAll(rt.Pattern, "") + "?" + name + "=" + v, tok, nil, nil, false})
					}
				}
			}
			if write {
				for _, b := range bodies {
					probes = append(probes, probe{"body " + string(b[:min(len(b), 20)]), fillAll(rt.Pattern, ""), tok, b, nil, false})
				}
				for _, form := range []string{"a=b&c", "grant_type=client_credentials&client_id=%00&client_secret=%00", "grant_type=client_credentials&client_id=%FF%FE&client_secret=x"} {
					probes = append(probes, probe{"form body " + form, fillAll(rt.Pattern, ""), tok, []byte(form), []string{"Content-Type", "application/x-www-form-urlencoded"}, false})
				}
				probes = append(probes, probe{"no content type", fillAll(rt.Pattern, ""), tok, []byte("{"), []string{"Content-Type", ""}, false})
			}
			for _, bad := range []string{"", "a.b.c"} {
				probes = append(probes, probe{"token " + bad[:min(len(bad), 12)], fillAll(rt.Pattern, ""), bad, nil, nil, false})
			}
			t.Run(rt.Method+" "+rt.Pattern+" never answers 5xx", func(t *testing.T) {
				t.Parallel()
				skipUnavailable(t, h, tok, rt.Method, rt.Pattern)
				// Probes run concurrently: the audit's group commit then shares each fsync.
				var wg sync.WaitGroup
				for _, p := range probes {
					wg.Go(func() {
						r, err := trySend(h, rt.Method, p.path, p.token, p.body, p.header...)
						if err != nil {
							t.Errorf("%s: %s %s: %v", p.what, rt.Method, clipBody([]byte(p.path)), err)
							return
						}
						if r.status >= 500 {
							t.Errorf("%s: %s %s: status %d: %s", p.what, rt.Method, clipBody([]byte(p.path)), r.status, clipBody(r.body))
							return
						}
						if p.want400 && r.status != 400 {
							t.Errorf("%s: %s %s: status %d, want 400: %s", p.what, rt.Method, clipBody([]byte(p.path)), r.status, clipBody(r.body))
						}
						if r.status >= 400 && strings.HasPrefix(p.path, "/ims/oneroster/") && r.header.Get("Content-Type") == "application/json" {
							var v any
							if err := json.Unmarshal(r.body, &v); err != nil {
								t.Errorf("%s: status %d with a body that is not JSON: %s", p.what, r.status, clipBody(r.body))
							} else if problems := doc.validate(statusInfo, v, "$"); len(problems) > 0 {
								t.Errorf("%s: status %d with an invalid imsx_StatusInfo: %v", p.what, r.status, problems)
							}
						}
					})
				}
				wg.Wait()
			})
		}
	})
	// Every request has been answered and logged: the log shows no recovered panic.
	h.srv.Close()
	for _, line := range strings.Split(h.logText(), "\n") {
		if strings.Contains(line, `"msg":"panic"`) || strings.Contains(line, `"msg":"internal error"`) {
			t.Errorf("log: %s", clipBody([]byte(line)))
		}
	}
}

// skipUnavailable skips a route that a plain request with every scope finds switched
// off on this harness (501 or 503, e.g. exports with no exporter wired): hostile
// input cannot reach code that is not there.
func skipUnavailable(t *testing.T, h *harness, tok, method, pattern string) {
	t.Helper()
	var body []byte
	if method == "PUT" || method == "POST" {
		body = []byte(`{}`)
	}
	r, err := trySend(h, method, fillAll(pattern, ""), tok, body)
	if err == nil && (r.status == 501 || r.status == 503) {
		t.Skipf("%s %s answers %d to a plain request on this harness: %s", method, pattern, r.status, clipBody(r.body))
	}
}

// A token without the scopes must be refused politely too.
func TestNoRouteAnswers5xxToAClientWithoutScopes(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	full := h.client(authz.AllScopes)
	tok := h.client([]string{authz.RosterCoreReadonly})
	for _, rt := range routeTable() {
		t.Run(rt.Method+" "+rt.Pattern+" refuses a read-only token without 5xx", func(t *testing.T) {
			skipUnavailable(t, h, full, rt.Method, rt.Pattern)
			var body []byte
			if rt.Method == "PUT" || rt.Method == "POST" {
				body = []byte(`{}`)
			}
			if r := send(t, h, rt.Method, fillAll(rt.Pattern, ""), tok, body); r.status >= 500 {
				t.Errorf("status %d: %s", r.status, clipBody(r.body))
			}
		})
	}
}

// Query parameters that no stored value can equal (a NUL byte, a control character,
// bytes that are not UTF-8) are refused alike on both engines, where PostgreSQL
// could not even compare them and SQLite would look them up and find nothing.
func TestTextParametersAreRefusedOnBothEngines(t *testing.T) {
	t.Parallel()
	for _, en := range bothEngines(t) {
		t.Run(en.name, func(t *testing.T) {
			t.Parallel()
			for _, tt := range []struct{ query, mention string }{
				{"student=%00", "control"}, {"student=a%01b", "control"}, {"principal=%FF", "UTF-8"},
				{"action=read%00", "control"}, {"chain=%C3", "UTF-8"},
				// A cursor is base64 JSON: its time and chain are checked once decoded.
				{"cursor=" + base64.RawURLEncoding.EncodeToString([]byte(`{"t":"\u0000","c":"x","s":1}`)), "cursor"},
				{"cursor=" + base64.RawURLEncoding.EncodeToString([]byte(`{"t":"2026-09-01T00:00:00.000Z","c":"a\u0000","s":1}`)), "cursor"},
			} {
				r := send(t, en.h, "GET", "/v1/audit?"+tt.query, en.tok, nil)
				name, _, _ := strings.Cut(tt.query, "=")
				if r.status != 400 || !strings.Contains(string(r.body), name) || !strings.Contains(string(r.body), tt.mention) {
					t.Errorf("GET /v1/audit?%s: %d %s, want 400 naming %s and %q", tt.query, r.status, clipBody(r.body), name, tt.mention)
				}
			}
			if r := send(t, en.h, "GET", "/v1/audit?student="+testdistrict.Student3, en.tok, nil); r.status != 200 {
				t.Errorf("GET /v1/audit?student=%s: %d %s", testdistrict.Student3, r.status, clipBody(r.body))
			}
		})
	}
}
