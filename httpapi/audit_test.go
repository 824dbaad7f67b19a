package httpapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"testing"

	"registrar/audit"
	"registrar/authn"
	"registrar/authz"
	"registrar/httpapi"
	"registrar/internal/testdistrict"
	"registrar/records"
	"registrar/sqlstore"
	"registrar/vault"
)

// auditEventsByRequest returns every stored audit event by its request id.
func auditEventsByRequest(t *testing.T, st *sqlstore.Store) map[string]audit.Entry {
	t.Helper()
	out := map[string]audit.Entry{}
	if err := st.ExportAudit(context.Background(), sqlstore.ExportQuery{}, func(e audit.Entry) error {
		if e.RequestID != "" {
			out[e.RequestID] = e
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// auditRouteIDs fills the path parameters of a route with ids from the test district.
var auditRouteIDs = map[string]string{
	"classSourcedId": testdistrict.ClassMathA, "schoolSourcedId": testdistrict.SchoolA, "studentSourcedId": testdistrict.Minor,
	"teacherSourcedId": testdistrict.TeacherA, "termSourcedId": testdistrict.Term1, "courseSourcedId": testdistrict.CourseMath,
	"userSourcedId": testdistrict.Minor, "lineItemSourcedId": testdistrict.LineItemA, "academicSessionSourcedId": testdistrict.GP1,
	"id": testdistrict.Minor,
}

// auditSourcedIDs is the object of each collection that /{collection}/{sourcedId} reads.
var auditSourcedIDs = map[string]string{
	"users": testdistrict.Minor, "students": testdistrict.Minor, "teachers": testdistrict.TeacherA, "classes": testdistrict.ClassMathA,
	"schools": testdistrict.SchoolA, "orgs": testdistrict.SchoolA, "academicSessions": testdistrict.Term1, "terms": testdistrict.Term1,
	"gradingPeriods": testdistrict.GP1, "courses": testdistrict.CourseMath, "demographics": testdistrict.Minor, "enrollments": "enr-minor-math",
	"lineItems": testdistrict.LineItemA, "results": testdistrict.ResultMinA, "categories": testdistrict.Category, "scoreScales": testdistrict.ScaleA,
}

// auditConcretePath turns a route pattern into a path. Reads get real ids; writes get ids
// that do not exist, so the test changes nothing (a refused request is audited too).
func auditConcretePath(pattern, method string) string {
	segs := strings.Split(pattern, "/")
	for i, seg := range segs {
		if !strings.HasPrefix(seg, "{") {
			continue
		}
		name := strings.Trim(seg, "{}.")
		v := auditRouteIDs[name]
		if name == "sourcedId" && i > 0 {
			v = auditSourcedIDs[segs[i-1]]
		}
		if v == "" || method != http.MethodGet {
			v = "no-such-object"
		}
		segs[i] = url.PathEscape(v)
	}
	return strings.Join(segs, "/")
}

// auditStudentsIn lists the student ids a OneRoster response names, by the same rule the
// audit uses: users and demographics by sourcedId, enrollments by user, results by
// student.
func auditStudentsIn(t *testing.T, body []byte) []string {
	t.Helper()
	var m map[string]json.RawMessage
	if json.Unmarshal(body, &m) != nil || len(m) != 1 {
		return nil
	}
	var key string
	var raw json.RawMessage
	for k, v := range m {
		key, raw = k, v
	}
	var objs []map[string]any
	if raw[0] == '[' {
		if err := json.Unmarshal(raw, &objs); err != nil {
			return nil
		}
	} else {
		var o map[string]any
		if err := json.Unmarshal(raw, &o); err != nil {
			return nil
		}
		objs = []map[string]any{o}
	}
	ref := func(o map[string]any, f string) string {
		if r, ok := o[f].(map[string]any); ok {
			s, _ := r["sourcedId"].(string)
			return s
		}
		return ""
	}
	var out []string
	for _, o := range objs {
		var id string
		switch key {
		case "users", "user", "students", "student", "teachers", "teacher", "demographics":
			id, _ = o["sourcedId"].(string)
		case "enrollments", "enrollment":
			id = ref(o, "user")
		case "results", "result", "assessmentResults", "assessmentResult":
			id = ref(o, "student")
		default:
			return nil
		}
		if id != "" && !slices.Contains(out, id) {
			out = append(out, id)
		}
	}
	sort.Strings(out)
	return out
}

// reviewedUnaudited are the authenticated routes that touch no student data, each
// reviewed: a new route without an audit event fails TestEveryRouteIsAudited until it
// is audited or added here with its reason.
var reviewedUnaudited = map[string]string{
	"GET /v1/me": "shows callers their own principal and the size of their scope; no student's record",
}

func TestEveryRouteIsAudited(t *testing.T) {
	h := newHarness(t)
	srv := httpapi.New(httpapi.Options{Store: h.store, Auth: h.auth, Logger: slog.New(slog.NewJSONHandler(io.Discard, nil))})
	admin := h.user(testdistrict.Admin)
	vendor := h.client(authz.AllScopes)
	type sent struct {
		rt     httpapi.RouteInfo
		who    string
		resp   response
		reqID  string
		client bool
	}
	var all []sent
	routes := srv.Routes()
	// Reads first, then writes (with ids that do not exist), so nothing a read expects
	// has been changed.
	sort.SliceStable(routes, func(i, j int) bool { return routes[i].Method == "GET" && routes[j].Method != "GET" })
	for _, rt := range routes {
		key := rt.Method + " " + rt.Pattern
		if rt.Public {
			continue
		}
		if !rt.Audited {
			if reviewedUnaudited[key] == "" {
				t.Errorf("%s is not audited: audit it, or review it into reviewedUnaudited with a reason", key)
			}
			continue
		}
		path := auditConcretePath(rt.Pattern, rt.Method)
		body := ""
		if rt.Method != http.MethodGet && rt.Method != http.MethodDelete {
			body = "{}"
		}
		for _, who := range []string{"admin", "vendor"} {
			tok := admin
			if who == "vendor" {
				tok = vendor
			}
			r := h.do(rt.Method, path, tok, body)
			id := r.header.Get("X-Request-Id")
			if id == "" {
				t.Fatalf("%s %s: no X-Request-Id", rt.Method, path)
			}
			all = append(all, sent{rt, who, r, id, who == "vendor"})
		}
	}
	events := auditEventsByRequest(t, h.store)
	checked := map[string]bool{}
	for _, s := range all {
		key := s.rt.Method + " " + s.rt.Pattern
		ev, ok := events[s.reqID]
		if !ok {
			t.Errorf("%s as %s (status %d): no audit event for request %s", key, s.who, s.resp.status, s.reqID)
			continue
		}
		checked[key] = true
		if ev.Route != key || ev.Action != s.rt.Op {
			t.Errorf("%s as %s: event names route %q action %q, want %q %q", key, s.who, ev.Route, ev.Action, key, s.rt.Op)
		}
		wantOutcome := audit.OK
		if s.resp.status >= 400 {
			wantOutcome = ""
		}
		if wantOutcome == audit.OK && ev.Outcome != audit.OK || wantOutcome == "" && ev.Outcome == audit.OK {
			t.Errorf("%s as %s: status %d audited as outcome %q", key, s.who, s.resp.status, ev.Outcome)
		}
		if ev.Status != s.resp.status {
			t.Errorf("%s as %s: status %d audited as %d", key, s.who, s.resp.status, ev.Status)
		}
		if ev.Source == "" || ev.PrincipalID == "" || ev.PrincipalKind == "" {
			t.Errorf("%s as %s: event lacks its principal or source: %+v", key, s.who, ev.Event)
		}
		if s.resp.status == http.StatusOK && strings.HasPrefix(s.rt.Pattern, "/ims/") && s.rt.Method == http.MethodGet {
			want := auditStudentsIn(t, s.resp.body)
			got := slices.Clone(ev.Students)
			sort.Strings(got)
			if want != nil && !slices.Equal(got, want) {
				t.Errorf("%s as %s: event names students %v, the response %v", key, s.who, got, want)
			}
			if s.client && len(want) > 0 != ev.Disclosed {
				t.Errorf("%s as vendor: disclosed=%v for a response naming %d students", key, ev.Disclosed, len(want))
			}
		}
	}
	for _, rt := range routes {
		if rt.Audited && !checked[rt.Method+" "+rt.Pattern] {
			t.Errorf("%s %s: no request of this route was audited", rt.Method, rt.Pattern)
		}
	}
	if t.Failed() {
		return
	}
	rep, err := h.store.Verify(context.Background(), sqlstore.VerifyOptions{})
	if err != nil {
		t.Fatalf("after every route: %v", err)
	}
	if rep.Disclosures == 0 {
		t.Fatal("the vendor's reads recorded no disclosures")
	}
}

func TestFailedAndDeniedRequestsAreAudited(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	teacher := h.user(testdistrict.TeacherB)
	cases := []struct {
		name, path string
		status     int
		outcome    string
	}{
		{"a record outside the teacher's classes answers 404 and is audited as not found", "/ims/oneroster/rostering/v1p2/students/" + testdistrict.Minor, 404, audit.NotFound},
		{"a bad filter is audited as invalid", "/ims/oneroster/rostering/v1p2/users?filter=nonsense", 400, audit.Invalid},
		{"the audit trail refused to a teacher is audited as denied", "/v1/audit", 403, audit.Denied},
	}
	for _, c := range cases {
		r := h.do("GET", c.path, teacher, "")
		if r.status != c.status {
			t.Fatalf("%s: got status %d, want %d: %s", c.name, r.status, c.status, r.body)
		}
		ev, ok := auditEventsByRequest(t, h.store)[r.header.Get("X-Request-Id")]
		if !ok || ev.Outcome != c.outcome || ev.PrincipalID != testdistrict.TeacherB {
			t.Fatalf("%s: got event %+v, want outcome %s by %s", c.name, ev.Event, c.outcome, testdistrict.TeacherB)
		}
	}
}

// newClient registers a client under a legal basis and returns its id and a token.
func (h *harness) auditClient(basis, name string, scopes ...string) (string, string) {
	h.t.Helper()
	secret, hash := authn.NewSecret()
	c := records.Client{ID: vault.RandomID(), Name: name, SecretHash: hash, Scopes: scopes, Orgs: []string{"*"}, LegalBasis: basis, ContractRef: "DPA-2026-7", Purpose: "reading diagnostics"}
	if err := h.store.Write(context.Background(), func(ctx context.Context, tx *sqlstore.Tx) error { return tx.PutClient(ctx, c) }); err != nil {
		h.t.Fatal(err)
	}
	tok, err := h.auth.IssueClientToken(context.Background(), c.ID, secret, "")
	if err != nil {
		h.t.Fatal(err)
	}
	return c.ID, tok.AccessToken
}

type auditDisclosureList struct {
	Student     string `json:"student"`
	Disclosures []struct {
		ID    int64 `json:"id"`
		Party struct {
			Kind, ID, Name string
		} `json:"party"`
		LegalBasis  string `json:"legalBasis"`
		Purpose     string `json:"purpose"`
		ContractRef string `json:"contractRef"`
		Records     struct {
			Type   string   `json:"type"`
			Fields []string `json:"fields"`
		} `json:"records"`
		Required  bool   `json:"requiredBy99_32"`
		RequestID string `json:"requestId"`
	} `json:"disclosures"`
	Next string `json:"next"`
}

func (h *harness) auditDisclosures(student, token string) (int, auditDisclosureList, []byte) {
	h.t.Helper()
	r := h.do("GET", "/v1/students/"+student+"/disclosures", token, "")
	var l auditDisclosureList
	if r.status == 200 {
		if err := json.Unmarshal(r.body, &l); err != nil {
			h.t.Fatalf("disclosures: %v: %s", err, r.body)
		}
	}
	return r.status, l, r.body
}

func TestAVendorReadIsDisclosedATeacherReadIsNot(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	parent := h.user(testdistrict.Guardian)
	vendorID, vendor := h.auditClient(authz.BasisStudies, "Reading Study (synthetic)", authz.RosterReadonly, authz.GradebookReadonly)
	_, official := h.auditClient(authz.BasisSchoolOfficial, "LMS (synthetic)", authz.RosterReadonly)

	r := h.do("GET", "/ims/oneroster/rostering/v1p2/students/"+testdistrict.Minor+"?fields=sourcedId,givenName", vendor, "")
	if r.status != 200 {
		t.Fatalf("vendor read: status %d: %s", r.status, r.body)
	}
	status, l, _ := h.auditDisclosures(testdistrict.Minor, parent)
	if status != 200 || len(l.Disclosures) != 1 {
		t.Fatalf("after a vendor read: got status %d, %d entries, want 200 and 1", status, len(l.Disclosures))
	}
	d := l.Disclosures[0]
	if d.Party.ID != vendorID || d.Party.Kind != "client" || d.Party.Name != "Reading Study (synthetic)" || d.LegalBasis != authz.BasisStudies ||
		d.Purpose != "reading diagnostics" || d.ContractRef != "DPA-2026-7" || !d.Required || d.Records.Type != "user" ||
		!slices.Equal(d.Records.Fields, []string{"sourcedId", "givenName"}) || d.RequestID != r.header.Get("X-Request-Id") {
		t.Fatalf("got entry %+v, want the study's read of sourcedId and givenName, required by 99.32", d)
	}

	// A school official's (a vendor under contract) read is recorded too, but marked as
	// not required by 99.32.
	if r := h.do("GET", "/ims/oneroster/rostering/v1p2/students/"+testdistrict.Minor, official, ""); r.status != 200 {
		t.Fatalf("official read: status %d", r.status)
	}
	_, l, _ = h.auditDisclosures(testdistrict.Minor, parent)
	if len(l.Disclosures) != 2 || l.Disclosures[0].Required || len(l.Disclosures[0].Records.Fields) < 5 {
		t.Fatalf("after a school official's read: got %+v, want a second entry, not required, listing every field", l.Disclosures)
	}

	// A teacher (school staff, 99.31(a)(1)) reads the same record: audited, not disclosed.
	teacher := h.user(testdistrict.TeacherA)
	r = h.do("GET", "/ims/oneroster/rostering/v1p2/students/"+testdistrict.Minor, teacher, "")
	if r.status != 200 {
		t.Fatalf("teacher read: status %d", r.status)
	}
	if ev := auditEventsByRequest(t, h.store)[r.header.Get("X-Request-Id")]; ev.Disclosed || !slices.Contains(ev.Students, testdistrict.Minor) {
		t.Fatalf("teacher read: got event %+v, want audited with the student and not disclosed", ev.Event)
	}
	_, l, _ = h.auditDisclosures(testdistrict.Minor, parent)
	if len(l.Disclosures) != 2 {
		t.Fatalf("after a teacher read: got %d entries, want still 2", len(l.Disclosures))
	}
}

func TestParentsSeeOnlyTheirChildsRecordOfDisclosures(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	_, vendor := h.auditClient(authz.BasisStudies, "Study", authz.RosterReadonly)
	// One read that discloses three students at once.
	r := h.do("GET", "/ims/oneroster/rostering/v1p2/classes/"+testdistrict.ClassMathA+"/students", vendor, "")
	if r.status != 200 {
		t.Fatalf("vendor list: %d", r.status)
	}
	for _, st := range []string{testdistrict.Minor, testdistrict.Eligible, testdistrict.Student3} {
		if ev := auditEventsByRequest(t, h.store)[r.header.Get("X-Request-Id")]; !slices.Contains(ev.Students, st) {
			t.Fatalf("the list's event lacks %s: %v", st, ev.Students)
		}
	}
	cases := []struct {
		name    string
		who     string
		student string
		want    int
	}{
		{"a parent sees their minor child's record", testdistrict.Guardian, testdistrict.Minor, 200},
		{"a parent does not see a classmate's record", testdistrict.Guardian, testdistrict.Student3, 404},
		{"a parent does not see another family's eligible student's record", testdistrict.Guardian, testdistrict.Eligible, 404},
		{"the parent of an eligible student no longer sees it (rights passed to the student)", testdistrict.Guardian2, testdistrict.Eligible, 404},
		{"an eligible student sees their own record", testdistrict.Eligible, testdistrict.Eligible, 200},
		{"a student does not see a classmate's record", testdistrict.Student3, testdistrict.Minor, 404},
		{"a teacher does not see the record", testdistrict.TeacherA, testdistrict.Minor, 404},
		{"a school principal does not see the record", testdistrict.PrincipalA, testdistrict.Minor, 404},
		{"a district administrator sees the record", testdistrict.Admin, testdistrict.Minor, 200},
		{"a district administrator gets 404 for a student who does not exist", testdistrict.Admin, "no-such-student", 404},
		{"a district administrator gets 404 for a user who is not a student", testdistrict.Admin, testdistrict.TeacherA, 404},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			status, l, body := h.auditDisclosures(c.student, h.user(c.who))
			if status != c.want {
				t.Fatalf("got %d, want %d: %s", status, c.want, body)
			}
			if status != 200 {
				if strings.Contains(string(body), "disclosures\"") {
					t.Fatalf("a refusal shows entries: %s", body)
				}
				return
			}
			if l.Student != c.student || len(l.Disclosures) != 1 {
				t.Fatalf("got %d entries for %s, want 1 for %s", len(l.Disclosures), l.Student, c.student)
			}
			for _, other := range []string{testdistrict.Minor, testdistrict.Eligible, testdistrict.Student3} {
				if other != c.student && strings.Contains(string(body), other) {
					t.Fatalf("the record of %s names %s: %s", c.student, other, body)
				}
			}
		})
	}
	// A vendor cannot read records of disclosures (not an administrator client).
	if r := h.do("GET", "/v1/students/"+testdistrict.Minor+"/disclosures", vendor, ""); r.status != 404 {
		t.Fatalf("vendor: got %d, want 404", r.status)
	}
}

func TestTheAuditTrailAnswersWhoSawAStudent(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	admin := h.user(testdistrict.Admin)
	vendorID, vendor := h.auditClient(authz.BasisStudies, "Study", authz.RosterReadonly)
	teacher := h.user(testdistrict.TeacherA)
	reads := []string{
		h.do("GET", "/ims/oneroster/rostering/v1p2/students/"+testdistrict.Minor, vendor, "").header.Get("X-Request-Id"),
		h.do("GET", "/ims/oneroster/rostering/v1p2/classes/"+testdistrict.ClassMathA+"/students", teacher, "").header.Get("X-Request-Id"),
		h.do("GET", "/ims/oneroster/rostering/v1p2/students/"+testdistrict.StudentB, vendor, "").header.Get("X-Request-Id"),
	}
	get := func(q string, tok string) (int, []audit.Entry, string) {
		t.Helper()
		r := h.do("GET", "/v1/audit?"+q, tok, "")
		var body struct {
			Events []audit.Entry `json:"events"`
			Next   string        `json:"next"`
		}
		if r.status == 200 {
			if err := json.Unmarshal(r.body, &body); err != nil {
				t.Fatal(err)
			}
		}
		return r.status, body.Events, body.Next
	}
	status, evs, _ := get("student="+testdistrict.Minor, admin)
	var ids []string
	for _, e := range evs {
		ids = append(ids, e.RequestID)
		if len(e.Hash) != 64 {
			t.Fatalf("an event without its hash: %+v", e)
		}
	}
	if status != 200 || !slices.Contains(ids, reads[0]) || !slices.Contains(ids, reads[1]) || slices.Contains(ids, reads[2]) {
		t.Fatalf("who saw %s: got %d %v, want the vendor's and the teacher's reads, not the read of another student", testdistrict.Minor, status, ids)
	}
	_, evs, _ = get("principal="+vendorID+"&action=getStudent", admin)
	if len(evs) != 2 || evs[0].RequestID != reads[2] || evs[1].RequestID != reads[0] {
		t.Fatalf("the vendor's getStudent events, newest first: got %d events", len(evs))
	}
	_, evs, _ = get("principal=client:"+vendorID+"&from=2000-01-01&to=2001-01-01", admin)
	if len(evs) != 0 {
		t.Fatalf("a time window without events: got %d", len(evs))
	}
	// Pages by cursor cover the trail once, newest first.
	var paged []string
	q := "limit=2"
	for i := 0; i < 50; i++ {
		_, evs, next := get(q, admin)
		for _, e := range evs {
			paged = append(paged, fmt.Sprintf("%s/%d", e.Chain, e.Seq))
		}
		if next == "" {
			break
		}
		q = "limit=2&cursor=" + url.QueryEscape(next)
	}
	all := map[string]bool{}
	for _, p := range paged {
		if all[p] {
			t.Fatalf("paging repeats %s", p)
		}
		all[p] = true
	}
	if len(paged) < 5 {
		t.Fatalf("paging saw %d events", len(paged))
	}
	for _, c := range []struct {
		q     string
		tok   string
		state int
	}{
		{"", teacher, 403},
		{"", vendor, 403},
		{"from=yesterday", admin, 400},
		{"limit=0", admin, 400},
		{"cursor=garbage", admin, 400},
		{"studnet=x", admin, 400},
	} {
		if status, _, _ := get(c.q, c.tok); status != c.state {
			t.Errorf("GET /v1/audit?%s: got %d, want %d", c.q, status, c.state)
		}
	}
}

// The log stream (CloudWatch in AWS) gets every event and every checkpoint, and no
// personal value: the test district puts a canary into every sensitive value.
func TestTheLogStreamCarriesEventsWithoutPersonalValues(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	_, vendor := h.auditClient(authz.BasisStudies, "Study", authz.RosterReadonly, authz.RosterDemographics, authz.GradebookReadonly)
	for _, p := range []string{"/users", "/demographics", "/students/" + testdistrict.Minor} {
		if r := h.do("GET", "/ims/oneroster/rostering/v1p2"+p, vendor, ""); r.status != 200 {
			t.Fatalf("%s: %d", p, r.status)
		}
	}
	if r := h.do("GET", "/ims/oneroster/gradebook/v1p2/results", vendor, ""); r.status != 200 {
		t.Fatalf("results: %d", r.status)
	}
	if err := h.store.Checkpoint(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Every handler has finished (and logged), and the committer has logged every batch
	// before this empty one: the log can be read without racing its writers.
	h.srv.Close()
	if err := h.store.Write(context.Background(), func(context.Context, *sqlstore.Tx) error { return nil }); err != nil {
		t.Fatal(err)
	}
	logs := h.logText()
	if n := strings.Count(logs, `"msg":"`+audit.LogEvent+`"`); n < 4 {
		t.Fatalf("got %d audit event lines in the log, want at least 4", n)
	}
	if !strings.Contains(logs, `"msg":"`+audit.LogCheckpoint+`"`) {
		t.Fatal("no checkpoint in the log")
	}
	if strings.Contains(logs, testdistrict.Canary) {
		t.Fatal("a personal value reached the log stream")
	}
	cps, err := audit.ReadCheckpoints(strings.NewReader(logs))
	if err != nil || len(cps) == 0 {
		t.Fatalf("checkpoints from the log: %d, %v", len(cps), err)
	}
	if _, err := h.store.Verify(context.Background(), sqlstore.VerifyOptions{External: cps}); err != nil {
		t.Fatal(err)
	}
}
