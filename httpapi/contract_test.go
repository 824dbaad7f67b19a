package httpapi_test

// Contract tests of the OneRoster 1.2 REST services against the test district: every
// documented GET path, paging, filter, sort and fields, and the gradebook writes. The
// list of operations comes from the official OpenAPI documents, so an operation added
// to them without a route, or a route without expectations here, fails a test.

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"registrar/authz"
	"registrar/httpapi"
	"registrar/internal/testdistrict"
	"registrar/records"
	"registrar/sqlstore"
)

const (
	orR = httpapi.RosteringBase
	orG = httpapi.GradebookBase
)

// noRedirect sends requests as a client would, but shows redirects instead of following them.
var noRedirect = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// send makes one request. A nil body sends none; a body is sent as application/json
// unless header pairs ("Content-Type", "text/plain") say otherwise; a pair with an
// empty value removes the header.
func send(t testing.TB, h *harness, method, path, token string, body []byte, header ...string) response {
	t.Helper()
	r, err := trySend(h, method, path, token, body, header...)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	return r
}

// trySend is send for goroutines other than the test's: it returns its error.
func trySend(h *harness, method, path, token string, body []byte, header ...string) (response, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, h.srv.URL+path, rd)
	if err != nil {
		return response{}, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		if header[i+1] == "" {
			req.Header.Del(header[i])
		} else {
			req.Header.Set(header[i], header[i+1])
		}
	}
	resp, err := noRedirect.Do(req)
	if err != nil {
		return response{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return response{}, fmt.Errorf("reading the body: %w", err)
	}
	return response{resp.StatusCode, resp.Header, b}, nil
}

func sendJSON(t testing.TB, h *harness, method, path, token string, body any) response {
	t.Helper()
	b, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	return send(t, h, method, path, token, b)
}

// list returns the objects under key of a collection response, failing unless the
// status is 200 and the key holds a list.
func listOf(t testing.TB, r response, key string) []map[string]any {
	t.Helper()
	if r.status != 200 {
		t.Fatalf("status %d, want 200: %s", r.status, clipBody(r.body))
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("body is not a JSON object: %v: %s", err, clipBody(r.body))
	}
	raw, ok := m[key]
	if !ok {
		t.Fatalf("response has no %q key: %s", key, clipBody(r.body))
	}
	var out []map[string]any
	if err := json.Unmarshal(raw, &out); err != nil || out == nil {
		t.Fatalf("%q is not a list of objects (got %s)", key, clipBody(raw))
	}
	return out
}

// single returns the object under key of a single-object response.
func singleOf(t testing.TB, r response, key string) map[string]any {
	t.Helper()
	var m map[string]map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("body is not {%q: {...}}: %v: %s", key, err, clipBody(r.body))
	}
	o, ok := m[key]
	if !ok || len(m) != 1 {
		t.Fatalf("body is not {%q: {...}}: %s", key, clipBody(r.body))
	}
	return o
}

func idsOf(objs []map[string]any) []string {
	out := make([]string, 0, len(objs))
	for _, o := range objs {
		s, _ := o["sourcedId"].(string)
		out = append(out, s)
	}
	return out
}

func sorted(ids ...string) []string {
	out := slices.Clone(ids)
	sort.Strings(out)
	if out == nil {
		out = []string{}
	}
	return out
}

// wantFailure checks a OneRoster error response: the status, an imsx_StatusInfo body
// valid against the 1.2 schema with codeMajor failure and the given codeMinor, and a
// description that mentions each of mention.
func wantFailure(t testing.TB, r response, status int, codeMinor string, mention ...string) {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d: %s", r.status, status, clipBody(r.body))
	}
	tt, _ := t.(*testing.T)
	if tt == nil {
		return
	}
	doc, schema := statusInfoSchema(tt)
	var v any
	if err := json.Unmarshal(r.body, &v); err != nil {
		t.Fatalf("error body is not JSON: %v: %s", err, clipBody(r.body))
	}
	if p := doc.validate(schema, v, "$"); len(p) > 0 {
		t.Errorf("error body is not a valid imsx_StatusInfo: %s\nbody: %s", strings.Join(p, "\n"), r.body)
	}
	var si struct {
		Major     string `json:"imsx_codeMajor"`
		Severity  string `json:"imsx_severity"`
		Desc      string `json:"imsx_description"`
		CodeMinor struct {
			Fields []struct {
				Value string `json:"imsx_codeMinorFieldValue"`
			} `json:"imsx_codeMinorField"`
		} `json:"imsx_CodeMinor"`
	}
	_ = json.Unmarshal(r.body, &si) // validated above
	if si.Major != "failure" || si.Severity != "error" {
		t.Errorf("imsx_codeMajor/severity = %q/%q, want failure/error", si.Major, si.Severity)
	}
	if codeMinor != "" && (len(si.CodeMinor.Fields) == 0 || si.CodeMinor.Fields[0].Value != codeMinor) {
		t.Errorf("codeMinor = %+v, want %q (body %s)", si.CodeMinor.Fields, codeMinor, r.body)
	}
	for _, m := range mention {
		if !strings.Contains(si.Desc, m) {
			t.Errorf("description %q does not mention %q", si.Desc, m)
		}
	}
}

// links parses an RFC 8288 Link header into rel -> URL.
func links(t testing.TB, h string) map[string]*url.URL {
	t.Helper()
	out := map[string]*url.URL{}
	if h == "" {
		return out
	}
	for _, part := range strings.Split(h, ", ") {
		target, params, ok := strings.Cut(part, ">; ")
		if !ok || !strings.HasPrefix(target, "<") || !strings.HasPrefix(params, `rel="`) {
			t.Fatalf("Link entry %q is not <url>; rel=\"...\"", part)
		}
		u, err := url.Parse(target[1:])
		if err != nil {
			t.Fatalf("Link entry %q: %v", part, err)
		}
		out[strings.TrimSuffix(strings.TrimPrefix(params, `rel="`), `"`)] = u
	}
	return out
}

// seeded is one object written straight into the store before a test.
type seeded struct {
	E *records.Entity
	O records.Object
}

func seed(t testing.TB, h *harness, objs ...seeded) {
	t.Helper()
	err := h.store.Write(context.Background(), func(ctx context.Context, tx *sqlstore.Tx) error {
		for _, s := range objs {
			o := maps.Clone(s.O)
			if o["status"] == nil {
				o["status"] = records.StatusActive
			}
			if errs := records.Validate(s.E, o); len(errs) > 0 {
				return records.InvalidFields(s.E.Name+" "+o.ID(), errs)
			}
			if _, err := tx.Put(ctx, s.E, o, sqlstore.PutOptions{}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("seed: %v", err)
	}
}

// The test district holds no assessment objects; these make the assessment paths answer.
const (
	assessmentLineItem = "ali-contract-1"
	assessmentResult   = "ar-contract-1"
)

var assessmentSeeds = []seeded{
	{records.AssessmentLineItem, records.Object{"sourcedId": assessmentLineItem, "title": "State math benchmark", "class": testdistrict.ClassMathA, "resultValueMin": 0.0, "resultValueMax": 400.0}},
	{records.AssessmentResult, records.Object{"sourcedId": assessmentResult, "assessmentLineItem": assessmentLineItem, "student": testdistrict.Minor,
		"score": 312.0, "scoreDate": "2026-09-10", "scoreStatus": "fully graded", "scorePercentile": 71.0}},
}

// pathParams fills the named path parameters of OneRoster paths.
var pathParams = map[string]string{
	"classSourcedId":           testdistrict.ClassMathA,
	"schoolSourcedId":          testdistrict.SchoolA,
	"courseSourcedId":          testdistrict.CourseMath,
	"studentSourcedId":         testdistrict.Minor,
	"teacherSourcedId":         testdistrict.TeacherA,
	"termSourcedId":            testdistrict.Term1,
	"userSourcedId":            testdistrict.Minor,
	"lineItemSourcedId":        testdistrict.LineItemA,
	"academicSessionSourcedId": testdistrict.GP1,
}

// fillPath replaces {param} segments; sourcedId becomes id.
func fillPath(path, id string) string {
	segs := strings.Split(path, "/")
	for i, s := range segs {
		if !strings.HasPrefix(s, "{") {
			continue
		}
		name := strings.Trim(s, "{}")
		if name == "sourcedId" {
			segs[i] = url.PathEscape(id)
		} else {
			segs[i] = url.PathEscape(pathParams[name])
		}
	}
	return strings.Join(segs, "/")
}

// wantGets is, for every documented GET operation, the sourcedIds it must return for
// the test district (with pathParams); a single-object operation is asked for its one id.
var wantGets = func() map[string][]string {
	const (
		sy, t1, t2, gp = testdistrict.SchoolYear, testdistrict.Term1, testdistrict.Term2, testdistrict.GP1
		mathA, sciA    = testdistrict.ClassMathA, testdistrict.ClassSciA
		classB, classC = testdistrict.ClassB, testdistrict.ClassC
	)
	students := []string{testdistrict.Minor, testdistrict.Eligible, testdistrict.Student3, testdistrict.StudentB, testdistrict.StudentC}
	teachers := []string{testdistrict.TeacherA, testdistrict.TeacherA2, testdistrict.TeacherB, testdistrict.TeacherC, testdistrict.Disabled}
	users := append(append(slices.Clone(students), teachers...), testdistrict.Admin, testdistrict.PrincipalA, testdistrict.Counselor, testdistrict.Guardian, testdistrict.Guardian2)
	mathAStudents := []string{testdistrict.Minor, testdistrict.Eligible, testdistrict.Student3}
	schoolAEnrollments := []string{"enr-ta-math", "enr-ta2-sci", "enr-minor-math", "enr-eli-math", "enr-s3-math", "enr-minor-sci"}
	return map[string][]string{
		// Rostering.
		"getAllAcademicSessions":         {sy, t1, t2, gp},
		"getAcademicSession":             {t2},
		"getAllClasses":                  {mathA, sciA, classB, classC},
		"getClass":                       {sciA},
		"getStudentsForClass":            mathAStudents,
		"getTeachersForClass":            {testdistrict.TeacherA},
		"getAllCourses":                  {testdistrict.CourseMath, testdistrict.CourseSci, testdistrict.CourseC},
		"getCourse":                      {testdistrict.CourseSci},
		"getClassesForCourse":            {mathA, classB},
		"getAllDemographics":             students,
		"getDemographics":                {testdistrict.Eligible},
		"getAllEnrollments":              append(slices.Clone(schoolAEnrollments), "enr-tb-b", "enr-tc-c", "enr-sb-b", "enr-sc-c"),
		"getEnrollment":                  {"enr-sb-b"},
		"getAllGradingPeriods":           {gp},
		"getGradingPeriod":               {gp},
		"getAllOrgs":                     {testdistrict.District, testdistrict.SchoolA, testdistrict.SchoolB, testdistrict.District2, testdistrict.SchoolC},
		"getOrg":                         {testdistrict.District},
		"getAllSchools":                  {testdistrict.SchoolA, testdistrict.SchoolB, testdistrict.SchoolC},
		"getSchool":                      {testdistrict.SchoolB},
		"getClassesForSchool":            {mathA, sciA},
		"getEnrollmentsForClassInSchool": {"enr-ta-math", "enr-minor-math", "enr-eli-math", "enr-s3-math"},
		"getStudentsForClassInSchool":    mathAStudents,
		"getTeachersForClassInSchool":    {testdistrict.TeacherA},
		"getCoursesForSchool":            {testdistrict.CourseMath, testdistrict.CourseSci},
		"getEnrollmentsForSchool":        schoolAEnrollments,
		"getStudentsForSchool":           mathAStudents,
		"getTeachersForSchool":           {testdistrict.TeacherA, testdistrict.TeacherA2, testdistrict.Disabled},
		"getTermsForSchool":              {t1},
		"getAllStudents":                 students,
		"getStudent":                     {testdistrict.Eligible},
		"getClassesForStudent":           {mathA, sciA},
		"getAllTeachers":                 teachers,
		"getTeacher":                     {testdistrict.TeacherB},
		"getClassesForTeacher":           {mathA},
		"getAllTerms":                    {t1, t2},
		"getTerm":                        {t1},
		"getClassesForTerm":              {mathA, sciA, classB, classC},
		"getGradingPeriodsForTerm":       {gp},
		"getAllUsers":                    users,
		"getUser":                        {testdistrict.Guardian},
		"getClassesForUser":              {mathA, sciA},
		// Gradebook.
		"getAllAssessmentLineItems":     {assessmentLineItem},
		"getAssessmentLineItem":         {assessmentLineItem},
		"getAllAssessmentResults":       {assessmentResult},
		"getAssessmentResult":           {assessmentResult},
		"getAllCategories":              {testdistrict.Category},
		"getCategory":                   {testdistrict.Category},
		"getCategoriesForClass":         {testdistrict.Category},
		"getLineItemsForClass":          {testdistrict.LineItemA},
		"getResultsForLineItemForClass": {testdistrict.ResultMinA, testdistrict.ResultEliA},
		"getResultsForClass":            {testdistrict.ResultMinA, testdistrict.ResultEliA},
		"getScoreScalesForClass":        {testdistrict.ScaleA},
		"getResultsForStudentForClass":  {testdistrict.ResultMinA},
		"getAllLineItems":               {testdistrict.LineItemA, testdistrict.LineItemB},
		"getLineItem":                   {testdistrict.LineItemB},
		"getAllResults":                 {testdistrict.ResultMinA, testdistrict.ResultEliA, testdistrict.ResultB},
		"getResult":                     {testdistrict.ResultEliA},
		"getScoreScalesForSchool":       {testdistrict.ScaleA},
		"getAllScoreScales":             {testdistrict.ScaleA},
		"getScoreScale":                 {testdistrict.ScaleA},
	}
}()

func TestEveryGetPathAnswersAsTheOpenAPIDocumentSays(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	seed(t, h, assessmentSeeds...)
	tok := h.client(authz.AllScopes)
	for _, o := range documentedOps(t) {
		if o.method != "GET" {
			continue
		}
		want, ok := wantGets[o.op.OperationID]
		if !ok {
			t.Errorf("%s (%s) has no expectation in wantGets", o, o.op.OperationID)
			continue
		}
		schema := o.schema("200")
		key, inner := o.doc.envelope(schema)
		if key == "" {
			t.Errorf("%s: the 200 response schema names no envelope", o)
			continue
		}
		if inner.Type != "array" {
			path := fillPath(o.path, want[0])
			t.Run(o.op.OperationID+" returns the one object under "+key, func(t *testing.T) {
				t.Parallel()
				r := send(t, h, "GET", path, tok, nil)
				if r.status != 200 {
					t.Fatalf("GET %s: status %d, want 200: %s", path, r.status, clipBody(r.body))
				}
				checkSchema(t, o, schema, r)
				if got := singleOf(t, r, key)["sourcedId"]; got != want[0] {
					t.Errorf("GET %s: sourcedId %v, want %s", path, got, want[0])
				}
			})
			continue
		}
		path := fillPath(o.path, "")
		want = sorted(want...)
		t.Run(fmt.Sprintf("%s returns its %d objects under %s", o.op.OperationID, len(want), key), func(t *testing.T) {
			t.Parallel()
			r := send(t, h, "GET", path, tok, nil)
			objs := listOf(t, r, key)
			checkSchema(t, o, schema, r)
			if got := idsOf(objs); !slices.Equal(got, want) {
				t.Errorf("GET %s: got %v, want %v (in sourcedId order)", path, got, want)
			}
			checkPage(t, r, len(want), 0, 100)

			// One object per page: the count is the total, not the page, and the links walk.
			r = send(t, h, "GET", path+"?limit=1", tok, nil)
			if got := idsOf(listOf(t, r, key)); len(want) > 0 && !slices.Equal(got, want[:1]) {
				t.Errorf("GET %s?limit=1: got %v, want %v", path, got, want[:1])
			}
			checkPage(t, r, len(want), 0, 1)
			if len(want) > 1 {
				last := len(want) - 1
				r = send(t, h, "GET", path+"?limit=1&offset="+strconv.Itoa(last), tok, nil)
				if got := idsOf(listOf(t, r, key)); !slices.Equal(got, want[last:]) {
					t.Errorf("GET %s?limit=1&offset=%d: got %v, want %v", path, last, got, want[last:])
				}
				checkPage(t, r, len(want), last, 1)
			}
		})
	}
}

// checkSchema validates a response body against the operation's response schema.
func checkSchema(t *testing.T, o docOp, schema *oaSchema, r response) {
	t.Helper()
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type %q, want application/json", ct)
	}
	var v any
	if err := json.Unmarshal(r.body, &v); err != nil {
		t.Fatalf("body is not JSON: %v", err)
	}
	if p := o.doc.validate(schema, v, "$"); len(p) > 0 {
		if len(p) > 10 {
			p = append(p[:10], fmt.Sprintf("... and %d more", len(p)-10))
		}
		t.Errorf("the response does not conform to the %s schema:\n%s", o.op.OperationID, strings.Join(p, "\n"))
	}
}

// checkPage checks X-Total-Count and the Link header of one page.
func checkPage(t *testing.T, r response, total, offset, limit int) {
	t.Helper()
	if got := r.header.Get("X-Total-Count"); got != strconv.Itoa(total) {
		t.Errorf("X-Total-Count = %q, want %d", got, total)
	}
	l := links(t, r.header.Get("Link"))
	wantOffset := map[string]int{"first": 0, "last": 0}
	if total > 0 {
		wantOffset["last"] = (total - 1) / limit * limit
	}
	if offset > 0 {
		wantOffset["prev"] = max(0, offset-limit)
	}
	if offset+limit < total {
		wantOffset["next"] = offset + limit
	}
	for rel, off := range wantOffset {
		u, ok := l[rel]
		if !ok {
			t.Errorf("Link has no rel=%q (Link: %s)", rel, r.header.Get("Link"))
			continue
		}
		q := u.Query()
		if q.Get("offset") != strconv.Itoa(off) || q.Get("limit") != strconv.Itoa(limit) {
			t.Errorf("Link rel=%q is %s, want limit=%d offset=%d", rel, u, limit, off)
		}
	}
	for rel := range l {
		if _, ok := wantOffset[rel]; !ok {
			t.Errorf("Link has rel=%q, want none at offset %d of %d (Link: %s)", rel, offset, total, r.header.Get("Link"))
		}
	}
}

func TestConcurrentReadsOfNewQueryShapesAllFinish(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	tok := h.client(authz.AllScopes)
	// Many more concurrent requests than read connections, each a SQL text the
	// statement cache has not seen: preparing must not wait for a connection that
	// every caller holds.
	var wg sync.WaitGroup
	errs := make(chan string, 64)
	for i := range 64 {
		filter := "givenName='x'" + strings.Repeat(" OR givenName='y'", i%16)
		path := fmt.Sprintf("%s/users?sort=%s&filter=%s", orR, []string{"givenName", "familyName", "username", "sourcedId"}[i/16], url.QueryEscape(filter))
		wg.Go(func() {
			r, err := trySend(h, "GET", path, tok, nil)
			if err != nil || r.status != 200 {
				errs <- fmt.Sprintf("GET %s: status %d, err %v", path, r.status, err)
			}
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("64 concurrent reads of new query shapes have not finished after 30s: the read pool waits for itself")
	}
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}

func TestSingleGetsOfTheWrongKindAnswerNotFound(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	tok := h.client(authz.AllScopes)
	tests := []struct{ name, path string }{
		{"a teacher is not a student", orR + "/students/" + testdistrict.TeacherA},
		{"a student is not a teacher", orR + "/teachers/" + testdistrict.Minor},
		{"a district is not a school", orR + "/schools/" + testdistrict.District},
		{"a grading period is not a term", orR + "/terms/" + testdistrict.GP1},
		{"a term is not a grading period", orR + "/gradingPeriods/" + testdistrict.Term1},
		{"an unknown user is not found", orR + "/users/no-such-user"},
		{"the students of an unknown class are not found", orR + "/classes/no-such-class/students"},
		{"a class of another school is not found under this school", orR + "/schools/" + testdistrict.SchoolA + "/classes/" + testdistrict.ClassB + "/students"},
		{"the results of a line item of another class are not found", orG + "/classes/" + testdistrict.ClassMathA + "/lineItems/" + testdistrict.LineItemB + "/results"},
		{"the classes of a teacher asked as a student are not found", orR + "/students/" + testdistrict.TeacherA + "/classes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			wantFailure(t, send(t, h, "GET", tt.path, tok, nil), 404, "unknownobject")
		})
	}
}

func TestPagingEdges(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	tok := h.client(authz.AllScopes)
	users := len(wantGets["getAllUsers"])
	bad := []struct{ name, query, mention string }{
		{"a limit of zero is refused", "limit=0", "limit"},
		{"a negative limit is refused", "limit=-1", "limit"},
		{"a non-numeric limit is refused", "limit=ten", "limit"},
		{"a fractional limit is refused", "limit=1.5", "limit"},
		{"a limit beyond int32 is refused", "limit=2147483648", "limit"},
		{"a negative offset is refused", "offset=-1", "offset"},
		{"a non-numeric offset is refused", "offset=abc", "offset"},
		{"an offset with a plus sign is refused", "offset=%2B1", "offset"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			wantFailure(t, send(t, h, "GET", orR+"/users?"+tt.query, tok, nil), 400, "invaliddata", tt.mention)
		})
	}
	t.Run("a huge limit is clamped to the maximum page", func(t *testing.T) {
		t.Parallel()
		r := send(t, h, "GET", orR+"/users?limit=1000000", tok, nil)
		if n := len(listOf(t, r, "users")); n != users {
			t.Errorf("got %d users, want %d", n, users)
		}
		checkPage(t, r, users, 0, httpapi.MaxLimit)
	})
	t.Run("an offset past the end is an empty page with the total", func(t *testing.T) {
		t.Parallel()
		r := send(t, h, "GET", orR+"/users?offset=1000", tok, nil)
		if n := len(listOf(t, r, "users")); n != 0 {
			t.Errorf("got %d users, want 0", n)
		}
		if !strings.Contains(string(r.body), `"users":[]`) {
			t.Errorf("body %s, want an empty list, not null", r.body)
		}
		if got := r.header.Get("X-Total-Count"); got != strconv.Itoa(users) {
			t.Errorf("X-Total-Count = %q, want %d", got, users)
		}
		l := links(t, r.header.Get("Link"))
		if l["first"] == nil || l["last"] == nil || l["next"] != nil {
			t.Errorf("Link = %q, want first and last and no next", r.header.Get("Link"))
		}
	})
	t.Run("the last page is short and has no next link", func(t *testing.T) {
		t.Parallel()
		r := send(t, h, "GET", orR+"/users?limit=4&offset=12", tok, nil)
		if n := len(listOf(t, r, "users")); n != users-12 {
			t.Errorf("got %d users, want %d", n, users-12)
		}
		checkPage(t, r, users, 12, 4)
	})
	t.Run("pages walked with next links cover the collection once", func(t *testing.T) {
		t.Parallel()
		var seen []string
		path := orR + "/users?limit=4"
		for range users {
			r := send(t, h, "GET", path, tok, nil)
			seen = append(seen, idsOf(listOf(t, r, "users"))...)
			next := links(t, r.header.Get("Link"))["next"]
			if next == nil {
				break
			}
			path = next.RequestURI()
		}
		if want := sorted(wantGets["getAllUsers"]...); !slices.Equal(seen, want) {
			t.Errorf("walked %v, want %v", seen, want)
		}
	})
}

// queryExtras vary the values that filter and sort tests compare.
var queryExtras = []seeded{
	{records.Category, records.Object{"sourcedId": "cat-quiz", "title": "Quizzes", "weight": 0.1}},
	{records.Category, records.Object{"sourcedId": "cat-test", "title": "tests", "weight": 0.75}},
	{records.Category, records.Object{"sourcedId": "cat-part", "status": records.StatusToBeDeleted, "title": "Participation"}},
	{records.LineItem, records.Object{"sourcedId": "li-sci-quiz", "title": "Quiz 1", "description": "Forces and motion",
		"assignDate": "2026-10-01T12:30:00Z", "dueDate": "2026-10-15T23:59:59.5Z", "class": testdistrict.ClassSciA, "school": testdistrict.SchoolA,
		"category": "cat-quiz", "resultValueMin": -10.0, "resultValueMax": 50.0}},
	{records.LineItem, records.Object{"sourcedId": "li-math-test", "title": "Unit test 1", "assignDate": "2026-09-01T08:00:00Z",
		"dueDate": "2026-12-01T00:00:00+01:00", "class": testdistrict.ClassMathA, "school": testdistrict.SchoolA, "category": "cat-test", "resultValueMax": 100.5}},
}

// queryObjects is what a harness seeded with queryExtras holds, for the oracle.
func queryObjects() []seeded {
	var out []seeded
	for _, eo := range testdistrict.Objects() {
		out = append(out, seeded{eo.E, eo.O})
	}
	for _, s := range queryExtras {
		o := maps.Clone(s.O)
		if o["status"] == nil {
			o["status"] = records.StatusActive
		}
		out = append(out, seeded{s.E, o})
	}
	return out
}

func newQueryHarness(t *testing.T) (*harness, string) {
	h := newHarness(t)
	seed(t, h, queryExtras...)
	return h, h.client(authz.AllScopes)
}

// matches is the filter oracle for one scalar field: how OneRoster's operators compare
// a stored value with the filter's, by the field's kind. A missing field matches only !=.
func matches(f *records.Field, v any, present bool, op, value string) bool {
	if !present {
		return op == "!="
	}
	var c int
	var text string
	switch f.Kind {
	case records.KFloat:
		y, _ := strconv.ParseFloat(value, 64)
		c = cmp.Compare(v.(float64), y)
		text = strconv.FormatFloat(v.(float64), 'g', -1, 64)
	case records.KDateTime:
		x, _ := records.ParseDateTime(v.(string))
		y, _ := records.ParseDateTime(value)
		c = x.Compare(y)
		text = records.FormatDateTime(x) // the form the API shows, so the form ~ searches
	default:
		text = v.(string)
		c = strings.Compare(text, value)
	}
	switch op {
	case "=":
		return c == 0
	case "!=":
		return c != 0
	case ">":
		return c > 0
	case ">=":
		return c >= 0
	case "<":
		return c < 0
	case "<=":
		return c <= 0
	case "~":
		return strings.Contains(text, value)
	}
	panic("unknown operator " + op)
}

func TestFilterOperatorsOnEveryScalarKind(t *testing.T) {
	t.Parallel()
	h, tok := newQueryHarness(t)
	objs := queryObjects()
	fields := []struct {
		kind     string
		entity   *records.Entity
		field    string
		value    string // compared with by = != > >= < <=
		contains string // searched for by ~
	}{
		{"string", records.User, "familyName", "Minor", "in"},
		{"string", records.LineItem, "title", "Quiz 1", "work 1"},
		{"string", records.Org, "identifier", "ID-org-school-a", "school"},
		{"enum", records.AcademicSession, "type", "schoolYear", "term"},
		{"enum", records.Category, "status", "active", "delete"},
		{"date", records.AcademicSession, "endDate", "2027-01-15", "2027"},
		{"date", records.Enrollment, "beginDate", "2026-08-20", "08-20"},
		{"datetime", records.LineItem, "assignDate", "2026-09-01T08:00:00Z", "2026-10"},
		{"datetime written with an offset", records.LineItem, "dueDate", "2026-12-01T00:00:00+01:00", "T23:59:59.5"},
		{"datetime written as a date", records.LineItem, "assignDate", "2026-09-01", "T08:00"},
		{"number", records.LineItem, "resultValueMax", "100", ""},
		{"negative number", records.LineItem, "resultValueMin", "-10", ""},
		{"fraction", records.Category, "weight", "0.3", ""},
		{"boolean", records.User, "enabledUser", "true", "ru"},
		{"boolean", records.Enrollment, "primary", "false", "tru"},
	}
	for _, fc := range fields {
		f, ok := fc.entity.Field(fc.field)
		if !ok {
			t.Fatalf("%s has no field %s", fc.entity.Name, fc.field)
		}
		path := "/ims/oneroster/" + fc.entity.Service + "/v1p2/" + fc.entity.Path
		for _, op := range []string{"=", "!=", ">", ">=", "<", "<=", "~"} {
			value := fc.value
			if op == "~" {
				value = fc.contains
			}
			filter := fc.field + op + "'" + value + "'"
			t.Run(fmt.Sprintf("%s on a %s field (%s)", op, fc.kind, filter), func(t *testing.T) {
				t.Parallel()
				r := send(t, h, "GET", path+"?filter="+url.QueryEscape(filter), tok, nil)
				if op == "~" && f.Kind == records.KFloat {
					wantFailure(t, r, 400, "invalid_filter_field", fc.field)
					return
				}
				var want []string
				for _, s := range objs {
					if s.E == fc.entity {
						v, present := s.O[fc.field]
						if matches(f, v, present, op, value) {
							want = append(want, s.O.ID())
						}
					}
				}
				want = sorted(want...)
				got := idsOf(listOf(t, r, fc.entity.Collection))
				if !slices.Equal(got, want) {
					t.Errorf("filter %s: got %v, want %v", filter, got, want)
				}
				if tc := r.header.Get("X-Total-Count"); tc != strconv.Itoa(len(want)) {
					t.Errorf("X-Total-Count = %s, want %d", tc, len(want))
				}
				if op == ">=" || op == "!=" {
					// A page smaller than the set makes the store count the filtered rows.
					r := send(t, h, "GET", path+"?limit=1&filter="+url.QueryEscape(filter), tok, nil)
					listOf(t, r, fc.entity.Collection)
					if tc := r.header.Get("X-Total-Count"); tc != strconv.Itoa(len(want)) {
						t.Errorf("with limit=1, X-Total-Count = %s, want %d", tc, len(want))
					}
				}
			})
		}
	}
}

func TestNotEqualMatchesObjectsWithoutTheField(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	seed(t, h, seeded{records.User, records.Object{"sourcedId": "user-no-contact", "givenName": "Noel", "familyName": "Nocontact", "enabledUser": "true",
		"roles": []records.Role{{RoleType: "primary", Role: "student", Org: testdistrict.SchoolA}}}})
	tok := h.client(authz.AllScopes)
	all := sorted(append(slices.Clone(wantGets["getAllUsers"]), "user-no-contact")...)
	for _, filter := range []string{"middleName!='x'", "username!='x'", "email!='x'", "identifier!='x'", "grades!='x'", "agents.sourcedId!='x'"} {
		t.Run(filter+" matches every user, with the field or without", func(t *testing.T) {
			t.Parallel()
			got := idsOf(listOf(t, send(t, h, "GET", orR+"/users?filter="+url.QueryEscape(filter), tok, nil), "users"))
			if !slices.Equal(got, all) {
				t.Errorf("got %v, want %v", got, all)
			}
		})
	}
}

func userWith(id string) records.Object {
	for _, eo := range testdistrict.Objects() {
		if eo.E == records.User && eo.O.ID() == id {
			return eo.O
		}
	}
	panic("no user " + id)
}

func TestFiltersOnReferencesListsSecretsAndCombinations(t *testing.T) {
	t.Parallel()
	h, tok := newQueryHarness(t)
	minor := userWith(testdistrict.Minor)
	students := wantGets["getAllStudents"]
	notInGrade8 := slices.DeleteFunc(slices.Clone(wantGets["getAllUsers"]), func(id string) bool { return id == testdistrict.Minor || id == testdistrict.Student3 })
	tests := []struct {
		name, path, filter string
		want               []string
	}{
		{"a reference filters by its sourcedId", orR + "/classes", "course.sourcedId='course-math'", []string{testdistrict.ClassMathA, testdistrict.ClassB}},
		{"the school of a class filters by its sourcedId", orR + "/classes", "school.sourcedId='org-school-a'", []string{testdistrict.ClassMathA, testdistrict.ClassSciA}},
		{"the school of an enrollment filters by its sourcedId", orR + "/enrollments", "school.sourcedId='org-school-b'", []string{"enr-tb-b", "enr-sb-b"}},
		{"a reference filters by its bare name too", orR + "/users", "primaryOrg='org-school-b'", []string{testdistrict.TeacherB, testdistrict.StudentB}},
		{"a parent reference filters by its sourcedId", orR + "/academicSessions", "parent.sourcedId='as-2026'", []string{testdistrict.Term1, testdistrict.Term2}},
		{"a list of references matches any element", orR + "/classes", "terms.sourcedId='as-2026-t1'", wantGets["getAllClasses"]},
		{"derived children match any child", orR + "/orgs", "children.sourcedId='org-school-a'", []string{testdistrict.District}},
		{"roles.role matches any role", orR + "/users", "roles.role='student'", students},
		{"roles.org.sourcedId matches any role's org", orR + "/users", "roles.org.sourcedId='org-school-b'", []string{testdistrict.TeacherB, testdistrict.StudentB}},
		{"roles.roleType compares", orR + "/users", "roles.roleType='secondary'", nil},
		{"a list of strings matches any element", orR + "/users", "grades='08'", []string{testdistrict.Minor, testdistrict.Student3}},
		{"a list of strings matches in every class", orR + "/classes", "grades='08'", wantGets["getAllClasses"]},
		{"a second grade of a course matches", orR + "/courses", "grades='09'", wantGets["getAllCourses"]},
		{"!= on a list means no element equals", orR + "/users", "grades!='08'", notInGrade8},
		{"an encrypted email is found through its blind index", orR + "/users", "email='" + minor.Str("email") + "'", []string{testdistrict.Minor}},
		{"an unknown email finds no one", orR + "/users", "email='nobody@example.org'", nil},
		{"an encrypted identifier is found through its blind index", orR + "/users", "identifier='" + minor.Str("identifier") + "'", []string{testdistrict.Minor}},
		{"a username is found", orR + "/users", "username='user-teacher-a'", []string{testdistrict.TeacherA}},
		{"sourcedId is a field too", orR + "/users", "sourcedId='user-guardian'", []string{testdistrict.Guardian}},
		{"AND needs both", orR + "/users", "familyName='Minor' AND givenName='Mia'", []string{testdistrict.Minor}},
		{"OR takes either", orR + "/users", "familyName='Minor' OR familyName='Birch'", []string{testdistrict.Minor, testdistrict.Guardian, testdistrict.TeacherB, testdistrict.StudentB}},
		{"AND binds tighter than OR", orR + "/users", "givenName='Mia' OR familyName='Birch' AND givenName='Blair'", []string{testdistrict.Minor, testdistrict.StudentB}},
		{"parentheses group", orR + "/users", "(givenName='Mia' OR familyName='Birch') AND roles.role='student'", []string{testdistrict.Minor, testdistrict.StudentB}},
		{"a filter narrows a collection with a fixed predicate", orR + "/students", "familyName='Minor'", []string{testdistrict.Minor}},
		{"a filter narrows a nested collection", orR + "/classes/" + testdistrict.ClassMathA + "/students", "givenName='Mia' OR givenName='Avery'", []string{testdistrict.Minor}},
		{"a filter on the results of a student", orG + "/results", "student.sourcedId='user-student-minor'", []string{testdistrict.ResultMinA}},
		{"a filter on a line item and a date", orG + "/results", "lineItem.sourcedId='li-math-a-1' AND scoreDate='2026-09-09'", []string{testdistrict.ResultMinA, testdistrict.ResultEliA}},
		{"a quote inside a value is written twice", orR + "/users", "familyName='O''Brien'", nil},
		{"% in a ~ value is a literal, not a wildcard", orR + "/users", "familyName~'%'", nil},
		{"_ in a ~ value is a literal, not a wildcard", orR + "/users", "familyName~'_'", nil},
		{"a backslash in a ~ value is a literal", orR + "/users", `familyName~'\'`, nil},
		{"a value that looks like SQL is a value (OR 1=1)", orR + "/users", "familyName=''' OR 1=1 --'", nil},
		{"a value that looks like SQL is a value (DROP TABLE)", orR + "/users", "familyName='''; DROP TABLE users; --'", nil},
		{"a value that looks like SQL is a value (in a list)", orR + "/users", "grades=''' OR ''1''=''1'", nil},
		{"a value that looks like SQL is a value (in an encrypted field)", orR + "/users", "email=''' OR 1=1 --'", nil},
		{"a value that looks like SQL is a value (in a reference)", orR + "/classes", "course.sourcedId='x'') OR 1=1 --'", nil},
		{"a value that looks like SQL is a value (in a role)", orR + "/users", "roles.role='student'' OR ''a''=''a'", nil},
		{"a value that looks like SQL is a value (with ~)", orR + "/users", "familyName~''' OR 1=1 --'", nil},
	}
	t.Run("filters", func(t *testing.T) {
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				r := send(t, h, "GET", tt.path+"?filter="+url.QueryEscape(tt.filter), tok, nil)
				key := tt.path[strings.LastIndex(tt.path, "/")+1:]
				if key == "students" || key == "teachers" {
					key = "users"
				}
				got := idsOf(listOf(t, r, key))
				if want := sorted(tt.want...); !slices.Equal(got, want) {
					t.Errorf("filter %s: got %v, want %v", tt.filter, got, want)
				}
			})
		}
	})
	// After every filter above has run, SQL-looking values included.
	for path, n := range map[string]int{orR + "/users": len(wantGets["getAllUsers"]), orR + "/classes": len(wantGets["getAllClasses"]),
		orR + "/enrollments": len(wantGets["getAllEnrollments"]), orG + "/results": len(wantGets["getAllResults"])} {
		r := send(t, h, "GET", path, tok, nil)
		if got := r.header.Get("X-Total-Count"); r.status != 200 || got != strconv.Itoa(n) {
			t.Errorf("after the filters, GET %s: status %d, X-Total-Count %s, want 200 and %d: the table is not intact", path, r.status, got, n)
		}
	}
}

func TestBadFiltersAreRefusedNamingTheField(t *testing.T) {
	t.Parallel()
	h, tok := newQueryHarness(t)
	tests := []struct {
		name, path, filter, codeMinor, mention string
	}{
		{"an encrypted field cannot be searched with ~", orR + "/users", "email~'example'", "invalid_filter_field", "email"},
		{"an encrypted field cannot be compared with >", orR + "/users", "email>'a'", "invalid_filter_field", "email"},
		{"an encrypted identifier cannot be compared with <=", orR + "/users", "identifier<='z'", "invalid_filter_field", "identifier"},
		{"an encrypted field without a blind index cannot be filtered", orR + "/users", "phone='555'", "invalid_filter_field", "phone"},
		{"an encrypted score cannot be filtered", orG + "/results", "score>'50'", "invalid_filter_field", "score"},
		{"an encrypted birth date cannot be filtered", orR + "/demographics", "birthDate='2012-03-01'", "invalid_filter_field", "birthDate"},
		{"an unknown field is refused", orR + "/users", "shoeSize='9'", "invalid_filter_field", "shoeSize"},
		{"an unknown field inside AND is refused", orR + "/users", "givenName='Mia' AND shoeSize='9'", "invalid_filter_field", "shoeSize"},
		{"an unknown sub-field of roles is refused", orR + "/users", "roles.colour='red'", "invalid_filter_field", "roles.colour"},
		{"a field of a referenced object other than sourcedId is refused", orR + "/classes", "course.title='Algebra I'", "invalid_filter_field", "course.title"},
		{"a sub-field of a plain field is refused", orR + "/users", "givenName.first='Mia'", "invalid_filter_field", "givenName.first"},
		{"a structured field is refused", orR + "/users", "metadata='x'", "invalid_filter_field", "metadata"},
		{"~ on a number is refused", orG + "/lineItems", "resultValueMax~'1'", "invalid_filter_field", "resultValueMax"},
		{"a number field compared with a word is refused", orG + "/lineItems", "resultValueMax>'lots'", "invalid_filter_field", "resultValueMax"},
		{"a date field compared with a non-date is refused", orR + "/academicSessions", "startDate>'soon'", "invalid_filter_field", "startDate"},
		{"a datetime field compared with a non-date is refused", orG + "/lineItems", "dueDate<'tomorrow'", "invalid_filter_field", "dueDate"},
		{"a boolean field compared with yes is refused", orR + "/users", "enabledUser='yes'", "invalid_filter_field", "enabledUser"},
		{"a field name with a dash is refused", orR + "/users", "given-name='x'", "invalid_filter_field", "filter"},
		{"a predicate without an operator is refused", orR + "/users", "givenName", "invaliddata", "filter"},
		{"an unterminated quote is refused", orR + "/users", "givenName='Mia", "invaliddata", "filter"},
		{"an unknown operator is refused", orR + "/users", "givenName=='Mia'", "invaliddata", "filter"},
		{"a lower-case and is refused", orR + "/users", "givenName='Mia' and familyName='Minor'", "invaliddata", "filter"},
		{"an unbalanced parenthesis is refused", orR + "/users", "(givenName='Mia'", "invaliddata", "filter"},
		{"an unquoted value is refused", orR + "/users", "givenName=Mia", "invaliddata", "filter"},
		{"SQL after a value is refused, not run", orR + "/users", "givenName='Mia' OR 1=1 --", "", "filter"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			wantFailure(t, send(t, h, "GET", tt.path+"?filter="+url.QueryEscape(tt.filter), tok, nil), 400, tt.codeMinor, tt.mention)
		})
	}
}

// sortKey compares two objects of a response by field f as the store orders them:
// a missing value first, numbers by value, references by sourcedId, text bytewise.
func sortKey(f *records.Field, a, b map[string]any) int {
	va, oka := a[f.Name]
	vb, okb := b[f.Name]
	switch {
	case !oka && !okb:
		return 0
	case !oka:
		return -1
	case !okb:
		return 1
	}
	switch f.Kind {
	case records.KFloat:
		return cmp.Compare(va.(float64), vb.(float64))
	case records.KRef:
		return strings.Compare(va.(map[string]any)["sourcedId"].(string), vb.(map[string]any)["sourcedId"].(string))
	}
	return strings.Compare(va.(string), vb.(string))
}

func TestSortOnEverySortableField(t *testing.T) {
	t.Parallel()
	h, tok := newQueryHarness(t)
	for _, e := range []*records.Entity{records.User, records.Class, records.AcademicSession, records.Enrollment, records.Org, records.Course, records.LineItem, records.Category, records.Result} {
		path := "/ims/oneroster/" + e.Service + "/v1p2/" + e.Path
		for i := range e.Fields {
			f := &e.Fields[i]
			if f.Sensitive || (f.Kind > records.KFloat && f.Kind != records.KRef) {
				continue
			}
			name := f.Name
			if f.Kind == records.KRef {
				name += ".sourcedId"
			}
			for _, order := range []string{"asc", "desc"} {
				t.Run(fmt.Sprintf("%s sorted by %s %s", e.Collection, name, order), func(t *testing.T) {
					t.Parallel()
					r := send(t, h, "GET", path+"?sort="+name+"&orderBy="+order, tok, nil)
					objs := listOf(t, r, e.Collection)
					if len(objs) < 2 {
						t.Fatalf("only %d objects: nothing to sort", len(objs))
					}
					less := func(i, j int) bool {
						c := sortKey(f, objs[i], objs[j])
						if c == 0 {
							c = strings.Compare(objs[i]["sourcedId"].(string), objs[j]["sourcedId"].(string))
						}
						if order == "desc" {
							return c > 0
						}
						return c < 0
					}
					if !sort.SliceIsSorted(objs, less) {
						var vals []string
						for _, o := range objs {
							vals = append(vals, fmt.Sprintf("%v:%v", o["sourcedId"], brief(o[f.Name])))
						}
						t.Errorf("not sorted by %s %s (then sourcedId): %v", name, order, vals)
					}
				})
			}
		}
	}
	t.Run("users sorted by two fields", func(t *testing.T) {
		t.Parallel()
		objs := listOf(t, send(t, h, "GET", orR+"/users?sort=familyName,givenName", tok, nil), "users")
		ok := sort.SliceIsSorted(objs, func(i, j int) bool {
			a, b := objs[i], objs[j]
			return cmp.Or(strings.Compare(a["familyName"].(string), b["familyName"].(string)), strings.Compare(a["givenName"].(string), b["givenName"].(string))) < 0
		})
		if !ok {
			t.Errorf("users are not sorted by familyName then givenName: %v", idsOf(objs))
		}
	})
	bad := []struct{ name, query, codeMinor, mention string }{
		{"an unknown sort field is refused", "sort=shoeSize", "", "shoeSize"},
		{"an encrypted sort field is refused", "sort=email", "", "email"},
		{"a list sort field is refused", "sort=grades", "", "grades"},
		{"the roles list is not a sort field", "sort=roles", "", "roles"},
		{"a malformed sort field is refused", "sort=family-name", "", "sort"},
		{"orderBy other than asc or desc is refused", "sort=familyName&orderBy=sideways", "invaliddata", "orderBy"},
		{"orderBy in capitals is refused", "sort=familyName&orderBy=DESC", "invaliddata", "orderBy"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			wantFailure(t, send(t, h, "GET", orR+"/users?"+tt.query, tok, nil), 400, tt.codeMinor, tt.mention)
		})
	}
}

func TestFieldsProjection(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	tok := h.client(authz.AllScopes)
	minor := userWith(testdistrict.Minor)
	tests := []struct {
		name, path, key string
		want            []string
	}{
		{"a list returns only the asked fields", orR + "/users?fields=sourcedId,givenName", "users", []string{"sourcedId", "givenName"}},
		{"spaces around field names are allowed", orR + "/users?fields=" + url.QueryEscape("givenName , familyName"), "users", []string{"givenName", "familyName"}},
		{"repeated fields parameters are joined", orR + "/users?fields=givenName&fields=roles", "users", []string{"givenName", "roles"}},
		{"a reference can be asked for", orR + "/classes?fields=course", "classes", []string{"course"}},
		{"a nested collection projects too", orR + "/classes/" + testdistrict.ClassMathA + "/students?fields=familyName", "users", []string{"familyName"}},
		{"one object returns only the asked fields", orR + "/users/" + testdistrict.Minor + "?fields=email,familyName", "user", []string{"email", "familyName"}},
		{"one result returns only the asked fields", orG + "/results/" + testdistrict.ResultMinA + "?fields=score,scoreStatus", "result", []string{"score", "scoreStatus"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := send(t, h, "GET", tt.path, tok, nil)
			if r.status != 200 {
				t.Fatalf("status %d, want 200: %s", r.status, r.body)
			}
			var objs []map[string]any
			if strings.HasSuffix(tt.key, "s") {
				objs = listOf(t, r, tt.key)
			} else {
				objs = []map[string]any{singleOf(t, r, tt.key)}
			}
			for _, o := range objs {
				if got := sorted(sortedKeys(o)...); !slices.Equal(got, sorted(tt.want...)) {
					t.Errorf("object %v has fields %v, want %v", o["sourcedId"], got, sorted(tt.want...))
				}
			}
			if tt.key == "user" && objs[0]["email"] != minor.Str("email") {
				t.Errorf("email = %v, want the decrypted %q", objs[0]["email"], minor.Str("email"))
			}
		})
	}
	bad := []struct{ name, path, mention string }{
		{"an unknown field is refused", orR + "/users?fields=shoeSize", "shoeSize"},
		{"an unknown field among known ones is refused", orR + "/users?fields=givenName,shoeSize", "shoeSize"},
		{"an empty field name is refused", orR + "/users?fields=givenName,,familyName", "fields"},
		{"a dotted field is refused", orR + "/classes?fields=course.title", "course.title"},
		{"an unknown field on one object is refused", orR + "/users/" + testdistrict.Minor + "?fields=shoeSize", "shoeSize"},
		{"an unknown field on a gradebook list is refused", orG + "/lineItems?fields=points", "points"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			wantFailure(t, send(t, h, "GET", tt.path, tok, nil), 400, "invalid_selection_field", tt.mention)
		})
	}
}

// gradebookBody is a valid body for a PUT of e with id; change mutates it.
func gradebookBody(e *records.Entity, change func(o map[string]any)) map[string]any {
	ref := func(id, typ string) map[string]any { return map[string]any{"sourcedId": id, "type": typ} }
	var o map[string]any
	switch e {
	case records.Category:
		o = map[string]any{"title": "Labs", "weight": 0.2}
	case records.LineItem:
		o = map[string]any{"title": "Lab report 1", "description": "Pendulum", "assignDate": "2026-09-10T08:00:00.000Z", "dueDate": "2026-09-17T08:00:00.000Z",
			"class": ref(testdistrict.ClassMathA, "class"), "school": ref(testdistrict.SchoolA, "org"), "category": ref(testdistrict.Category, "category"),
			"gradingPeriod": ref(testdistrict.GP1, "academicSession"), "resultValueMin": 0, "resultValueMax": 20}
	case records.Result:
		o = map[string]any{"lineItem": ref(testdistrict.LineItemA, "lineItem"), "student": ref(testdistrict.Student3, "user"), "scoreStatus": "fully graded",
			"score": 88, "scoreDate": "2026-09-12", "comment": "Neat work", "late": "false"}
	case records.ScoreScale:
		o = map[string]any{"title": "Pass/fail", "type": "passfail", "class": ref(testdistrict.ClassMathA, "class"),
			"scoreScaleValue": []any{map[string]any{"itemValueLHS": "P", "itemValueRHS": "60"}}}
	case records.AssessmentLineItem:
		o = map[string]any{"title": "Benchmark 2", "class": ref(testdistrict.ClassMathA, "class"), "resultValueMax": 400}
	case records.AssessmentResult:
		o = map[string]any{"assessmentLineItem": ref(assessmentLineItem, "assessmentLineItem"), "student": ref(testdistrict.Eligible, "user"),
			"score": 250, "scoreDate": "2026-09-11", "scoreStatus": "submitted"}
	}
	if change != nil {
		change(o)
	}
	return map[string]any{e.Single: o}
}

// collectionsOf are the GET collections that must show an object of e written with gradebookBody.
func collectionsOf(e *records.Entity) []string {
	switch e {
	case records.Category:
		return []string{orG + "/categories"}
	case records.LineItem:
		return []string{orG + "/lineItems", orG + "/classes/" + testdistrict.ClassMathA + "/lineItems"}
	case records.Result:
		return []string{orG + "/results", orG + "/classes/" + testdistrict.ClassMathA + "/results",
			orG + "/classes/" + testdistrict.ClassMathA + "/lineItems/" + testdistrict.LineItemA + "/results",
			orG + "/classes/" + testdistrict.ClassMathA + "/students/" + testdistrict.Student3 + "/results"}
	case records.ScoreScale:
		return []string{orG + "/scoreScales", orG + "/classes/" + testdistrict.ClassMathA + "/scoreScales", orG + "/schools/" + testdistrict.SchoolA + "/scoreScales"}
	case records.AssessmentLineItem:
		return []string{orG + "/assessmentLineItems"}
	case records.AssessmentResult:
		return []string{orG + "/assessmentResults"}
	}
	return nil
}

// countIn returns how many objects with sourcedId id a collection shows.
func countIn(t *testing.T, h *harness, tok, path, key, id string) int {
	t.Helper()
	r := send(t, h, "GET", path+"?filter="+url.QueryEscape("sourcedId='"+id+"'"), tok, nil)
	n := len(listOf(t, r, key))
	if tc := r.header.Get("X-Total-Count"); tc != strconv.Itoa(n) {
		t.Errorf("GET %s: X-Total-Count %s for %d objects", path, tc, n)
	}
	return n
}

func newWriteHarness(t testing.TB) (*harness, string) { return newWriteHarnessOn(t, "") }

// newWriteHarnessOn is newWriteHarness on the PostgreSQL database at pgURL ("" for
// SQLite): the test district with the assessment seeds, and a token of every scope.
func newWriteHarnessOn(t testing.TB, pgURL string) (*harness, string) {
	h := newHarnessOn(t, pgURL)
	seed(t, h, assessmentSeeds...)
	return h, h.client(authz.AllScopes)
}

func TestGradebookPutReplaceAndDelete(t *testing.T) {
	t.Parallel()
	h, tok := newWriteHarness(t)
	changes := map[*records.Entity]func(map[string]any){
		records.Category:           func(o map[string]any) { o["title"] = "Labs (revised)"; delete(o, "weight") },
		records.LineItem:           func(o map[string]any) { o["title"] = "Lab report 1 (revised)"; o["resultValueMax"] = 25 },
		records.Result:             func(o map[string]any) { o["score"] = 91.5; o["scoreStatus"] = "partially graded" },
		records.ScoreScale:         func(o map[string]any) { o["title"] = "Pass / fail" },
		records.AssessmentLineItem: func(o map[string]any) { o["title"] = "Benchmark 2b" },
		records.AssessmentResult:   func(o map[string]any) { o["score"] = 260 },
	}
	for _, o := range documentedOps(t) {
		if o.method != "PUT" {
			continue
		}
		e := entityOfPath(o.path)
		getOp := docOpFor(t, "GET", o.path)
		schema := getOp.schema("200")
		id := "put-" + e.Name
		path := fillPath(o.path, id)
		t.Run(o.op.OperationID+" creates, replaces and deletes", func(t *testing.T) {
			t.Parallel()
			body := gradebookBody(e, nil)
			r := sendJSON(t, h, "PUT", path, tok, body)
			if r.status != 201 {
				t.Fatalf("PUT %s (create): status %d, want 201: %s", path, r.status, r.body)
			}
			checkSchema(t, getOp, schema, r)
			created := singleOf(t, r, e.Single)
			if created["sourcedId"] != id || created["status"] != "active" || created["dateLastModified"] == nil {
				t.Errorf("created = %v, want sourcedId %s, status active and a dateLastModified", created, id)
			}
			checkFieldsKept(t, body[e.Single].(map[string]any), created)
			g := send(t, h, "GET", path, tok, nil)
			if g.status != 200 {
				t.Fatalf("GET %s after PUT: status %d", path, g.status)
			}
			if !jsonEqual(singleOf(t, g, e.Single), created) {
				t.Errorf("GET after PUT = %s, want the PUT's answer %s", g.body, r.body)
			}
			for _, c := range collectionsOf(e) {
				if n := countIn(t, h, tok, c, e.Collection, id); n != 1 {
					t.Errorf("GET %s shows %d objects %s, want 1", c, n, id)
				}
			}

			// The same body again: one object, answered 200.
			r = sendJSON(t, h, "PUT", path, tok, body)
			if r.status != 200 {
				t.Fatalf("PUT %s (same body again): status %d, want 200: %s", path, r.status, r.body)
			}
			if n := countIn(t, h, tok, collectionsOf(e)[0], e.Collection, id); n != 1 {
				t.Errorf("after two identical PUTs, %d objects %s, want 1", n, id)
			}

			// A replace.
			changed := gradebookBody(e, changes[e])
			r = sendJSON(t, h, "PUT", path, tok, changed)
			if r.status != 200 {
				t.Fatalf("PUT %s (replace): status %d, want 200: %s", path, r.status, r.body)
			}
			replaced := singleOf(t, r, e.Single)
			checkFieldsKept(t, changed[e.Single].(map[string]any), replaced)
			if _, ok := changed[e.Single].(map[string]any)["weight"]; !ok && e == records.Category && replaced["weight"] != nil {
				t.Errorf("a field left out of the replacing body is kept: weight = %v", replaced["weight"])
			}
			if g := send(t, h, "GET", path, tok, nil); !jsonEqual(singleOf(t, g, e.Single), replaced) {
				t.Errorf("GET after replace = %s, want %s", g.body, r.body)
			}

			// A delete.
			r = send(t, h, "DELETE", path, tok, nil)
			if r.status != 204 || len(r.body) != 0 {
				t.Fatalf("DELETE %s: status %d body %q, want 204 and no body", path, r.status, r.body)
			}
			wantFailure(t, send(t, h, "GET", path, tok, nil), 404, "unknownobject")
			for _, c := range collectionsOf(e) {
				if n := countIn(t, h, tok, c, e.Collection, id); n != 0 {
					t.Errorf("after DELETE, GET %s still shows %s", c, id)
				}
			}
			wantFailure(t, send(t, h, "DELETE", path, tok, nil), 404, "unknownobject")
		})
	}
}

// entityOfPath returns the entity of a gradebook path /x/{sourcedId}.
func entityOfPath(path string) *records.Entity {
	segs := strings.Split(path, "/")
	coll := segs[len(segs)-2]
	for _, e := range records.Entities {
		if e.Path == coll {
			return e
		}
	}
	panic("no entity for " + path)
}

func docOpFor(t *testing.T, method, path string) docOp {
	for _, o := range documentedOps(t) {
		if o.method == method && o.path == path {
			return o
		}
	}
	t.Fatalf("no documented %s %s", method, path)
	return docOp{}
}

// checkFieldsKept checks that every field sent comes back with the same value
// (references by sourcedId).
func checkFieldsKept(t *testing.T, sent, got map[string]any) {
	t.Helper()
	for k, v := range sent {
		g, ok := got[k]
		if !ok {
			t.Errorf("field %s was sent but is not stored", k)
			continue
		}
		if ref, isRef := v.(map[string]any); isRef {
			gm, _ := g.(map[string]any)
			if gm == nil || gm["sourcedId"] != ref["sourcedId"] {
				t.Errorf("%s = %v, want a reference to %v", k, brief(g), ref["sourcedId"])
			}
			continue
		}
		if !jsonEqual(v, g) {
			t.Errorf("%s = %s, want %s", k, brief(g), brief(v))
		}
	}
}

func jsonEqual(a, b any) bool {
	ja, err1 := json.Marshal(a)
	jb, err2 := json.Marshal(b)
	if err1 != nil || err2 != nil {
		return false
	}
	var x, y any
	_ = json.Unmarshal(ja, &x) // marshalled just above
	_ = json.Unmarshal(jb, &y)
	xa, _ := json.Marshal(x)
	yb, _ := json.Marshal(y)
	return bytes.Equal(xa, yb)
}

func TestGradebookValuesAreKeptAsSent(t *testing.T) {
	t.Parallel()
	h, tok := newWriteHarness(t)
	docs, _ := loadDocs()
	var statuses []string
	for _, alt := range docs[1].Components.Schemas["ResultDType"].Properties["scoreStatus"].AnyOf {
		for _, v := range alt.Enum {
			statuses = append(statuses, v.(string))
		}
	}
	if len(statuses) != 5 {
		t.Fatalf("ResultDType.scoreStatus lists %v, want the 5 statuses of OneRoster 1.2", statuses)
	}
	statuses = append(statuses, "ext:excused")
	type kept struct {
		name, path string
		e          *records.Entity
		change     func(map[string]any)
		want       map[string]any // fields stored in another form than sent
	}
	var tests []kept
	for i, s := range statuses {
		tests = append(tests,
			kept{"a result with scoreStatus " + s + " keeps it", orG + "/results/status-" + strconv.Itoa(i), records.Result, func(o map[string]any) { o["scoreStatus"] = s }, nil},
			kept{"an assessment result with scoreStatus " + s + " keeps it", orG + "/assessmentResults/status-" + strconv.Itoa(i), records.AssessmentResult, func(o map[string]any) { o["scoreStatus"] = s }, nil},
		)
	}
	long := string([]rune(strings.Repeat("Ünïcødé lab report — ", 300))[:5000])
	tests = append(tests,
		kept{"a score above resultValueMax is kept (extra credit)", orG + "/results/extra-credit", records.Result, func(o map[string]any) { o["score"] = 150.5 }, nil},
		kept{"a negative score is kept", orG + "/results/negative", records.Result, func(o map[string]any) { o["score"] = -2 }, nil},
		kept{"an exempt result without a score is kept", orG + "/results/exempt-no-score", records.Result, func(o map[string]any) { o["scoreStatus"] = "exempt"; delete(o, "score") }, nil},
		kept{"a 5000-character title is kept whole", orG + "/lineItems/long-title", records.LineItem, func(o map[string]any) { o["title"] = long }, nil},
		kept{"a title of the largest allowed size is kept whole", orG + "/lineItems/max-title", records.LineItem, func(o map[string]any) { o["title"] = strings.Repeat("x", records.MaxText) }, nil},
		kept{"a description with newlines, quotes and emoji is kept", orG + "/lineItems/odd-text", records.LineItem, func(o map[string]any) {
			o["description"] = "line 1\nline \"2\"\t<b>&amp;</b> \\ 🎓 \u2028 end"
		}, nil},
		kept{"a date-time with an offset is kept as the same instant in UTC", orG + "/lineItems/offset", records.LineItem,
			func(o map[string]any) { o["dueDate"] = "2026-09-17T10:00:00+02:00" }, map[string]any{"dueDate": "2026-09-17T08:00:00.000Z"}},
		kept{"a boolean sent as JSON true is kept as \"true\"", orG + "/results/json-bool", records.Result,
			func(o map[string]any) { o["late"] = true }, map[string]any{"late": "true"}},
		kept{"metadata is kept", orG + "/categories/with-metadata", records.Category, func(o map[string]any) { o["metadata"] = map[string]any{"ext:source": "sis", "n": 3.0} }, nil},
		kept{"a learning objective set is kept", orG + "/lineItems/with-objectives", records.LineItem, func(o map[string]any) {
			o["learningObjectiveSet"] = []any{map[string]any{"source": "case", "learningObjectiveIds": []any{"LO-1", "LO-2"}}}
		}, nil},
		kept{"a tobedeleted status is kept", orG + "/categories/to-be-deleted", records.Category, func(o map[string]any) { o["status"] = "tobedeleted" }, nil},
		kept{"a weight of zero is kept", orG + "/categories/zero-weight", records.Category, func(o map[string]any) { o["weight"] = 0 }, nil},
	)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			body := gradebookBody(tt.e, tt.change)
			r := sendJSON(t, h, "PUT", tt.path, tok, body)
			if r.status != 201 {
				t.Fatalf("PUT %s: status %d, want 201: %s", tt.path, r.status, clipBody(r.body))
			}
			g := send(t, h, "GET", tt.path, tok, nil)
			if g.status != 200 {
				t.Fatalf("GET %s: status %d", tt.path, g.status)
			}
			sent := maps.Clone(body[tt.e.Single].(map[string]any))
			got := singleOf(t, g, tt.e.Single)
			for field, want := range tt.want {
				delete(sent, field)
				if got[field] != want {
					t.Errorf("%s = %v, want %v", field, brief(got[field]), want)
				}
			}
			checkFieldsKept(t, sent, got)
		})
	}
}

func TestGradebookPostsAllocateIDs(t *testing.T) {
	t.Parallel()
	h, tok := newWriteHarness(t)
	docs, _ := loadDocs()
	pairSchema := docs[1].Components.Schemas["GUIDPairSetDType"]
	li := func(title string) map[string]any {
		o := gradebookBody(records.LineItem, func(o map[string]any) { o["title"] = title })["lineItem"].(map[string]any)
		return o
	}
	res := func(student string) map[string]any {
		return gradebookBody(records.Result, func(o map[string]any) { o["student"] = map[string]any{"sourcedId": student, "type": "user"} })["result"].(map[string]any)
	}
	withID := func(o map[string]any, id string) map[string]any { o["sourcedId"] = id; return o }
	without := func(o map[string]any, field string) map[string]any { delete(o, field); return o }
	tests := []struct {
		name, path string
		e          *records.Entity
		objs       []map[string]any
		forced     map[string]string // field -> sourcedId the path imposes
		also       string            // a collection that must show the new objects
	}{
		{"POST /classes/{id}/lineItems creates line items in the class", orG + "/classes/" + testdistrict.ClassMathA + "/lineItems", records.LineItem,
			[]map[string]any{withID(li("Posted 1"), "client-li-1"), withID(without(li("Posted 2"), "class"), "client-li-2")},
			map[string]string{"class": testdistrict.ClassMathA}, orG + "/classes/" + testdistrict.ClassMathA + "/lineItems"},
		{"POST /schools/{id}/lineItems creates line items in the school", orG + "/schools/" + testdistrict.SchoolA + "/lineItems", records.LineItem,
			[]map[string]any{withID(without(li("School posted"), "school"), "client-li-3")},
			map[string]string{"school": testdistrict.SchoolA}, orG + "/lineItems"},
		{"POST /lineItems/{id}/results creates results of the line item", orG + "/lineItems/" + testdistrict.LineItemA + "/results", records.Result,
			[]map[string]any{withID(res(testdistrict.Student3), "client-r-1"), withID(without(res(testdistrict.Minor), "lineItem"), "client-r-2")},
			map[string]string{"lineItem": testdistrict.LineItemA}, orG + "/classes/" + testdistrict.ClassMathA + "/results"},
		{"POST /classes/{id}/academicSessions/{id}/results creates results in the session", orG + "/classes/" + testdistrict.ClassMathA + "/academicSessions/" + testdistrict.GP1 + "/results", records.Result,
			[]map[string]any{withID(res(testdistrict.Eligible), "client-r-3")},
			map[string]string{"lineItem": testdistrict.LineItemA}, orG + "/classes/" + testdistrict.ClassMathA + "/lineItems/" + testdistrict.LineItemA + "/results"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := sendJSON(t, h, "POST", tt.path, tok, map[string]any{tt.e.Collection: tt.objs})
			if r.status != 201 {
				t.Fatalf("POST %s: status %d, want 201: %s", tt.path, r.status, r.body)
			}
			var v any
			_ = json.Unmarshal(r.body, &v)
			if p := docs[1].validate(pairSchema, v, "$"); len(p) > 0 {
				t.Errorf("the answer is not a GUIDPairSet: %v", p)
			}
			var got struct {
				Pairs []struct {
					Supplied  string `json:"suppliedSourcedId"`
					Allocated string `json:"allocatedSourcedId"`
				} `json:"sourcedIdPairs"`
			}
			if err := json.Unmarshal(r.body, &got); err != nil || len(got.Pairs) != len(tt.objs) {
				t.Fatalf("sourcedIdPairs = %s, want %d pairs", r.body, len(tt.objs))
			}
			seen := map[string]bool{}
			for i, p := range got.Pairs {
				if p.Supplied != tt.objs[i]["sourcedId"] {
					t.Errorf("pair %d supplied %q, want %q", i, p.Supplied, tt.objs[i]["sourcedId"])
				}
				if p.Allocated == "" || seen[p.Allocated] {
					t.Errorf("pair %d allocated %q: want a fresh id", i, p.Allocated)
				}
				seen[p.Allocated] = true
				path := orG + "/" + tt.e.Path + "/" + url.PathEscape(p.Allocated)
				g := send(t, h, "GET", path, tok, nil)
				if g.status != 200 {
					t.Errorf("GET %s: status %d, want 200", path, g.status)
					continue
				}
				o := singleOf(t, g, tt.e.Single)
				for field, want := range tt.forced {
					if ref, _ := o[field].(map[string]any); ref == nil || ref["sourcedId"] != want {
						t.Errorf("%s of %s = %v, want %s", field, p.Allocated, brief(o[field]), want)
					}
				}
				want := maps.Clone(tt.objs[i])
				delete(want, "sourcedId")
				for field := range tt.forced {
					delete(want, field)
				}
				checkFieldsKept(t, want, o)
				if n := countIn(t, h, tok, tt.also, tt.e.Collection, p.Allocated); n != 1 {
					t.Errorf("GET %s shows %s %d times, want once", tt.also, p.Allocated, n)
				}
			}
		})
	}
}

func TestGradebookDeletesFollowReferences(t *testing.T) {
	t.Parallel()
	h, tok := newWriteHarness(t)
	t.Run("deleting a line item deletes its results", func(t *testing.T) {
		r := send(t, h, "DELETE", orG+"/lineItems/"+testdistrict.LineItemB, tok, nil)
		if r.status != 204 {
			t.Fatalf("DELETE: status %d, want 204: %s", r.status, r.body)
		}
		wantFailure(t, send(t, h, "GET", orG+"/results/"+testdistrict.ResultB, tok, nil), 404, "unknownobject")
		if n := countIn(t, h, tok, orG+"/results", "results", testdistrict.ResultB); n != 0 {
			t.Errorf("/results still shows %s", testdistrict.ResultB)
		}
		wantFailure(t, send(t, h, "GET", orG+"/classes/"+testdistrict.ClassB+"/lineItems/"+testdistrict.LineItemB+"/results", tok, nil), 404, "unknownobject")
	})
	t.Run("a category still used by a line item cannot be deleted", func(t *testing.T) {
		wantFailure(t, send(t, h, "DELETE", orG+"/categories/"+testdistrict.Category, tok, nil), 409, "", "lineItem")
		if r := send(t, h, "GET", orG+"/categories/"+testdistrict.Category, tok, nil); r.status != 200 {
			t.Errorf("GET the category after a refused DELETE: status %d, want 200", r.status)
		}
	})
	t.Run("deleting an assessment line item deletes its results", func(t *testing.T) {
		if r := send(t, h, "DELETE", orG+"/assessmentLineItems/"+assessmentLineItem, tok, nil); r.status != 204 {
			t.Fatalf("DELETE: status %d, want 204: %s", r.status, r.body)
		}
		wantFailure(t, send(t, h, "GET", orG+"/assessmentResults/"+assessmentResult, tok, nil), 404, "unknownobject")
	})
}
