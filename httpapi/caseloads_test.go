package httpapi_test

import (
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"

	"registrar/audit"
	"registrar/authz"
	"registrar/internal/testdistrict"
)

// Tests of /v1/counselors/{id}/caseload and /v1/students/{id}/dependents: who may
// call them, what bad input answers, what they record and audit, and that the scope
// of the person concerned follows on the next request.

const azCaseloadPath = "/v1/counselors/" + testdistrict.Counselor + "/caseload"

func caseloadBody(students ...string) string {
	b, _ := json.Marshal(map[string][]string{"students": students})
	return string(b)
}

// problemDetail returns the detail of a problem+json answer.
func problemDetail(t *testing.T, r response) string {
	t.Helper()
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/problem+json") {
		t.Errorf("Content-Type %q, want application/problem+json: %s", ct, r.body)
	}
	d, _ := r.json(t)["detail"].(string)
	return d
}

func TestCaseloadIsSetReadAndClearedByADistrictAdministrator(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	admin := h.user(testdistrict.Admin)
	counselor := h.user(testdistrict.Counselor)
	students := func() []string {
		t.Helper()
		r := h.do("GET", azR+"/students", counselor, "")
		if r.status != 200 {
			t.Fatalf("the counselor lists students: %d %s", r.status, r.body)
		}
		got := ids(t, r, "users")
		sort.Strings(got)
		return got
	}
	school := []string{testdistrict.Eligible, testdistrict.Minor, testdistrict.Student3}
	sort.Strings(school)
	if got := students(); !slices.Equal(got, school) {
		t.Fatalf("without a caseload the counselor sees %v, want the school's %v", got, school)
	}

	r := h.do("PUT", azCaseloadPath, admin, caseloadBody(testdistrict.Minor, testdistrict.StudentB, testdistrict.Minor))
	if r.status != 201 {
		t.Fatalf("PUT a new caseload: got %d, want 201: %s", r.status, r.body)
	}
	putID := r.header.Get("X-Request-Id")
	var got struct {
		Counselor string `json:"counselor"`
		Students  []struct {
			Student, SetBy, SetAt string
		} `json:"students"`
	}
	if err := json.Unmarshal(r.body, &got); err != nil {
		t.Fatal(err)
	}
	if got.Counselor != testdistrict.Counselor || len(got.Students) != 2 || got.Students[0].Student != testdistrict.StudentB ||
		got.Students[1].Student != testdistrict.Minor || got.Students[0].SetBy != "user:"+testdistrict.Admin || got.Students[0].SetAt == "" {
		t.Errorf("PUT answered %s, want StudentB and Minor (sorted, once each), set by the administrator, with a time", r.body)
	}
	// StudentB is of school B: in the caseload, but outside the counselor's school.
	if got := students(); !slices.Equal(got, []string{testdistrict.Minor}) {
		t.Errorf("with a caseload the counselor sees %v, want only %v", got, []string{testdistrict.Minor})
	}
	for _, p := range []string{azR + "/students/" + testdistrict.Eligible, azR + "/demographics/" + testdistrict.Eligible, azG + "/results/" + testdistrict.ResultEliA,
		azR + "/users/" + testdistrict.StudentB, azR + "/enrollments/enr-eli-math"} {
		if r := h.do("GET", p, counselor, ""); r.status != 404 {
			t.Errorf("GET %s as the counselor with a caseload: got %d, want 404", p, r.status)
		}
	}
	for _, p := range []string{azR + "/students/" + testdistrict.Minor, azR + "/demographics/" + testdistrict.Minor, azG + "/results/" + testdistrict.ResultMinA,
		azR + "/teachers/" + testdistrict.TeacherA, azR + "/classes/" + testdistrict.ClassMathA} {
		if r := h.do("GET", p, counselor, ""); r.status != 200 {
			t.Errorf("GET %s as the counselor with a caseload: got %d, want 200", p, r.status)
		}
	}
	if r := h.do("GET", "/v1/me", counselor, ""); r.json(t)["caseload"] != 2.0 {
		t.Errorf("/v1/me: %s, want caseload 2", r.body)
	}

	// Read back, by the administrator and by the counselor themself.
	for who, tok := range map[string]string{"the administrator": admin, "the counselor": counselor} {
		r := h.do("GET", azCaseloadPath, tok, "")
		if r.status != 200 || !strings.Contains(string(r.body), testdistrict.StudentB) {
			t.Errorf("GET the caseload as %s: got %d %s", who, r.status, r.body)
		}
	}

	// Replace: 200, and the new set only.
	r = h.do("PUT", azCaseloadPath, admin, caseloadBody(testdistrict.Eligible))
	if r.status != 200 {
		t.Fatalf("PUT a replacement: got %d, want 200: %s", r.status, r.body)
	}
	if got := students(); !slices.Equal(got, []string{testdistrict.Eligible}) {
		t.Errorf("after the replacement the counselor sees %v, want %v", got, []string{testdistrict.Eligible})
	}

	// Clear: 204; the school again; a second clear finds nothing.
	r = h.do("DELETE", azCaseloadPath, admin, "")
	if r.status != 204 {
		t.Fatalf("DELETE the caseload: got %d, want 204: %s", r.status, r.body)
	}
	delID := r.header.Get("X-Request-Id")
	if got := students(); !slices.Equal(got, school) {
		t.Errorf("after clearing the caseload the counselor sees %v, want the school's %v", got, school)
	}
	if r := h.do("DELETE", azCaseloadPath, admin, ""); r.status != 404 {
		t.Errorf("DELETE a caseload that is not set: got %d, want 404", r.status)
	}
	if r := h.do("GET", azCaseloadPath, admin, ""); r.status != 200 || !strings.Contains(string(r.body), `"students":[]`) {
		t.Errorf("GET a cleared caseload: got %d %s, want 200 and no students", r.status, r.body)
	}

	// The writes are in the audit trail, with the students they concern.
	events := auditEventsByRequest(t, h.store)
	for id, want := range map[string]struct {
		detail   string
		students []string
	}{putID: {"created", []string{testdistrict.Minor, testdistrict.StudentB}}, delID: {"deleted", []string{testdistrict.Eligible}}} {
		ev, ok := events[id]
		if !ok {
			t.Errorf("request %s: no audit event", id)
			continue
		}
		if ev.Outcome != audit.OK || ev.Detail != want.detail || ev.ResourceType != "caseload" || ev.ResourceID != testdistrict.Counselor ||
			ev.PrincipalID != testdistrict.Admin || !slices.Equal(ev.Students, want.students) {
			t.Errorf("audit event of %s: %+v, want outcome ok, detail %q, caseload of the counselor, students %v", want.detail, ev.Event, want.detail, want.students)
		}
	}
}

func TestCaseloadRefusesBadInputAndOtherCallers(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	admin := h.user(testdistrict.Admin)
	tests := []struct {
		name, method, path, tok, body string
		want                          int
		detail                        string // a part of the problem detail
	}{
		{"a body that is not JSON", "PUT", azCaseloadPath, admin, "students: all", 400, "must be JSON"},
		{"a body with an unknown field", "PUT", azCaseloadPath, admin, `{"students": ["` + testdistrict.Minor + `"], "note": "x"}`, 400, "unknown field"},
		{"a body with a list of numbers", "PUT", azCaseloadPath, admin, `{"students": [1, 2]}`, 400, "must be JSON"},
		{"two JSON values", "PUT", azCaseloadPath, admin, caseloadBody(testdistrict.Minor) + caseloadBody(testdistrict.Minor), 400, "more than one"},
		{"an empty list", "PUT", azCaseloadPath, admin, caseloadBody(), 400, "at least one student"},
		{"no list at all", "PUT", azCaseloadPath, admin, `{}`, 400, "at least one student"},
		{"an id that is not a sourcedId", "PUT", azCaseloadPath, admin, caseloadBody(" "), 400, "students"},
		{"too many students", "PUT", azCaseloadPath, admin, caseloadBody(strings.Split(strings.Repeat("s,", 1001), ",")[:1001]...), 400, "at most 1000"},
		{"a student that does not exist", "PUT", azCaseloadPath, admin, caseloadBody(testdistrict.Minor, "ghost-student"), 400, `refers to student "ghost-student" which does not exist`},
		{"a teacher named as a student", "PUT", azCaseloadPath, admin, caseloadBody(testdistrict.TeacherA), 400, "which does not exist"},
		{"a student of another district", "PUT", azCaseloadPath, admin, caseloadBody(testdistrict.StudentC), 400, "which does not exist"},
		{"a user who is not a counselor", "PUT", "/v1/counselors/" + testdistrict.TeacherA + "/caseload", admin, caseloadBody(testdistrict.Minor), 404, "counselor"},
		{"a counselor that does not exist", "PUT", "/v1/counselors/ghost/caseload", admin, caseloadBody(testdistrict.Minor), 404, "counselor"},
		{"reading the caseload of a non-counselor", "GET", "/v1/counselors/" + testdistrict.Minor + "/caseload", admin, "", 404, "counselor"},
		{"a principal", "PUT", azCaseloadPath, h.user(testdistrict.PrincipalA), caseloadBody(testdistrict.Minor), 403, "district administrator"},
		{"the counselor setting their own", "PUT", azCaseloadPath, h.user(testdistrict.Counselor), caseloadBody(testdistrict.Minor), 403, "district administrator"},
		{"the counselor clearing their own", "DELETE", azCaseloadPath, h.user(testdistrict.Counselor), "", 403, "district administrator"},
		{"a teacher reading it", "GET", azCaseloadPath, h.user(testdistrict.TeacherA), "", 403, "district administrator"},
		{"a parent reading it", "GET", azCaseloadPath, h.user(testdistrict.Guardian), "", 403, "district administrator"},
		{"a roster client of the district", "PUT", azCaseloadPath, h.client([]string{authz.RosterReadonly}, testdistrict.District), caseloadBody(testdistrict.Minor), 403, "admin scope"},
		{"an admin client of one school", "PUT", azCaseloadPath, h.client([]string{authz.AdminScope}, testdistrict.SchoolA), caseloadBody(testdistrict.Minor), 403, "admin scope"},
		{"an admin client of the other district", "PUT", azCaseloadPath, h.client([]string{authz.AdminScope}, testdistrict.District2), caseloadBody(testdistrict.Minor), 404, "counselor"},
	}
	for _, tc := range tests {
		t.Run(tc.name+" gets "+fmt.Sprint(tc.want), func(t *testing.T) {
			r := h.do(tc.method, tc.path, tc.tok, tc.body)
			if r.status != tc.want {
				t.Fatalf("got %d, want %d: %s", r.status, tc.want, r.body)
			}
			if d := problemDetail(t, r); !strings.Contains(d, tc.detail) {
				t.Errorf("detail %q does not say %q", d, tc.detail)
			}
		})
	}
	// None of it left a caseload behind; an admin client of the district may set one.
	if r := h.do("GET", azCaseloadPath, admin, ""); r.status != 200 || !strings.Contains(string(r.body), `"students":[]`) {
		t.Errorf("after the refusals: %d %s, want no caseload", r.status, r.body)
	}
	if r := h.do("PUT", azCaseloadPath, h.client([]string{authz.AdminScope}, testdistrict.District), caseloadBody(testdistrict.Minor)); r.status != 201 {
		t.Errorf("an admin client of the district sets a caseload: got %d: %s", r.status, r.body)
	}
}

func TestDependencyFlagsAreRecordedByADistrictAdministrator(t *testing.T) {
	t.Parallel()
	h := newAZHarness(t, azOptions{})
	admin := h.user(testdistrict.Admin)
	parent := h.user(testdistrict.Guardian2)
	path := "/v1/students/" + testdistrict.Eligible + "/dependents/" + testdistrict.Guardian2
	student := azR + "/students/" + testdistrict.Eligible
	if r := h.do("GET", student, parent, ""); r.status != 404 {
		t.Fatalf("on the 18th birthday without a flag the parent reads the student: %d", r.status)
	}

	r := h.do("PUT", path, admin, "")
	if r.status != 201 {
		t.Fatalf("PUT the flag: got %d, want 201: %s", r.status, r.body)
	}
	putID := r.header.Get("X-Request-Id")
	m := r.json(t)
	if m["student"] != testdistrict.Eligible || m["guardian"] != testdistrict.Guardian2 || m["recordedBy"] != "user:"+testdistrict.Admin || m["recordedAt"] == "" {
		t.Errorf("PUT answered %s, want the pair, who recorded it and when", r.body)
	}
	if r := h.do("GET", student, parent, ""); r.status != 200 {
		t.Errorf("with the flag the parent reads the eligible student: got %d, want 200", r.status)
	}
	if r := h.do("PUT", path, admin, "{}"); r.status != 200 || r.json(t)["recordedAt"] != m["recordedAt"] {
		t.Errorf("PUT the same flag again: got %d %s, want 200 and the first record unchanged", r.status, r.body)
	}
	if r := h.do("GET", "/v1/students/"+testdistrict.Eligible+"/dependents", admin, ""); r.status != 200 || !strings.Contains(string(r.body), testdistrict.Guardian2) {
		t.Errorf("GET the flags: got %d %s", r.status, r.body)
	}

	r = h.do("DELETE", path, admin, "")
	if r.status != 204 {
		t.Fatalf("DELETE the flag: got %d, want 204: %s", r.status, r.body)
	}
	delID := r.header.Get("X-Request-Id")
	if r := h.do("GET", student, parent, ""); r.status != 404 {
		t.Errorf("without the flag the parent reads the eligible student: got %d, want 404", r.status)
	}
	if r := h.do("DELETE", path, admin, ""); r.status != 404 {
		t.Errorf("DELETE a flag that is not there: got %d, want 404", r.status)
	}
	events := auditEventsByRequest(t, h.store)
	for id, detail := range map[string]string{putID: "created", delID: "deleted"} {
		ev := events[id]
		if ev.Outcome != audit.OK || ev.Detail != detail || ev.ResourceType != "dependent" || !slices.Equal(ev.Students, []string{testdistrict.Eligible}) {
			t.Errorf("audit event of the %s flag: %+v", detail, ev.Event)
		}
	}

	tests := []struct {
		name, method, path, tok, body string
		want                          int
		detail                        string
	}{
		{"a parent not linked to the student", "PUT", "/v1/students/" + testdistrict.Eligible + "/dependents/" + testdistrict.Guardian, admin, "", 409, "not linked"},
		{"a teacher named as the guardian", "PUT", "/v1/students/" + testdistrict.Eligible + "/dependents/" + testdistrict.TeacherA, admin, "", 404, "guardian"},
		{"a guardian that does not exist", "PUT", "/v1/students/" + testdistrict.Eligible + "/dependents/ghost", admin, "", 404, "guardian"},
		{"a student that does not exist", "PUT", "/v1/students/ghost/dependents/" + testdistrict.Guardian2, admin, "", 404, "student"},
		{"a teacher named as the student", "GET", "/v1/students/" + testdistrict.TeacherA + "/dependents", admin, "", 404, "student"},
		{"a student of another district", "PUT", "/v1/students/" + testdistrict.StudentC + "/dependents/" + testdistrict.Guardian2, admin, "", 404, "student"},
		{"a body that says something", "PUT", path, admin, `{"dependent": false}`, 400, "empty"},
		{"the parent recording it themself", "PUT", path, parent, "", 403, "district administrator"},
		{"the eligible student", "GET", "/v1/students/" + testdistrict.Eligible + "/dependents", h.user(testdistrict.Eligible), "", 403, "district administrator"},
		{"a principal", "DELETE", path, h.user(testdistrict.PrincipalA), "", 403, "district administrator"},
		{"a counselor", "PUT", path, h.user(testdistrict.Counselor), "", 403, "district administrator"},
		{"an admin client of one school", "PUT", path, h.client([]string{authz.AdminScope}, testdistrict.SchoolA), "", 403, "admin scope"},
	}
	for _, tc := range tests {
		t.Run(tc.name+" gets "+fmt.Sprint(tc.want), func(t *testing.T) {
			r := h.do(tc.method, tc.path, tc.tok, tc.body)
			if r.status != tc.want {
				t.Fatalf("got %d, want %d: %s", r.status, tc.want, r.body)
			}
			if d := problemDetail(t, r); !strings.Contains(d, tc.detail) {
				t.Errorf("detail %q does not say %q", d, tc.detail)
			}
		})
	}
	if r := h.do("GET", student, parent, ""); r.status != 404 {
		t.Errorf("after the refusals the parent reads the eligible student: got %d, want 404", r.status)
	}
}
