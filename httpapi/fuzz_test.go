package httpapi_test

// Fuzzing at the HTTP boundary: whatever a client sends, no route answers 5xx, a
// refused write leaves nothing behind, and an accepted one is stored as answered.
// The seeds run with the tests; to search further, e.g.
//
//	go test -run '^$' -fuzz FuzzGradebookPut -fuzztime 5m ./httpapi

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/url"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"registrar/authn"
	"registrar/authz"
	"registrar/internal/testdistrict"
	"registrar/records"
	"registrar/sqlstore"
)

// fuzzKinds are the gradebook objects a client PUTs; a fuzz input picks one by index.
var fuzzKinds = []*records.Entity{records.Category, records.LineItem, records.Result, records.ScoreScale, records.AssessmentLineItem, records.AssessmentResult}

// FuzzGradebookPut PUTs a body to a new sourcedId of one gradebook kind, on SQLite and
// on PostgreSQL, and checks what the answer promises: never 5xx; a 4xx is a OneRoster
// error and nothing is stored; a 201 is what GET then returns, conforms to the 1.2
// schema, and the same PUT again replaces it with 200; DELETE then answers 204 and the
// object is gone. Both engines answer with the same status and, but for
// dateLastModified, the same object.
func FuzzGradebookPut(f *testing.F) {
	engines := bothEngines(f)
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
		var first response
		for i, en := range engines {
			r := putChecked(t, en, gb, e, path, body)
			if i == 0 {
				first = r
				continue
			}
			if r.status != first.status {
				t.Fatalf("PUT %s: %s answered %d, %s %d\n%s: %s\n%s: %s\nbody: %s", path, engines[0].name, first.status, en.name, r.status,
					engines[0].name, clipBody(first.body), en.name, clipBody(r.body), clipBody(body))
			}
			if r.status < 300 {
				a, b := portable(t, engines[0], first, e.Single), portable(t, en, r, e.Single)
				if !reflect.DeepEqual(a, b) {
					t.Fatalf("PUT %s: %s stored\n%v\n%s stored\n%v", path, engines[0].name, a, en.name, b)
				}
			}
		}
	})
}

// portable is the object of a single-object answer as both engines must store it:
// hrefs without the server's address, and no dateLastModified (each store's clock).
func portable(t *testing.T, en engine, r response, key string) map[string]any {
	t.Helper()
	r.body = []byte(strings.ReplaceAll(string(r.body), en.h.srv.URL, ""))
	o := singleOf(t, r, key)
	delete(o, "dateLastModified")
	return o
}

// putChecked PUTs body to path on one engine, checks the answer as FuzzGradebookPut
// says, and returns it.
func putChecked(t *testing.T, en engine, gb *oaDoc, e *records.Entity, path string, body []byte) response {
	t.Helper()
	h, tok := en.h, en.tok
	doc := gb.base + "/" + e.Path + "/{sourcedId}"
	r, err := trySend(h, "PUT", path, tok, body)
	if err != nil {
		t.Fatalf("%s: PUT %s: %v", en.name, path, err)
	}
	switch {
	case r.status >= 500:
		t.Fatalf("%s: PUT %s: status %d: %s\nbody: %s", en.name, path, r.status, clipBody(r.body), clipBody(body))
	case r.status >= 400:
		wantFailure(t, r, r.status, "") // a valid imsx_StatusInfo, failure/error
		if g := send(t, h, "GET", path, tok, nil); g.status != 404 {
			t.Fatalf("%s: a PUT refused with %d left an object behind (GET: %d %s)\nbody: %s", en.name, r.status, g.status, clipBody(g.body), clipBody(body))
		}
		return r
	case r.status != 201:
		t.Fatalf("%s: PUT %s creating an object: status %d, want 201: %s", en.name, path, r.status, clipBody(r.body))
	}
	put := singleOf(t, r, e.Single)
	validateStored(t, doc, r)
	g := send(t, h, "GET", path, tok, nil)
	if g.status != 200 {
		t.Fatalf("%s: GET after a PUT answered 201: status %d: %s", en.name, g.status, clipBody(g.body))
	}
	validateStored(t, doc, g)
	if got := singleOf(t, g, e.Single); !reflect.DeepEqual(got, put) {
		t.Fatalf("%s: GET after PUT answers\n%v\nwhere the PUT answered\n%v", en.name, got, put)
	}
	again := send(t, h, "PUT", path, tok, body)
	if again.status != 200 {
		t.Fatalf("%s: the same PUT again: status %d, want 200: %s", en.name, again.status, clipBody(again.body))
	}
	if g := send(t, h, "GET", path, tok, nil); !reflect.DeepEqual(singleOf(t, g, e.Single), singleOf(t, again, e.Single)) {
		t.Fatalf("%s: GET after the second PUT answers\n%s\nwhere that PUT answered\n%s", en.name, g.body, again.body)
	}
	if d := send(t, h, "DELETE", path, tok, nil); d.status != 204 {
		t.Fatalf("%s: DELETE %s: status %d, want 204: %s", en.name, path, d.status, clipBody(d.body))
	}
	if g := send(t, h, "GET", path, tok, nil); g.status != 404 {
		t.Fatalf("%s: GET after DELETE: status %d, want 404", en.name, g.status)
	}
	return again
}

// validateStored checks that r's body conforms to the schema the document gives
// GET path's 200 answer: the stored representation, which a PUT answers with too
// (the document gives its 201 no body).
func validateStored(t *testing.T, path string, r response) {
	t.Helper()
	o := docOpFor(t, "GET", path)
	checkSchema(t, o, o.schema("200"), r)
}

// fuzzLists are the collections FuzzCollectionQuery reads, each with its envelope key:
// rostering and gradebook, top level and nested.
var fuzzLists = [][2]string{
	{orR + "/users", "users"}, {orR + "/students", "users"}, {orR + "/classes", "classes"}, {orR + "/orgs", "orgs"},
	{orR + "/enrollments", "enrollments"}, {orR + "/academicSessions", "academicSessions"}, {orR + "/courses", "courses"},
	{orR + "/demographics", "demographics"}, {orG + "/lineItems", "lineItems"}, {orG + "/results", "results"},
	{orG + "/categories", "categories"}, {orG + "/scoreScales", "scoreScales"},
}

// fuzzCallers are whom FuzzCollectionQuery asks as, by index: the client of every
// scope (the engine's token), then people of each kind by a local token. Their scopes
// are SQL predicates written per engine (authz), so both engines must show each the
// same rows.
var fuzzCallers = []string{"", testdistrict.TeacherA, testdistrict.Guardian, testdistrict.Minor, testdistrict.Eligible,
	testdistrict.Counselor, testdistrict.PrincipalA, testdistrict.Admin}

// FuzzCollectionQuery sends a query string to a collection, as one of fuzzCallers,
// on SQLite and on PostgreSQL: never 5xx; a 4xx is a OneRoster error; a 200 is the
// collection's envelope, no longer than the limit asked for, with an X-Total-Count no
// smaller than the page. Both engines answer with the same status, count and page.
func FuzzCollectionQuery(f *testing.F) {
	engines := bothEngines(f)
	// tokens[caller][engine]
	tokens := make([][]string, len(fuzzCallers))
	for i, who := range fuzzCallers {
		for _, en := range engines {
			tok := en.tok
			if who != "" {
				tok = en.h.user(who)
			}
			tokens[i] = append(tokens[i], tok)
		}
	}
	for i, q := range []string{
		"limit=5&offset=2&sort=sourcedId&orderBy=desc&fields=sourcedId,status",
		"filter=" + url.QueryEscape("givenName~'a' AND status='active'") + "&sort=familyName",
		"filter=" + url.QueryEscape("dateLastModified>'2020-01-01T00:00:00Z' OR sourcedId!='x'"),
		"filter=" + url.QueryEscape("class.sourcedId='class-math-a'"),
		"limit=0", "limit=-1", "offset=99999", "fields=nope", "sort=nope", "filter=" + url.QueryEscape("score>=10"),
		"filter=" + url.QueryEscape("sourcedId='1' AND (status='active')"), "orderBy=asc", "limit=1&limit=2",
	} {
		f.Add(uint8(i), uint8(i), q)
	}
	f.Fuzz(func(t *testing.T, which, caller uint8, query string) {
		l := fuzzLists[int(which)%len(fuzzLists)]
		who := int(caller) % len(fuzzCallers)
		u := l[0] + "?" + query
		if _, err := url.ParseRequestURI(u); err != nil || strings.ContainsAny(query, "#\x7f") || strings.IndexFunc(query, func(r rune) bool { return r < 0x21 }) >= 0 {
			return // no HTTP client can send this request line
		}
		var first response
		var firstIDs []string
		for i, en := range engines {
			en.tok = tokens[who][i]
			r, ids := queryChecked(t, en, u, l[1], query)
			if i == 0 {
				first, firstIDs = r, ids
				continue
			}
			if r.status != first.status || r.header.Get("X-Total-Count") != first.header.Get("X-Total-Count") || !slices.Equal(ids, firstIDs) {
				t.Fatalf("GET %s as %q: %s answered %d (count %q, page %v), %s %d (count %q, page %v)\n%s: %s\n%s: %s", u, fuzzCallers[who],
					engines[0].name, first.status, first.header.Get("X-Total-Count"), firstIDs, en.name, r.status, r.header.Get("X-Total-Count"), ids,
					engines[0].name, clipBody(first.body), en.name, clipBody(r.body))
			}
		}
	})
}

// queryChecked GETs u on one engine, checks the answer as FuzzCollectionQuery says,
// and returns it with the sourcedIds of its page (nil unless 200).
func queryChecked(t *testing.T, en engine, u, key, query string) (response, []string) {
	t.Helper()
	r, err := trySend(en.h, "GET", u, en.tok, nil)
	if err != nil {
		t.Fatalf("%s: GET %s: %v", en.name, u, err)
	}
	switch {
	case r.status >= 500:
		t.Fatalf("%s: GET %s: status %d: %s", en.name, u, r.status, clipBody(r.body))
	case r.status >= 400:
		wantFailure(t, r, r.status, "") // a valid imsx_StatusInfo, failure/error
		return r, nil
	case r.status != 200:
		t.Fatalf("%s: GET %s: status %d", en.name, u, r.status)
	}
	page := listOf(t, r, key)
	total, err := strconv.Atoi(r.header.Get("X-Total-Count"))
	if err != nil || total < len(page) {
		t.Fatalf("%s: GET %s: X-Total-Count %q for a page of %d", en.name, u, r.header.Get("X-Total-Count"), len(page))
	}
	q, _ := url.ParseQuery(query)
	if lim, err := strconv.Atoi(q.Get("limit")); err == nil && lim > 0 && len(page) > lim {
		t.Fatalf("%s: GET %s: %d objects for limit %d", en.name, u, len(page), lim)
	}
	return r, idsOf(page)
}

// The client FuzzTokenEndpoint's seeds authenticate as, registered alike on both
// engines.
const (
	fuzzClientID     = "fz-client"
	fuzzClientSecret = "fz-secret-7c41d0"
)

// FuzzTokenEndpoint posts a form, with or without HTTP Basic credentials, to
// /oauth/token on SQLite and on PostgreSQL: never 5xx; a refusal is an RFC 6749 error
// (401 with a Basic challenge for invalid_client); a token only for a request that
// carries the client's secret, with no scope the client was not granted. Both engines
// answer with the same status.
func FuzzTokenEndpoint(f *testing.F) {
	engines := bothEngines(f)
	granted := []string{authz.RosterCoreReadonly, authz.GradebookReadonly}
	for _, en := range engines {
		c := records.Client{ID: fuzzClientID, Name: "fuzz client", SecretHash: authn.HashSecret(fuzzClientSecret), Scopes: granted,
			Orgs: []string{"*"}, LegalBasis: authz.BasisSchoolOfficial, Purpose: "testing"}
		if err := en.h.store.Write(context.Background(), func(ctx context.Context, tx *sqlstore.Tx) error { return tx.PutClient(ctx, c) }); err != nil {
			f.Fatal(err)
		}
	}
	creds := "client_id=" + fuzzClientID + "&client_secret=" + fuzzClientSecret
	for _, s := range [][2]string{
		{"grant_type=client_credentials&" + creds, ""},
		{"grant_type=client_credentials&scope=" + url.QueryEscape(authz.RosterCoreReadonly) + "&" + creds, ""},
		{"grant_type=client_credentials&scope=" + url.QueryEscape(authz.AllScopes[0]), fuzzClientID + ":" + fuzzClientSecret},
		{"grant_type=client_credentials", fuzzClientID + ":" + fuzzClientSecret},
		{"grant_type=client_credentials&client_secret=x", fuzzClientID + ":" + fuzzClientSecret},
		{"grant_type=password&" + creds, ""},
		{"grant_type=client_credentials&client_id=%00&client_secret=%FF", ""},
		{"%zz", ""},
	} {
		f.Add(s[0], s[1])
	}
	oauthCodes := []string{"invalid_request", "invalid_client", "unsupported_grant_type", "invalid_scope"}
	f.Fuzz(func(t *testing.T, form, basic string) {
		header := []string{"Content-Type", "application/x-www-form-urlencoded"}
		if basic != "" {
			header = append(header, "Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(basic)))
		}
		// What the request carries, decoded as RFC 6749 says a server may read it.
		carried := basic
		if u, err := url.QueryUnescape(basic); err == nil {
			carried += "\n" + u
		}
		if v, err := url.ParseQuery(form); err == nil {
			carried += "\n" + v.Get("client_secret")
		}
		var first response
		for i, en := range engines {
			r, err := trySend(en.h, "POST", "/oauth/token", "", []byte(form), header...)
			if err != nil {
				t.Fatalf("%s: POST /oauth/token: %v", en.name, err) // the Basic value is base64: every input can be sent
			}
			var body map[string]any
			if err := json.Unmarshal(r.body, &body); err != nil {
				t.Fatalf("%s: status %d with a body that is not JSON: %s", en.name, r.status, clipBody(r.body))
			}
			switch r.status {
			case 200:
				if !strings.Contains(carried, fuzzClientSecret) {
					t.Fatalf("%s: a token for a request without the client's secret: form %q, basic %q", en.name, form, basic)
				}
				scope, _ := body["scope"].(string)
				for _, s := range strings.Fields(scope) {
					if !slices.Contains(granted, s) {
						t.Fatalf("%s: token with scope %q, not granted to the client", en.name, s)
					}
				}
				if tok, _ := body["access_token"].(string); tok == "" || body["token_type"] != "Bearer" {
					t.Fatalf("%s: 200 without a bearer token: %s", en.name, r.body)
				}
			case 400, 401:
				if code, _ := body["error"].(string); !slices.Contains(oauthCodes, code) {
					t.Fatalf("%s: status %d with error %q, not one of RFC 6749's: %s", en.name, r.status, code, r.body)
				}
				if r.status == 401 && !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Basic") {
					t.Fatalf("%s: 401 without a Basic challenge", en.name)
				}
			default:
				t.Fatalf("%s: status %d: %s", en.name, r.status, clipBody(r.body))
			}
			if i == 0 {
				first = r
			} else if r.status != first.status {
				t.Fatalf("form %q, basic %q: %s answered %d, %s %d: %s / %s", form, basic, engines[0].name, first.status, en.name, r.status, first.body, r.body)
			}
		}
	})
}
