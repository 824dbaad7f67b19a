package httpapi_test

// Fuzzing at the HTTP boundary: whatever a client sends, no route answers 5xx, a
// refused write leaves nothing behind, and an accepted one is stored as answered.
// The seeds run with the tests; to search further, e.g.
//
//	go test -run '^$' -fuzz FuzzGradebookPut -fuzztime 5m ./httpapi

import (
	"encoding/json"
	"fmt"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"registrar/records"
)

// fuzzKinds are the gradebook objects a client PUTs; a fuzz input picks one by index.
var fuzzKinds = []*records.Entity{records.Category, records.LineItem, records.Result, records.ScoreScale, records.AssessmentLineItem, records.AssessmentResult}

// FuzzGradebookPut PUTs a body to a new sourcedId of one gradebook kind and checks
// what the answer promises: never 5xx; a 4xx is a OneRoster error and nothing is
// stored; a 201 is what GET then returns, conforms to the 1.2 schema, and the same
// PUT again replaces it with 200; DELETE then answers 204 and the object is gone.
func FuzzGradebookPut(f *testing.F) {
	h, tok := newWriteHarness(f)
	docs, err := loadDocs()
	if err != nil {
		f.Fatal(err)
	}
	gb := docs[1]
	for i, e := range fuzzKinds {
		f.Add(uint8(i), marshal(f, gradebookBody(e, nil)))
		f.Add(uint8(i), marshal(f, gradebookBody(e, func(o map[string]any) { o["status"] = "tobedeleted"; o["metadata"] = map[string]any{"x": 1} })))
	}
	for _, tt := range badLineItems(f) {
		if len(tt.header) == 0 && len(tt.body) < 64<<10 {
			f.Add(uint8(1), tt.body)
		}
	}
	f.Add(uint8(2), marshal(f, gradebookBody(records.Result, func(o map[string]any) { o["score"] = 1e300; o["scoreStatus"] = "exempt" })))
	f.Add(uint8(2), marshal(f, gradebookBody(records.Result, func(o map[string]any) { o["textScore"] = "A-"; delete(o, "score") })))
	f.Add(uint8(1), marshal(f, gradebookBody(records.LineItem, func(o map[string]any) { o["title"] = strings.Repeat("é", 3000) })))
	var n atomic.Int64
	f.Fuzz(func(t *testing.T, kind uint8, body []byte) {
		e := fuzzKinds[int(kind)%len(fuzzKinds)]
		path := fmt.Sprintf("%s/%s/fz-%d", orG, e.Path, n.Add(1))
		doc := gb.base + "/" + e.Path + "/{sourcedId}"
		r, err := trySend(h, "PUT", path, tok, body)
		if err != nil {
			t.Fatalf("PUT %s: %v", path, err)
		}
		switch {
		case r.status >= 500:
			t.Fatalf("PUT %s: status %d: %s\nbody: %s", path, r.status, clipBody(r.body), clipBody(body))
		case r.status >= 400:
			var si map[string]any
			if err := json.Unmarshal(r.body, &si); err != nil || si["imsx_codeMajor"] != "failure" || si["imsx_description"] == "" {
				t.Fatalf("PUT %s: status %d without a OneRoster error body: %s", path, r.status, clipBody(r.body))
			}
			if g := send(t, h, "GET", path, tok, nil); g.status != 404 {
				t.Fatalf("a PUT refused with %d left an object behind (GET: %d %s)\nbody: %s", r.status, g.status, clipBody(g.body), clipBody(body))
			}
			return
		case r.status != 201:
			t.Fatalf("PUT %s creating an object: status %d, want 201: %s", path, r.status, clipBody(r.body))
		}
		put := singleOf(t, r, e.Single)
		validateStored(t, gb, doc, r)
		g := send(t, h, "GET", path, tok, nil)
		if g.status != 200 {
			t.Fatalf("GET after a PUT answered 201: status %d: %s", g.status, clipBody(g.body))
		}
		validateStored(t, gb, doc, g)
		if got := singleOf(t, g, e.Single); !reflect.DeepEqual(got, put) {
			t.Fatalf("GET after PUT answers\n%v\nwhere the PUT answered\n%v", got, put)
		}
		again := send(t, h, "PUT", path, tok, body)
		if again.status != 200 {
			t.Fatalf("the same PUT again: status %d, want 200: %s", again.status, clipBody(again.body))
		}
		if g := send(t, h, "GET", path, tok, nil); !reflect.DeepEqual(singleOf(t, g, e.Single), singleOf(t, again, e.Single)) {
			t.Fatalf("GET after the second PUT answers\n%s\nwhere that PUT answered\n%s", g.body, again.body)
		}
		if d := send(t, h, "DELETE", path, tok, nil); d.status != 204 {
			t.Fatalf("DELETE %s: status %d, want 204: %s", path, d.status, clipBody(d.body))
		}
		if g := send(t, h, "GET", path, tok, nil); g.status != 404 {
			t.Fatalf("GET after DELETE: status %d, want 404", g.status)
		}
	})
}

// validateStored checks that r's body conforms to the schema the document gives
// GET path's 200 answer: the stored representation, which a PUT answers with too
// (the document gives its 201 no body).
func validateStored(t *testing.T, d *oaDoc, path string, r response) {
	t.Helper()
	op, ok := d.Paths[strings.TrimPrefix(path, d.base)]["get"]
	if !ok {
		t.Fatalf("the document has no GET %s", path)
	}
	o := docOp{doc: d, method: "GET", path: path, op: op}
	s := o.schema("200")
	if s == nil {
		t.Fatalf("the document gives %s no JSON schema for 200", o)
	}
	checkSchema(t, o, s, r)
}

// fuzzLists are the collections FuzzCollectionQuery reads, each with its envelope key:
// rostering and gradebook, top level and nested.
var fuzzLists = [][2]string{
	{orR + "/users", "users"}, {orR + "/students", "users"}, {orR + "/classes", "classes"}, {orR + "/orgs", "orgs"},
	{orR + "/enrollments", "enrollments"}, {orR + "/academicSessions", "academicSessions"}, {orR + "/courses", "courses"},
	{orR + "/demographics", "demographics"}, {orG + "/lineItems", "lineItems"}, {orG + "/results", "results"},
	{orG + "/categories", "categories"}, {orG + "/scoreScales", "scoreScales"},
}

// FuzzCollectionQuery sends a query string to a collection: never 5xx; a 4xx is a
// OneRoster error; a 200 is the collection's envelope, no longer than the limit asked
// for, with an X-Total-Count no smaller than the page.
func FuzzCollectionQuery(f *testing.F) {
	h, tok := newWriteHarness(f)
	for i, q := range []string{
		"limit=5&offset=2&sort=sourcedId&orderBy=desc&fields=sourcedId,status",
		"filter=" + url.QueryEscape("givenName~'a' AND status='active'") + "&sort=familyName",
		"filter=" + url.QueryEscape("dateLastModified>'2020-01-01T00:00:00Z' OR sourcedId!='x'"),
		"filter=" + url.QueryEscape("class.sourcedId='class-math-a'"),
		"limit=0", "limit=-1", "offset=99999", "fields=nope", "sort=nope", "filter=" + url.QueryEscape("score>=10"),
		"filter=" + url.QueryEscape("sourcedId='1' AND (status='active')"), "orderBy=asc", "limit=1&limit=2",
	} {
		f.Add(uint8(i), q)
	}
	f.Fuzz(func(t *testing.T, which uint8, query string) {
		l := fuzzLists[int(which)%len(fuzzLists)]
		u := l[0] + "?" + query
		if _, err := url.ParseRequestURI(u); err != nil || strings.ContainsAny(query, "#\x7f") || strings.IndexFunc(query, func(r rune) bool { return r < 0x21 }) >= 0 {
			return // no HTTP client can send this request line
		}
		r, err := trySend(h, "GET", u, tok, nil)
		if err != nil {
			t.Fatalf("GET %s: %v", u, err)
		}
		switch {
		case r.status >= 500:
			t.Fatalf("GET %s: status %d: %s", u, r.status, clipBody(r.body))
		case r.status >= 400:
			var si map[string]any
			if err := json.Unmarshal(r.body, &si); err != nil || si["imsx_codeMajor"] != "failure" {
				t.Fatalf("GET %s: status %d without a OneRoster error body: %s", u, r.status, clipBody(r.body))
			}
			return
		case r.status != 200:
			t.Fatalf("GET %s: status %d", u, r.status)
		}
		page := listOf(t, r, l[1])
		total, err := strconv.Atoi(r.header.Get("X-Total-Count"))
		if err != nil || total < len(page) {
			t.Fatalf("GET %s: X-Total-Count %q for a page of %d", u, r.header.Get("X-Total-Count"), len(page))
		}
		q, _ := url.ParseQuery(query)
		if lim, err := strconv.Atoi(q.Get("limit")); err == nil && lim > 0 && len(page) > lim {
			t.Fatalf("GET %s: %d objects for limit %d", u, len(page), lim)
		}
	})
}
