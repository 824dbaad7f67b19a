package httpapi_test

// Authorization tests (issue 4): a matrix of every GET route x every kind of principal
// x related and unrelated ids, compared with an oracle written here from the test
// district's objects and the access table of docs/access-control.md, not from authz;
// then the IDOR attempts, X-Total-Count, the birthday and time-zone edges.
//
// Identifiers in this file start with "az" so they cannot collide with the other
// test files of the package.

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"registrar/authn"
	"registrar/authz"
	"registrar/httpapi"
	"registrar/internal/pgtest"
	"registrar/internal/testdistrict"
	"registrar/oneroster/query"
	"registrar/records"
	"registrar/sqlstore"
	"registrar/vault"
)

// ---------------------------------------------------------------------------------
// A harness variant: the server, its vault and its clock are reachable.

type azOptions struct {
	loc   *time.Location // the district's time zone (UTC if nil)
	oidc  *authn.OIDC
	extra bool // load azExtra() after the test district
}

// azOnBothEngines runs fn on SQLite and on PostgreSQL, as parallel subtests: scopes
// are SQL predicates written per engine (authz, sqlstore's dialects), so every access
// rule is checked on both.
func azOnBothEngines(t *testing.T, fn func(t *testing.T)) {
	t.Parallel()
	pgtest.ForEachEngine(t, func(t *testing.T) {
		t.Parallel()
		fn(t)
	})
}

type azHarness struct {
	*harness
	server *httpapi.Server
	vault  *vault.Vault
	now    atomic.Pointer[time.Time]
}

// get serves a GET in process, through the same handler chain as h.do but without a
// socket: the matrix makes thousands of requests.
func (x *azHarness) get(path, token string) response {
	req := httptest.NewRequest("GET", path, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	rec := httptest.NewRecorder()
	x.server.Handler().ServeHTTP(rec, req)
	return response{rec.Code, rec.Header(), rec.Body.Bytes()}
}

// setNow moves the server's clock (eligibility is decided as of its date).
func (x *azHarness) setNow(t time.Time) { x.now.Store(&t) }

func newAZHarness(t *testing.T, o azOptions) *azHarness {
	t.Helper()
	dir := t.TempDir()
	v, err := vault.Open(vault.Options{Dir: dir + "/keys"})
	if err != nil {
		t.Fatal(err)
	}
	logs := &strings.Builder{}
	lw := &lockedWriter{w: logs}
	log := slog.New(slog.NewJSONHandler(lw, nil))
	ctx := context.Background()
	so := sqlstore.Options{Path: dir + "/registrar.db", Chain: "test", Vault: v, Logger: log}
	if pgtest.EngineOf(t) == "postgres" { // under azOnBothEngines' postgres subtest
		so.URL = pgtest.Shared(t).NewDatabase(t)
	}
	st, err := sqlstore.Open(ctx, so)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if err := testdistrict.Load(ctx, st); err != nil {
		t.Fatalf("load district: %v", err)
	}
	if o.extra {
		err := st.Write(ctx, func(ctx context.Context, tx *sqlstore.Tx) error {
			for _, eo := range azExtra() {
				if errs := records.Validate(eo.e, eo.o); len(errs) > 0 {
					return records.InvalidFields(eo.e.Name+" "+eo.o.ID(), errs)
				}
				if _, err := tx.Put(ctx, eo.e, eo.o, sqlstore.PutOptions{}); err != nil {
					return fmt.Errorf("%s %s: %w", eo.e.Name, eo.o.ID(), err)
				}
			}
			return nil
		})
		if err != nil {
			t.Fatalf("load extra objects: %v", err)
		}
	}
	auth, err := authn.New(st, v, time.Hour, o.oidc)
	if err != nil {
		t.Fatal(err)
	}
	jwks, err := authn.JWKS(v)
	if err != nil {
		t.Fatal(err)
	}
	loc := o.loc
	if loc == nil {
		loc = time.UTC
	}
	s := httpapi.New(httpapi.Options{Store: st, Auth: auth, Logger: log, Location: loc, JWKS: jwks})
	x := &azHarness{server: s, vault: v}
	x.setNow(testdistrict.Today)
	s.SetClock(func() time.Time { return *x.now.Load() })
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	x.harness = &harness{t: t, store: st, auth: auth, srv: srv, logs: logs, lw: lw}
	if o.extra {
		// registrar's own authorization data, set as a district administrator does.
		admin := x.user(testdistrict.Admin)
		body, _ := json.Marshal(map[string][]string{"students": azCaseload})
		if r := x.do("PUT", "/v1/counselors/"+azCounselorCL+"/caseload", admin, string(body)); r.status != 201 {
			t.Fatalf("set the caseload: got %d: %s", r.status, r.body)
		}
		for student, guardians := range azDependents {
			for _, g := range guardians {
				if r := x.do("PUT", "/v1/students/"+student+"/dependents/"+g, admin, ""); r.status != 201 {
					t.Fatalf("record the dependency of %s on %s: got %d: %s", student, g, r.status, r.body)
				}
			}
		}
	}
	return x
}

type azObject struct {
	e *records.Entity
	o records.Object
}

// Extra objects beside the test district, each a case the district lacks: a student
// who has left a teacher's class (and still has a result there), assessments, and
// gradebook data in the other district.
const (
	azEndedEnrollment = "enr-sb-math-ended" // StudentB left ClassMathA on 2026-09-01
	azResultLeft      = "result-sb-math"    // StudentB's result in ClassMathA, from before
	azLineItemC       = "li-c-1"            // District2
	azResultC         = "result-c"
	azScaleB          = "scale-b"
	azALIMath         = "ali-math-a"
	azALIB            = "ali-b"
	azALIC            = "ali-c"
	azALIDistrict     = "ali-district" // an assessment not tied to a class
	azARMinor         = "ar-minor"
	azAREligible      = "ar-eligible"
	azARB             = "ar-b"
	azARC             = "ar-c"
	azCounselorCL     = "user-counselor-caseload" // a counselor of school A with a caseload (azCaseload)
	azGuardianDep     = "user-guardian-dependent" // a second parent of Eligible, who records Eligible as a dependent
)

// azCaseload is azCounselorCL's caseload: a student of school A, and a student of
// school B, outside the counselor's school (who must stay out of sight).
var azCaseload = []string{testdistrict.Minor, testdistrict.StudentB}

// azDependents: the dependency flags recorded (student -> guardians). Guardian2, the
// other parent of Eligible, has none.
var azDependents = map[string][]string{testdistrict.Eligible: {azGuardianDep}}

func azExtra() []azObject {
	active := func(o records.Object) records.Object { o["status"] = records.StatusActive; return o }
	ali := func(id, class string) azObject {
		o := records.Object{"sourcedId": id, "title": "Benchmark " + id}
		if class != "" {
			o["class"] = class
		}
		return azObject{records.AssessmentLineItem, active(o)}
	}
	ar := func(id, ali, student string) azObject {
		return azObject{records.AssessmentResult, active(records.Object{"sourcedId": id, "assessmentLineItem": ali, "student": student,
			"score": 50.0, "scoreDate": "2026-09-10", "scoreStatus": "fully graded", "comment": "noted " + testdistrict.Canary})}
	}
	person := func(id, role string, agents []string) azObject {
		o := records.Object{"sourcedId": id, "givenName": "Extra", "familyName": id, "enabledUser": "true", "username": id,
			"email": id + "." + testdistrict.Canary + "@example.org", "identifier": "SID-" + id + "-" + testdistrict.Canary,
			"roles": []records.Role{{RoleType: "primary", Role: role, Org: testdistrict.SchoolA}}, "primaryOrg": testdistrict.SchoolA}
		if agents != nil {
			o["agents"] = agents
		}
		return azObject{records.User, active(o)}
	}
	return []azObject{
		person(azCounselorCL, "counselor", nil),
		person(azGuardianDep, "guardian", []string{testdistrict.Eligible}),
		{records.Enrollment, active(records.Object{"sourcedId": azEndedEnrollment, "user": testdistrict.StudentB, "class": testdistrict.ClassMathA,
			"school": testdistrict.SchoolA, "role": "student", "primary": "false", "beginDate": "2026-08-20", "endDate": "2026-09-01"})},
		{records.Result, active(records.Object{"sourcedId": azResultLeft, "lineItem": testdistrict.LineItemA, "student": testdistrict.StudentB,
			"scoreStatus": "fully graded", "score": 55.0, "scoreDate": "2026-08-30", "comment": "before the move " + testdistrict.Canary})},
		{records.ScoreScale, active(records.Object{"sourcedId": azScaleB, "title": "Points", "type": "points", "class": testdistrict.ClassB,
			"scoreScaleValue": json.RawMessage(`[{"itemValueLHS":"P","itemValueRHS":"50"}]`)})},
		{records.LineItem, active(records.Object{"sourcedId": azLineItemC, "title": "Cedar homework", "assignDate": "2026-09-01T08:00:00Z",
			"dueDate": "2026-09-08T08:00:00Z", "class": testdistrict.ClassC, "school": testdistrict.SchoolC, "category": testdistrict.Category})},
		{records.Result, active(records.Object{"sourcedId": azResultC, "lineItem": azLineItemC, "student": testdistrict.StudentC,
			"scoreStatus": "fully graded", "score": 80.0, "scoreDate": "2026-09-09"})},
		ali(azALIMath, testdistrict.ClassMathA), ali(azALIB, testdistrict.ClassB), ali(azALIC, testdistrict.ClassC), ali(azALIDistrict, ""),
		ar(azARMinor, azALIMath, testdistrict.Minor), ar(azAREligible, azALIMath, testdistrict.Eligible),
		ar(azARB, azALIB, testdistrict.StudentB), ar(azARC, azALIC, testdistrict.StudentC),
	}
}

// ---------------------------------------------------------------------------------
// The oracle's model of the district.

type azWorld struct {
	objs       map[string]map[string]records.Object // entity name -> sourcedId -> object
	caseloads  map[string][]string                  // counselor -> caseload
	dependents map[string][]string                  // student -> guardians recorded as their parents under 99.31(a)(8)
}

func newAZWorld() *azWorld {
	w := &azWorld{objs: map[string]map[string]records.Object{}, caseloads: map[string][]string{azCounselorCL: azCaseload}, dependents: azDependents}
	add := func(e *records.Entity, o records.Object) {
		if w.objs[e.Name] == nil {
			w.objs[e.Name] = map[string]records.Object{}
		}
		w.objs[e.Name][o.ID()] = o
	}
	for _, eo := range testdistrict.Objects() {
		add(eo.E, eo.O)
	}
	for _, eo := range azExtra() {
		add(eo.e, eo.o)
	}
	return w
}

func (w *azWorld) get(entity, id string) (records.Object, bool) {
	o, ok := w.objs[entity][id]
	return o, ok
}

func (w *azWorld) ids(entity string) []string {
	out := make([]string, 0, len(w.objs[entity]))
	for id := range w.objs[entity] {
		out = append(out, id)
	}
	sort.Strings(out)
	return out
}

func azRoles(o records.Object) []records.Role    { r, _ := o["roles"].([]records.Role); return r }
func azList(o records.Object, f string) []string { l, _ := o[f].([]string); return l }

func (w *azWorld) hasRole(user string, names ...string) bool {
	u, ok := w.get("user", user)
	if !ok {
		return false
	}
	for _, r := range azRoles(u) {
		if slices.Contains(names, r.Role) {
			return true
		}
	}
	return false
}

func (w *azWorld) roleAt(user, org string, names ...string) bool {
	u, _ := w.get("user", user)
	for _, r := range azRoles(u) {
		if r.Org == org && slices.Contains(names, r.Role) {
			return true
		}
	}
	return false
}

func (w *azWorld) roleOrgs(user string) []string {
	u, _ := w.get("user", user)
	var out []string
	for _, r := range azRoles(u) {
		out = append(out, r.Org)
	}
	return out
}

func (w *azWorld) parentOrg(org string) string {
	o, _ := w.get("org", org)
	return o.Str("parent")
}

// descendants returns org and every org below it.
func (w *azWorld) descendants(org string) []string {
	out := []string{org}
	for _, id := range w.ids("org") {
		for p := w.parentOrg(id); p != ""; p = w.parentOrg(p) {
			if p == org {
				out = append(out, id)
				break
			}
		}
	}
	return out
}

// enrolled reports whether user holds an enrollment in class with one of roles that is
// current on today ("" today: the route's sense, status only).
func (w *azWorld) enrolled(user, class, today string, roles ...string) bool {
	for _, e := range w.objs["enrollment"] {
		if e.Str("user") != user || e.Str("class") != class || e.Str("status") != records.StatusActive {
			continue
		}
		if len(roles) > 0 && !slices.Contains(roles, e.Str("role")) {
			continue
		}
		if today != "" && e.Str("endDate") != "" && e.Str("endDate") < today {
			continue
		}
		return true
	}
	return false
}

// azEligible is the oracle's own reading of 34 CFR 99.3: eligible from the day the
// student turns 18 (time.AddDate carries Feb 29 to Mar 1) or when postsecondary.
func azEligible(birth string, grades []string, today string) bool {
	if slices.Contains(grades, "PS") || slices.Contains(grades, "13") {
		return true
	}
	b, err := time.Parse(time.DateOnly, birth)
	if err != nil {
		return false
	}
	return b.AddDate(18, 0, 0).Format(time.DateOnly) <= today
}

// ---------------------------------------------------------------------------------
// A principal and what the access table lets it see.

type azPrincipal struct {
	name   string // as it reads in a sentence
	user   string // a roster user, or "" for a client
	scopes []string
	orgs   []string // a client's orgs
}

var azReadScopes = []string{authz.RosterReadonly, authz.RosterCoreReadonly, authz.RosterDemographics, authz.GradebookReadonly, authz.AssessmentReadonly}

var azPrincipals = []azPrincipal{
	{name: "an installation-wide client", scopes: azReadScopes, orgs: []string{"*"}},
	{name: "a district client", scopes: azReadScopes, orgs: []string{testdistrict.District}},
	{name: "a school A client", scopes: azReadScopes, orgs: []string{testdistrict.SchoolA}},
	{name: "a district client without the demographics scope", scopes: []string{authz.RosterReadonly, authz.GradebookReadonly, authz.AssessmentReadonly}, orgs: []string{testdistrict.District}},
	{name: "the district administrator", user: testdistrict.Admin},
	{name: "the principal of school A", user: testdistrict.PrincipalA},
	{name: "the counselor of school A", user: testdistrict.Counselor},
	{name: "teacher A", user: testdistrict.TeacherA},
	{name: "teacher A2", user: testdistrict.TeacherA2},
	{name: "teacher B", user: testdistrict.TeacherB},
	{name: "the guardian of the minor", user: testdistrict.Guardian},
	{name: "the guardian of the eligible student", user: testdistrict.Guardian2},
	{name: "the minor student", user: testdistrict.Minor},
	{name: "the eligible student", user: testdistrict.Eligible},
	{name: "a disabled teacher", user: testdistrict.Disabled},
	{name: "a counselor of school A with a caseload", user: azCounselorCL},
	{name: "the guardian who records the eligible student as a dependent", user: azGuardianDep},
}

// azView is the oracle's answer, for one principal on one day, to "may it see this?".
type azView struct {
	w        *azWorld
	today    string
	denied   bool // 401: no standing
	client   bool
	scopes   []string
	all      bool            // every org of the installation
	official map[string]bool // orgs (and descendants) a school or district official or a client covers
	teacher  string          // the teacher's user id
	taught   map[string]bool // classes the teacher teaches now
	guardian string
	kids     map[string]bool // a guardian's children who are not eligible students
	student  string
	mine     map[string]bool // classes a student or a guardian's child is enrolled in now
	caseOrgs map[string]bool // orgs (and descendants) of a counselor with a caseload
	caseload map[string]bool // that counselor's caseload
}

func newAZView(w *azWorld, p azPrincipal, today string) *azView {
	v := &azView{w: w, today: today, official: map[string]bool{}, taught: map[string]bool{}, kids: map[string]bool{}, mine: map[string]bool{},
		caseOrgs: map[string]bool{}, caseload: map[string]bool{}}
	addOrg := func(org string) {
		for _, o := range w.descendants(org) {
			v.official[o] = true
		}
	}
	if p.user == "" {
		v.client, v.scopes = true, p.scopes
		for _, o := range p.orgs {
			if o == "*" {
				v.all = true
				continue
			}
			addOrg(o)
		}
		return v
	}
	u, ok := w.get("user", p.user)
	if !ok || u.Str("enabledUser") == "false" || u.Str("status") != records.StatusActive {
		v.denied = true
		return v
	}
	for _, r := range azRoles(u) {
		if r.BeginDate != "" && today < r.BeginDate || r.EndDate != "" && today > r.EndDate {
			continue
		}
		switch r.Role {
		case "counselor":
			if cl := w.caseloads[p.user]; len(cl) > 0 {
				// The caseload's students, of the counselor's schools only.
				for _, o := range w.descendants(r.Org) {
					v.caseOrgs[o] = true
				}
				for _, st := range cl {
					v.caseload[st] = true
				}
				continue
			}
			addOrg(r.Org)
		case "districtAdministrator", "systemAdministrator", "principal", "siteAdministrator":
			addOrg(r.Org)
		case "teacher", "aide", "proctor":
			v.teacher = p.user
		case "parent", "guardian", "relative":
			v.guardian = p.user
		case "student":
			v.student = p.user
		}
	}
	if v.teacher != "" {
		for _, c := range w.ids("class") {
			if w.enrolled(v.teacher, c, today, "teacher", "administrator", "proctor") {
				v.taught[c] = true
			}
		}
	}
	if v.guardian != "" {
		var agents []string
		agents = append(agents, azList(u, "agents")...)
		for _, id := range w.ids("user") {
			if slices.Contains(azList(w.objs["user"][id], "agents"), v.guardian) {
				agents = append(agents, id)
			}
		}
		for _, kid := range agents {
			if !w.hasRole(kid, "student") {
				continue
			}
			d, _ := w.get("demographics", kid)
			k, _ := w.get("user", kid)
			if !azEligible(d.Str("birthDate"), azList(k, "grades"), today) || slices.Contains(w.dependents[kid], v.guardian) {
				v.kids[kid] = true // a minor, or an eligible student recorded as this parent's dependent (99.31(a)(8))
			}
		}
	}
	for _, c := range w.ids("class") {
		for kid := range v.kids {
			if w.enrolled(kid, c, today) {
				v.mine[c] = true
			}
		}
		if v.student != "" && w.enrolled(v.student, c, today) {
			v.mine[c] = true
		}
	}
	if len(v.official) == 0 && len(v.caseOrgs) == 0 && v.teacher == "" && v.guardian == "" && v.student == "" {
		v.denied = true
	}
	return v
}

func (v *azView) isOfficial() bool { return v.all || len(v.official) > 0 || len(v.caseOrgs) > 0 }

// caseStudent: a student of the caseload who is a student of the counselor's schools.
func (v *azView) caseStudent(id string) bool {
	if !v.caseload[id] {
		return false
	}
	u, _ := v.w.get("user", id)
	for _, r := range azRoles(u) {
		if r.Role == "student" && v.caseOrgs[r.Org] {
			return true
		}
	}
	return false
}

// casePerson: a person a counselor with a caseload sees: a caseload student of their
// schools, or staff of their schools (anyone with a role there other than student,
// parent, guardian or relative).
func (v *azView) casePerson(id string) bool {
	if v.caseStudent(id) {
		return true
	}
	u, _ := v.w.get("user", id)
	for _, r := range azRoles(u) {
		if v.caseOrgs[r.Org] && !slices.Contains([]string{"student", "parent", "guardian", "relative"}, r.Role) {
			return true
		}
	}
	return false
}

// readable: may the principal read entity at all (403 otherwise).
func (v *azView) readable(entity string) bool {
	if v.client {
		has := func(s ...string) bool {
			for _, x := range s {
				if slices.Contains(v.scopes, x) {
					return true
				}
			}
			return false
		}
		switch entity {
		case "demographics":
			return has(authz.RosterDemographics)
		case "assessmentLineItem", "assessmentResult":
			return has(authz.AssessmentReadonly)
		case "category", "lineItem", "result", "scoreScale":
			return has(authz.GradebookReadonly, authz.GradebookCore)
		}
		return has(authz.RosterReadonly, authz.RosterCoreReadonly)
	}
	if v.isOfficial() {
		return true
	}
	if entity == "demographics" {
		return v.guardian != "" || v.student != "" // never as a teacher
	}
	return true
}

// hidden: may the principal not read a field of an entity it reads.
func (v *azView) hidden(entity, field string) bool {
	if v.client || v.isOfficial() || entity != "user" {
		return false
	}
	switch field {
	case "userIds":
		return true
	case "identifier", "phone", "sms":
		return v.teacher == ""
	}
	return false
}

// visible: is the object one the principal may see. The rules of docs/access-control.md.
func (v *azView) visible(entity, id string) bool {
	w := v.w
	o, ok := w.get(entity, id)
	if !ok || v.denied {
		return false
	}
	if v.all {
		return true
	}
	in := func(m map[string]bool, k string) bool { return m[k] }
	off := v.official
	co := v.caseOrgs
	// A counselor with a caseload sees the rows of their schools that name no
	// student as a school official does, and of those about people only the
	// caseload's students' and staff's.
	if len(co) > 0 && v.caseVisible(entity, id, o) {
		return true
	}
	switch entity {
	case "academicSession", "category":
		return true
	case "org":
		if off[id] {
			return true
		}
		for o := range off {
			if w.parentOrg(o) == id {
				return true
			}
		}
		if v.teacher != "" || v.student != "" {
			self := v.teacher
			if self == "" {
				self = v.student
			}
			for _, org := range w.roleOrgs(self) {
				if org == id || v.teacher != "" && w.parentOrg(org) == id {
					return true
				}
			}
		}
		if v.teacher != "" && v.student != "" {
			for _, org := range w.roleOrgs(v.student) {
				if org == id {
					return true
				}
			}
		}
		for kid := range v.kids {
			if slices.Contains(w.roleOrgs(kid), id) {
				return true
			}
		}
		return false
	case "course":
		if off[o.Str("org")] {
			return true
		}
		for org := range off {
			if w.parentOrg(org) == o.Str("org") {
				return true
			}
		}
		for c := range v.taught {
			if cl, _ := w.get("class", c); cl.Str("course") == id {
				return true
			}
		}
		for c := range v.mine {
			if cl, _ := w.get("class", c); cl.Str("course") == id {
				return true
			}
		}
		return false
	case "class":
		return off[o.Str("school")] || in(v.taught, id) || in(v.mine, id)
	case "user":
		if id == v.teacher || id == v.guardian || id == v.student || v.kids[id] {
			return true
		}
		for _, org := range w.roleOrgs(id) {
			if off[org] {
				return true
			}
		}
		for c := range v.taught {
			if w.enrolled(id, c, v.today) {
				return true // a student or a co-teacher of the teacher's class
			}
		}
		for c := range v.mine {
			if w.enrolled(id, c, v.today, "teacher") {
				return true // a teacher of the child's or the student's class
			}
		}
		return false
	case "demographics":
		if v.kids[id] || id == v.student {
			return true
		}
		for _, org := range w.roleOrgs(id) {
			if off[org] {
				return true
			}
		}
		return false
	case "enrollment":
		if off[o.Str("school")] || v.kids[o.Str("user")] || o.Str("user") == v.student && v.student != "" {
			return true
		}
		return v.taught[o.Str("class")] && o.Str("status") == records.StatusActive && (o.Str("endDate") == "" || o.Str("endDate") >= v.today)
	case "lineItem":
		return off[o.Str("school")] || v.taught[o.Str("class")] || v.mine[o.Str("class")]
	case "scoreScale":
		cl, _ := w.get("class", o.Str("class"))
		return off[cl.Str("school")] || v.taught[o.Str("class")] || v.mine[o.Str("class")]
	case "result":
		li, _ := w.get("lineItem", o.Str("lineItem"))
		st := o.Str("student")
		if off[li.Str("school")] || v.kids[st] || st == v.student && v.student != "" {
			return true
		}
		return v.taught[li.Str("class")] && w.enrolled(st, li.Str("class"), v.today, "student")
	case "assessmentLineItem":
		cl, _ := w.get("class", o.Str("class"))
		return len(off) > 0 && (o.Str("class") == "" || off[cl.Str("school")]) || v.taught[o.Str("class")] || v.mine[o.Str("class")]
	case "assessmentResult":
		st := o.Str("student")
		if v.kids[st] || st == v.student && v.student != "" {
			return true
		}
		for _, org := range w.roleOrgs(st) {
			if off[org] {
				return true
			}
		}
		for c := range v.taught {
			if w.enrolled(st, c, v.today, "student") {
				return true
			}
		}
		return false
	}
	panic("oracle: no rule for entity " + entity)
}

// caseVisible: the rows a counselor with a caseload sees (docs/access-control.md).
func (v *azView) caseVisible(entity, id string, o records.Object) bool {
	w, co := v.w, v.caseOrgs
	switch entity {
	case "academicSession", "category":
		return true
	case "org":
		for org := range co {
			if org == id || w.parentOrg(org) == id {
				return true
			}
		}
		return false
	case "course":
		for org := range co {
			if org == o.Str("org") || w.parentOrg(org) == o.Str("org") {
				return true
			}
		}
		return false
	case "class":
		return co[o.Str("school")]
	case "user", "demographics":
		return v.casePerson(id)
	case "enrollment":
		return co[o.Str("school")] && v.casePerson(o.Str("user"))
	case "lineItem":
		return co[o.Str("school")]
	case "scoreScale":
		cl, _ := w.get("class", o.Str("class"))
		return co[cl.Str("school")]
	case "result":
		li, _ := w.get("lineItem", o.Str("lineItem"))
		return co[li.Str("school")] && v.caseStudent(o.Str("student"))
	case "assessmentLineItem":
		cl, _ := w.get("class", o.Str("class"))
		return o.Str("class") == "" || co[cl.Str("school")]
	case "assessmentResult":
		return v.caseStudent(o.Str("student"))
	}
	panic("oracle: no caseload rule for entity " + entity)
}

// ---------------------------------------------------------------------------------
// What each GET route returns, as the OneRoster 1.2 documents define it.

type azParent struct {
	param, entity string
	cond          func(w *azWorld, id string, pv map[string]string) bool
}

type azRoute struct {
	entity  string
	parents []azParent
	// rel says whether an object of entity belongs to the route's answer.
	rel func(w *azWorld, o records.Object, pv map[string]string) bool
}

func azType(entity, typ string) func(w *azWorld, id string, _ map[string]string) bool {
	return func(w *azWorld, id string, _ map[string]string) bool {
		o, _ := w.get(entity, id)
		return o.Str("type") == typ
	}
}

func azIsStudent(w *azWorld, id string, _ map[string]string) bool { return w.hasRole(id, "student") }
func azIsTeacher(w *azWorld, id string, _ map[string]string) bool {
	return w.hasRole(id, "teacher", "aide")
}

// azFixed makes a route relation out of a condition on the object itself.
func azFixed(c func(w *azWorld, id string, pv map[string]string) bool) func(*azWorld, records.Object, map[string]string) bool {
	return func(w *azWorld, o records.Object, pv map[string]string) bool { return c(w, o.ID(), pv) }
}

func azField(field, param string) func(*azWorld, records.Object, map[string]string) bool {
	return func(_ *azWorld, o records.Object, pv map[string]string) bool { return o.Str(field) == pv[param] }
}

func azClassOf(w *azWorld, lineItem string) string {
	li, _ := w.get("lineItem", lineItem)
	return li.Str("class")
}

var (
	azPSchool    = azParent{"schoolSourcedId", "org", azType("org", "school")}
	azPClass     = azParent{"classSourcedId", "class", nil}
	azPClassInSc = azParent{"classSourcedId", "class", func(w *azWorld, id string, pv map[string]string) bool {
		c, _ := w.get("class", id)
		return c.Str("school") == pv["schoolSourcedId"]
	}}
	azStudentsOfClass = func(w *azWorld, o records.Object, pv map[string]string) bool {
		return w.hasRole(o.ID(), "student") && w.enrolled(o.ID(), pv["classSourcedId"], "", "student")
	}
	azTeachersOfClass = func(w *azWorld, o records.Object, pv map[string]string) bool {
		return w.enrolled(o.ID(), pv["classSourcedId"], "", "teacher")
	}
	azClassesOf = func(param string) func(*azWorld, records.Object, map[string]string) bool {
		return func(w *azWorld, o records.Object, pv map[string]string) bool {
			return w.enrolled(pv[param], o.ID(), "")
		}
	}
)

// azRoutes: one entry per OneRoster GET operation. A route of the server without an
// entry here fails the matrix: add its oracle.
var azRoutes = map[string]azRoute{
	"getAllAcademicSessions":         {entity: "academicSession"},
	"getAcademicSession":             {entity: "academicSession"},
	"getAllClasses":                  {entity: "class"},
	"getClass":                       {entity: "class"},
	"getStudentsForClass":            {entity: "user", parents: []azParent{azPClass}, rel: azStudentsOfClass},
	"getTeachersForClass":            {entity: "user", parents: []azParent{azPClass}, rel: azTeachersOfClass},
	"getAllCourses":                  {entity: "course"},
	"getCourse":                      {entity: "course"},
	"getClassesForCourse":            {entity: "class", parents: []azParent{{"courseSourcedId", "course", nil}}, rel: azField("course", "courseSourcedId")},
	"getAllDemographics":             {entity: "demographics"},
	"getDemographics":                {entity: "demographics"},
	"getAllEnrollments":              {entity: "enrollment"},
	"getEnrollment":                  {entity: "enrollment"},
	"getAllGradingPeriods":           {entity: "academicSession", rel: azFixed(azType("academicSession", "gradingPeriod"))},
	"getGradingPeriod":               {entity: "academicSession", rel: azFixed(azType("academicSession", "gradingPeriod"))},
	"getAllOrgs":                     {entity: "org"},
	"getOrg":                         {entity: "org"},
	"getAllSchools":                  {entity: "org", rel: azFixed(azType("org", "school"))},
	"getSchool":                      {entity: "org", rel: azFixed(azType("org", "school"))},
	"getClassesForSchool":            {entity: "class", parents: []azParent{azPSchool}, rel: azField("school", "schoolSourcedId")},
	"getEnrollmentsForClassInSchool": {entity: "enrollment", parents: []azParent{azPSchool, azPClassInSc}, rel: azField("class", "classSourcedId")},
	"getStudentsForClassInSchool":    {entity: "user", parents: []azParent{azPSchool, azPClassInSc}, rel: azStudentsOfClass},
	"getTeachersForClassInSchool":    {entity: "user", parents: []azParent{azPSchool, azPClassInSc}, rel: azTeachersOfClass},
	"getCoursesForSchool":            {entity: "course", parents: []azParent{azPSchool}, rel: azField("org", "schoolSourcedId")},
	"getEnrollmentsForSchool":        {entity: "enrollment", parents: []azParent{azPSchool}, rel: azField("school", "schoolSourcedId")},
	"getStudentsForSchool": {entity: "user", parents: []azParent{azPSchool}, rel: func(w *azWorld, o records.Object, pv map[string]string) bool {
		return w.roleAt(o.ID(), pv["schoolSourcedId"], "student")
	}},
	"getTeachersForSchool": {entity: "user", parents: []azParent{azPSchool}, rel: func(w *azWorld, o records.Object, pv map[string]string) bool {
		return w.roleAt(o.ID(), pv["schoolSourcedId"], "teacher", "aide")
	}},
	"getTermsForSchool": {entity: "academicSession", parents: []azParent{azPSchool}, rel: func(w *azWorld, o records.Object, pv map[string]string) bool {
		if o.Str("type") != "term" {
			return false
		}
		for _, c := range w.objs["class"] {
			if c.Str("school") == pv["schoolSourcedId"] && slices.Contains(azList(c, "terms"), o.ID()) {
				return true
			}
		}
		return false
	}},
	"getAllStudents":       {entity: "user", rel: azFixed(azIsStudent)},
	"getStudent":           {entity: "user", rel: azFixed(azIsStudent)},
	"getClassesForStudent": {entity: "class", parents: []azParent{{"studentSourcedId", "user", azIsStudent}}, rel: azClassesOf("studentSourcedId")},
	"getAllTeachers":       {entity: "user", rel: azFixed(azIsTeacher)},
	"getTeacher":           {entity: "user", rel: azFixed(azIsTeacher)},
	"getClassesForTeacher": {entity: "class", parents: []azParent{{"teacherSourcedId", "user", azIsTeacher}}, rel: azClassesOf("teacherSourcedId")},
	"getAllTerms":          {entity: "academicSession", rel: azFixed(azType("academicSession", "term"))},
	"getTerm":              {entity: "academicSession", rel: azFixed(azType("academicSession", "term"))},
	"getClassesForTerm": {entity: "class", parents: []azParent{{"termSourcedId", "academicSession", azType("academicSession", "term")}},
		rel: func(_ *azWorld, o records.Object, pv map[string]string) bool {
			return slices.Contains(azList(o, "terms"), pv["termSourcedId"])
		}},
	"getGradingPeriodsForTerm": {entity: "academicSession", parents: []azParent{{"termSourcedId", "academicSession", azType("academicSession", "term")}},
		rel: func(_ *azWorld, o records.Object, pv map[string]string) bool {
			return o.Str("type") == "gradingPeriod" && o.Str("parent") == pv["termSourcedId"]
		}},
	"getAllUsers":               {entity: "user"},
	"getUser":                   {entity: "user"},
	"getClassesForUser":         {entity: "class", parents: []azParent{{"userSourcedId", "user", nil}}, rel: azClassesOf("userSourcedId")},
	"getAllAssessmentLineItems": {entity: "assessmentLineItem"},
	"getAssessmentLineItem":     {entity: "assessmentLineItem"},
	"getAllAssessmentResults":   {entity: "assessmentResult"},
	"getAssessmentResult":       {entity: "assessmentResult"},
	"getAllCategories":          {entity: "category"},
	"getCategory":               {entity: "category"},
	"getCategoriesForClass": {entity: "category", parents: []azParent{azPClass}, rel: func(w *azWorld, o records.Object, pv map[string]string) bool {
		for _, li := range w.objs["lineItem"] {
			if li.Str("class") == pv["classSourcedId"] && li.Str("category") == o.ID() {
				return true
			}
		}
		return false
	}},
	"getLineItemsForClass": {entity: "lineItem", parents: []azParent{azPClass}, rel: azField("class", "classSourcedId")},
	"getResultsForLineItemForClass": {entity: "result", rel: azField("lineItem", "lineItemSourcedId"),
		parents: []azParent{azPClass, {"lineItemSourcedId", "lineItem", func(w *azWorld, id string, pv map[string]string) bool {
			return azClassOf(w, id) == pv["classSourcedId"]
		}}}},
	"getResultsForClass": {entity: "result", parents: []azParent{azPClass}, rel: func(w *azWorld, o records.Object, pv map[string]string) bool {
		return azClassOf(w, o.Str("lineItem")) == pv["classSourcedId"]
	}},
	"getScoreScalesForClass": {entity: "scoreScale", parents: []azParent{azPClass}, rel: azField("class", "classSourcedId")},
	"getResultsForStudentForClass": {entity: "result", parents: []azParent{azPClass, {"studentSourcedId", "user", azIsStudent}},
		rel: func(w *azWorld, o records.Object, pv map[string]string) bool {
			return o.Str("student") == pv["studentSourcedId"] && azClassOf(w, o.Str("lineItem")) == pv["classSourcedId"]
		}},
	"getAllLineItems": {entity: "lineItem"},
	"getLineItem":     {entity: "lineItem"},
	"getAllResults":   {entity: "result"},
	"getResult":       {entity: "result"},
	"getScoreScalesForSchool": {entity: "scoreScale", parents: []azParent{azPSchool}, rel: func(w *azWorld, o records.Object, pv map[string]string) bool {
		c, _ := w.get("class", o.Str("class"))
		return c.Str("school") == pv["schoolSourcedId"]
	}},
	"getAllScoreScales": {entity: "scoreScale"},
	"getScoreScale":     {entity: "scoreScale"},
}

// azParamEntity says which entity's ids fill a path parameter.
var azParamEntity = map[string]string{
	"classSourcedId": "class", "schoolSourcedId": "org", "courseSourcedId": "course", "studentSourcedId": "user",
	"teacherSourcedId": "user", "userSourcedId": "user", "termSourcedId": "academicSession", "lineItemSourcedId": "lineItem",
}

const azGhost = "ghost-7c1d" // an id that exists nowhere

// azExpect is the oracle's answer for one request.
type azExpect struct {
	status int
	ids    []string // the rows of a 200
	failed string   // the path parameter whose object is missing or out of scope (404)
}

func (v *azView) expect(r azRoute, single bool, pv map[string]string) azExpect {
	if v.denied {
		return azExpect{status: 401}
	}
	if !v.readable(r.entity) {
		return azExpect{status: 403}
	}
	for _, p := range r.parents {
		id := pv[p.param]
		if _, ok := v.w.get(p.entity, id); !ok || !v.readable(p.entity) || !v.visible(p.entity, id) || p.cond != nil && !p.cond(v.w, id, pv) {
			return azExpect{status: 404, failed: p.param}
		}
	}
	in := func(id string) bool {
		o, ok := v.w.get(r.entity, id)
		return ok && v.visible(r.entity, id) && (r.rel == nil || r.rel(v.w, o, pv))
	}
	if single {
		if !in(pv["sourcedId"]) {
			return azExpect{status: 404, failed: "sourcedId"}
		}
		return azExpect{status: 200, ids: []string{pv["sourcedId"]}}
	}
	out := []string{}
	for _, id := range v.w.ids(r.entity) {
		if in(id) {
			out = append(out, id)
		}
	}
	return azExpect{status: 200, ids: out}
}

// ---------------------------------------------------------------------------------
// The matrix.

var azParamRE = regexp.MustCompile(`\{(\w+)\}`)

// azCases fills a route's path parameters with every combination of ids, related
// and unrelated alike, plus an id that exists nowhere.
func azCases(w *azWorld, pattern string, r azRoute) []map[string]string {
	params := azParamRE.FindAllStringSubmatch(pattern, -1)
	cases := []map[string]string{{}}
	for _, m := range params {
		name := m[1]
		entity := azParamEntity[name]
		if name == "sourcedId" {
			entity = r.entity
		}
		candidates := w.ids(entity)
		if name == "studentSourcedId" && len(params) > 1 {
			// class x student: every student, and a teacher, keep the product small.
			candidates = []string{testdistrict.TeacherA}
			for _, id := range w.ids("user") {
				if w.hasRole(id, "student") {
					candidates = append(candidates, id)
				}
			}
		}
		candidates = append(candidates, azGhost)
		var next []map[string]string
		for _, c := range cases {
			for _, id := range candidates {
				n := map[string]string{name: id}
				for k, v := range c {
					n[k] = v
				}
				next = append(next, n)
			}
		}
		cases = next
	}
	return cases
}

func azFill(pattern string, pv map[string]string) string {
	return azParamRE.ReplaceAllStringFunc(pattern, func(m string) string { return url.PathEscape(pv[m[1:len(m)-1]]) })
}

// azTally counts what the matrix saw.
type azTally struct {
	cases, leaks, denials atomic.Int64
	known, skipped        atomic.Int64 // leaks reported elsewhere; requests to features this server lacks
}

// azTokens returns a token per principal (clients registered on the harness).
func azTokens(h *azHarness) map[string]string {
	out := map[string]string{}
	for _, p := range azPrincipals {
		if p.user == "" {
			out[p.name] = h.client(p.scopes, p.orgs...)
		} else {
			out[p.name] = h.user(p.user)
		}
	}
	return out
}

func TestAuthorizationMatrix(t *testing.T) { azOnBothEngines(t, testAuthorizationMatrix) }

func testAuthorizationMatrix(t *testing.T) {
	w := newAZWorld()
	type run struct {
		name       string
		day        time.Time
		principals []azPrincipal
	}
	// On the reference day the eligible student is 18; on the eve, a minor.
	eve := testdistrict.Today.AddDate(0, 0, -1)
	runs := []run{
		{"on the eligible student's 18th birthday", testdistrict.Today, azPrincipals},
		{"on the eve of the 18th birthday", eve, []azPrincipal{azPrincipals[11], azPrincipals[13], azPrincipals[16]}},
	}
	var tally azTally
	t.Run("every GET route answers every principal with exactly the rows of the access table", func(t *testing.T) {
		for _, rn := range runs {
			h := newAZHarness(t, azOptions{extra: true})
			h.setNow(rn.day)
			tokens := azTokens(h)
			today := rn.day.Format(time.DateOnly)
			for _, p := range rn.principals {
				t.Run(rn.name+", "+p.name+" sees what the table allows and nothing else", func(t *testing.T) {
					t.Parallel()
					azRunPrincipal(t, h, w, newAZView(w, p, today), p, tokens[p.name], &tally)
				})
			}
		}
	})
	t.Logf("authorization matrix: %d cases over %d principals; %d leaks (more than the table allows), %d denials (less than it allows); "+
		"%d known leaks in routes reported to their owners; %d requests to features this server lacks (503)",
		tally.cases.Load(), len(azPrincipals), tally.leaks.Load(), tally.denials.Load(), tally.known.Load(), tally.skipped.Load())
	if n := tally.leaks.Load(); n != 0 {
		t.Errorf("got %d leaks, want 0", n)
	}
}

// azInFlight is how many requests of one principal are in flight at once: enough to
// overlap one request's wait for its durable audit event with another's work.
const azInFlight = 2

func azRunPrincipal(t *testing.T, h *azHarness, w *azWorld, v *azView, p azPrincipal, tok string, tally *azTally) {
	var mu sync.Mutex
	ghosts := map[string]response{}
	ghost := func(path string) response {
		mu.Lock()
		r, ok := ghosts[path]
		mu.Unlock()
		if !ok {
			r = h.get(path, tok)
			mu.Lock()
			ghosts[path] = r
			mu.Unlock()
		}
		return r
	}
	type job struct {
		rt     httpapi.RouteInfo
		r      azRoute
		pv     map[string]string
		single bool
	}
	var jobs []job
	for _, rt := range h.server.Routes() {
		if rt.Method != "GET" || rt.Public {
			continue
		}
		if !strings.HasPrefix(rt.Pattern, httpapi.RosteringBase) && !strings.HasPrefix(rt.Pattern, httpapi.GradebookBase) {
			azOwnRoute(t, h, v, p, tok, rt, tally)
			continue
		}
		r, known := azRoutes[rt.Op]
		if !known {
			t.Errorf("route %s %s (%s) has no oracle in authz_test.go: add one", rt.Method, rt.Pattern, rt.Op)
			continue
		}
		for _, pv := range azCases(w, rt.Pattern, r) {
			jobs = append(jobs, job{rt, r, pv, strings.HasSuffix(rt.Pattern, "/{sourcedId}")})
		}
	}
	ch := make(chan job)
	var wg sync.WaitGroup
	for range azInFlight {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range ch {
				azCheck(t, h, v, p, tok, j.rt, j.r, j.pv, j.single, ghost, tally)
			}
		}()
	}
	for _, j := range jobs {
		ch <- j
	}
	close(ch)
	wg.Wait()
}

// azDecode returns the objects of a OneRoster response (t.Errorf, never Fatal: it runs
// on worker goroutines).
func azDecode(t *testing.T, r response, key string, single bool) ([]map[string]any, bool) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Errorf("body is not JSON: %v: %s", err, azClip(r.body))
		return nil, false
	}
	var out []map[string]any
	if single {
		var o map[string]any
		if err := json.Unmarshal(m[key], &o); err != nil || o == nil {
			t.Errorf("body has no %q object: %s", key, azClip(r.body))
			return nil, false
		}
		return append(out, o), true
	}
	if err := json.Unmarshal(m[key], &out); err != nil || out == nil {
		t.Errorf("body has no %q list: %s", key, azClip(r.body))
		return nil, false
	}
	return out, true
}

// azCheck makes one request of the matrix and compares it with the oracle.
func azCheck(t *testing.T, h *azHarness, v *azView, p azPrincipal, tok string, rt httpapi.RouteInfo, r azRoute, pv map[string]string,
	single bool, ghost func(string) response, tally *azTally) {
	leak := func(format string, args ...any) {
		tally.leaks.Add(1)
		t.Errorf("LEAK: "+p.name+": "+format, args...)
	}
	deny := func(format string, args ...any) {
		tally.denials.Add(1)
		t.Errorf(p.name+": "+format, args...)
	}
	entity, _ := records.EntityNamed(r.entity)
	path := azFill(rt.Pattern, pv)
	want := v.expect(r, single, pv)
	got := h.get(path, tok)
	tally.cases.Add(1)
	if got.status != want.status {
		if got.status == 200 {
			leak("GET %s: got status 200 (%s), want %d", path, azClip(got.body), want.status)
		} else {
			deny("GET %s: got status %d (%s), want %d", path, got.status, azClip(got.body), want.status)
		}
		return
	}
	switch want.status {
	case 401:
		if !strings.HasPrefix(got.header.Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("%s: GET %s: got WWW-Authenticate %q, want a Bearer challenge", p.name, path, got.header.Get("WWW-Authenticate"))
		}
	case 404:
		// Out of scope answers exactly as missing: the same body, apart from the id.
		gpv := map[string]string{}
		for k, val := range pv {
			gpv[k] = val
		}
		gpv[want.failed] = azGhost
		g := ghost(azFill(rt.Pattern, gpv))
		norm := func(b []byte, id string) string { return strings.ReplaceAll(string(b), id, "{id}") }
		if g.status != 404 || norm(got.body, pv[want.failed]) != norm(g.body, azGhost) || got.header.Get("Content-Type") != g.header.Get("Content-Type") {
			leak("GET %s: the 404 differs from one for an id that does not exist:\n got %s\nwant %s (%d)", path, got.body, g.body, g.status)
		}
	case 200:
		key := entity.Collection
		if single {
			key = entity.Single
		}
		objs, ok := azDecode(t, got, key, single)
		if !ok {
			return
		}
		var gotIDs []string
		for _, o := range objs {
			id, _ := o["sourcedId"].(string)
			gotIDs = append(gotIDs, id)
			for f := range o {
				if v.hidden(r.entity, f) {
					leak("GET %s: object %s carries hidden field %s", path, id, f)
				}
			}
		}
		sort.Strings(gotIDs)
		for _, id := range gotIDs {
			if !slices.Contains(want.ids, id) {
				leak("GET %s: got %s, which the table does not allow (want %v)", path, id, want.ids)
			}
		}
		for _, id := range want.ids {
			if !slices.Contains(gotIDs, id) {
				deny("GET %s: %s is missing (got %v, want %v)", path, id, gotIDs, want.ids)
			}
		}
		if single {
			return
		}
		if tc := got.header.Get("X-Total-Count"); tc != strconv.Itoa(len(want.ids)) {
			leak("GET %s: got X-Total-Count %s, want %d", path, tc, len(want.ids))
		}
		if len(want.ids) > 1 && len(pv) == 0 {
			// Past the first page the total is a COUNT in SQL: it too counts only visible rows.
			page := h.get(path+"?limit=1&offset=1", tok)
			tally.cases.Add(1)
			if tc := page.header.Get("X-Total-Count"); page.status != 200 || tc != strconv.Itoa(len(want.ids)) {
				leak("GET %s?limit=1&offset=1: got status %d, X-Total-Count %s, want 200 and %d", path, page.status, tc, len(want.ids))
			} else if objs, ok := azDecode(t, page, key, false); ok && (len(objs) != 1 || objs[0]["sourcedId"] != want.ids[1]) {
				leak("GET %s?limit=1&offset=1: got %v, want only %s", path, objs, want.ids[1])
			}
		}
	}
}

// azKnownLeaks are leaks the matrix found in routes outside this file's author's
// remit, reported to their owners and not yet fixed: "principal pattern" -> the bug.
// They are counted and logged, not failed; any other leak fails the matrix. Remove an
// entry once its route is fixed (the matrix logs when one stops leaking).
var azKnownLeaks = map[string]string{}

// azOwnRoute checks a non-OneRoster GET route (registrar's /v1 API) generically: with
// a student id in every path parameter, a principal that may not see the student gets
// 401, 403 or 404, never data. A route whose feature this server lacks (503, before
// any record is read) is counted as skipped.
func azOwnRoute(t *testing.T, h *azHarness, v *azView, p azPrincipal, tok string, rt httpapi.RouteInfo, tally *azTally) {
	params := azParamRE.FindAllStringSubmatch(rt.Pattern, -1)
	known, isKnown := azKnownLeaks[p.name+" "+rt.Pattern]
	leaked := false
	check := func(path string, got response, mayRead bool) {
		tally.cases.Add(1)
		switch {
		case got.status == 503:
			tally.skipped.Add(1)
		case got.status >= 500:
			t.Errorf("%s: GET %s: got status %d", p.name, path, got.status)
		case v.denied && got.status != 401 || !mayRead && got.status < 400:
			leaked = true
			if isKnown {
				tally.known.Add(1)
				t.Logf("KNOWN LEAK (reported, not fixed here): %s: GET %s: got status %d: %s", p.name, path, got.status, known)
				return
			}
			tally.leaks.Add(1)
			t.Errorf("LEAK: %s: GET %s: got status %d, want 401, 403 or 404", p.name, path, got.status)
		}
	}
	if len(params) == 0 {
		check(rt.Pattern, h.get(rt.Pattern, tok), true)
		return
	}
	students := []string{azGhost}
	for _, id := range v.w.ids("user") {
		if v.w.hasRole(id, "student") {
			students = append(students, id)
		}
	}
	for _, id := range students {
		pv := map[string]string{}
		for _, m := range params {
			pv[m[1]] = id
		}
		path := azFill(rt.Pattern, pv)
		check(path, h.get(path, tok), v.visible("user", id))
	}
	if isKnown && !leaked {
		t.Logf("%s on %s no longer leaks: remove it from azKnownLeaks", p.name, rt.Pattern)
	}
}

func azClip(b []byte) string {
	if len(b) > 300 {
		return string(b[:300]) + "..."
	}
	return string(b)
}

// ---------------------------------------------------------------------------------
// The oracle itself, checked against the table of the issue on a few known answers,
// so a mistake in it cannot hide a leak behind an equal mistake in the policy.

func TestOracleAgreesWithTheAccessTable(t *testing.T) {
	t.Parallel()
	w := newAZWorld()
	day := testdistrict.Today.Format(time.DateOnly)
	eve := testdistrict.Today.AddDate(0, 0, -1).Format(time.DateOnly)
	students := func(v *azView) []string {
		var out []string
		for _, id := range w.ids("user") {
			if w.hasRole(id, "student") && v.visible("user", id) {
				out = append(out, id)
			}
		}
		return out
	}
	byName := map[string]azPrincipal{}
	for _, p := range azPrincipals {
		byName[p.name] = p
	}
	const (
		minor, eligible, s3, sb, sc = testdistrict.Minor, testdistrict.Eligible, testdistrict.Student3, testdistrict.StudentB, testdistrict.StudentC
	)
	tests := []struct {
		who, day string
		want     []string
	}{
		{"an installation-wide client", day, []string{sb, sc, minor, eligible, s3}},
		{"a district client", day, []string{sb, minor, eligible, s3}},
		{"a school A client", day, []string{minor, eligible, s3}},
		{"the district administrator", day, []string{sb, minor, eligible, s3}},
		{"the principal of school A", day, []string{minor, eligible, s3}},
		{"the counselor of school A", day, []string{minor, eligible, s3}},
		{"teacher A", day, []string{minor, eligible, s3}}, // not StudentB, who left the class
		{"teacher A2", day, []string{minor}},
		{"teacher B", day, []string{sb}},
		{"the guardian of the minor", day, []string{minor}},
		{"the guardian of the eligible student", day, nil},
		{"the guardian of the eligible student", eve, []string{eligible}},
		{"the minor student", day, []string{minor}},
		{"the eligible student", day, []string{eligible}},
		{"a disabled teacher", day, nil},
		// Minor and StudentB are in the caseload; StudentB is of school B, not the counselor's.
		{"a counselor of school A with a caseload", day, []string{minor}},
		{"the guardian who records the eligible student as a dependent", day, []string{eligible}},
		{"the guardian who records the eligible student as a dependent", eve, []string{eligible}},
	}
	for _, tc := range tests {
		t.Run(tc.who+" on "+tc.day+" sees the students the table names", func(t *testing.T) {
			got := students(newAZView(w, byName[tc.who], tc.day))
			sort.Strings(tc.want)
			if !slices.Equal(got, tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

// ---------------------------------------------------------------------------------
// IDOR attempts.

const (
	azR = httpapi.RosteringBase
	azG = httpapi.GradebookBase
)

// azSame reports whether two error responses are the same apart from the ids echoed.
func azSame(a response, aID string, b response, bID string) bool {
	na := strings.ReplaceAll(string(a.body), aID, "{id}")
	nb := strings.ReplaceAll(string(b.body), bID, "{id}")
	return a.status == b.status && na == nb && a.header.Get("Content-Type") == b.header.Get("Content-Type")
}

func TestIDORAttemptsAnswerAsIfTheRecordDidNotExist(t *testing.T) {
	azOnBothEngines(t, testIDORAttemptsAnswerAsIfTheRecordDidNotExist)
}

func testIDORAttemptsAnswerAsIfTheRecordDidNotExist(t *testing.T) {
	h := newAZHarness(t, azOptions{extra: true})
	teacherA := h.user(testdistrict.TeacherA)
	principalA := h.user(testdistrict.PrincipalA)
	guardian := h.user(testdistrict.Guardian)
	tests := []struct {
		name        string
		token       string
		path, ghost string // the attempt, and the same request naming an id that exists nowhere
		id          string // the id the attempt names
	}{
		{"a teacher guessing another school's student id", teacherA, azR + "/students/" + testdistrict.StudentB, azR + "/students/" + azGhost, testdistrict.StudentB},
		{"a teacher guessing the other district's student id", teacherA, azR + "/users/" + testdistrict.StudentC, azR + "/users/" + azGhost, testdistrict.StudentC},
		{"a teacher reading a student who left the class", teacherA, azR + "/users/" + testdistrict.StudentB, azR + "/users/" + azGhost, testdistrict.StudentB},
		{"a teacher reading a result of a student who left the class", teacherA, azG + "/results/" + azResultLeft, azG + "/results/" + azGhost, azResultLeft},
		{"a teacher reading the enrollment that ended", teacherA, azR + "/enrollments/" + azEndedEnrollment, azR + "/enrollments/" + azGhost, azEndedEnrollment},
		{"a teacher nesting another school's class under their own school", teacherA,
			azR + "/schools/" + testdistrict.SchoolA + "/classes/" + testdistrict.ClassB + "/students", azR + "/schools/" + testdistrict.SchoolA + "/classes/" + azGhost + "/students", testdistrict.ClassB},
		{"a principal nesting another school's class under their own school", principalA,
			azR + "/schools/" + testdistrict.SchoolA + "/classes/" + testdistrict.ClassB + "/students", azR + "/schools/" + testdistrict.SchoolA + "/classes/" + azGhost + "/students", testdistrict.ClassB},
		{"a teacher listing the students of a colleague's class", teacherA, azR + "/classes/" + testdistrict.ClassSciA + "/students", azR + "/classes/" + azGhost + "/students", testdistrict.ClassSciA},
		{"a teacher listing the students of a class in another school", teacherA, azR + "/classes/" + testdistrict.ClassB + "/students", azR + "/classes/" + azGhost + "/students", testdistrict.ClassB},
		{"a teacher reading another school's student's results through their own class", teacherA,
			azG + "/classes/" + testdistrict.ClassMathA + "/students/" + testdistrict.StudentB + "/results", azG + "/classes/" + testdistrict.ClassMathA + "/students/" + azGhost + "/results", testdistrict.StudentB},
		{"a teacher reading the other district's student's results through their own class", teacherA,
			azG + "/classes/" + testdistrict.ClassMathA + "/students/" + testdistrict.StudentC + "/results", azG + "/classes/" + testdistrict.ClassMathA + "/students/" + azGhost + "/results", testdistrict.StudentC},
		{"a guardian reading a classmate of their child", guardian, azR + "/users/" + testdistrict.Student3, azR + "/users/" + azGhost, testdistrict.Student3},
		{"a guardian reading a classmate's demographics", guardian, azR + "/demographics/" + testdistrict.Eligible, azR + "/demographics/" + azGhost, testdistrict.Eligible},
		{"a guardian reading a classmate's result", guardian, azG + "/results/" + testdistrict.ResultEliA, azG + "/results/" + azGhost, testdistrict.ResultEliA},
		{"a guardian listing the classes of a classmate", guardian, azR + "/students/" + testdistrict.Student3 + "/classes", azR + "/students/" + azGhost + "/classes", testdistrict.Student3},
	}
	for _, tc := range tests {
		t.Run(tc.name+" gets the 404 of a missing record", func(t *testing.T) {
			got, want := h.do("GET", tc.path, tc.token, ""), h.do("GET", tc.ghost, tc.token, "")
			if got.status != 404 {
				t.Fatalf("GET %s: got status %d (%s), want 404", tc.path, got.status, got.body)
			}
			if !azSame(got, tc.id, want, azGhost) {
				t.Errorf("GET %s: got %s, want the body of a missing id: %s", tc.path, got.body, want.body)
			}
		})
	}
}

func TestFieldPolicyHidesFieldsAsIfTheyDidNotExist(t *testing.T) {
	azOnBothEngines(t, testFieldPolicyHidesFieldsAsIfTheyDidNotExist)
}

func testFieldPolicyHidesFieldsAsIfTheyDidNotExist(t *testing.T) {
	h := newAZHarness(t, azOptions{})
	guardian, teacherA, principalA := h.user(testdistrict.Guardian), h.user(testdistrict.TeacherA), h.user(testdistrict.PrincipalA)
	minorID := "SID-9-" + testdistrict.Canary // the minor is the ninth user of the test district
	tests := []struct {
		name    string
		token   string
		attempt string // a query naming a hidden field
		field   string
		control string // the same query naming a field that does not exist
	}{
		{"a guardian filtering users on identifier", guardian, "filter=" + url.QueryEscape("identifier='"+minorID+"'"), "identifier", "filter=" + url.QueryEscape("nosuchfield='"+minorID+"'")},
		{"a guardian filtering users on phone", guardian, "filter=" + url.QueryEscape("phone='x'"), "phone", "filter=" + url.QueryEscape("nosuchfield='x'")},
		{"a guardian sorting users on identifier", guardian, "sort=identifier", "identifier", "sort=nosuchfield"},
		{"a guardian selecting identifier", guardian, "fields=sourcedId,identifier", "identifier", "fields=sourcedId,nosuchfield"},
		{"a teacher selecting userIds", teacherA, "fields=sourcedId,userIds", "userIds", "fields=sourcedId,nosuchfield"},
		{"a teacher filtering on userIds", teacherA, "filter=" + url.QueryEscape("userIds='x'"), "userIds", "filter=" + url.QueryEscape("nosuchfield='x'")},
	}
	for _, tc := range tests {
		t.Run(tc.name+" is refused as a field that does not exist", func(t *testing.T) {
			got := h.do("GET", azR+"/users?"+tc.attempt, tc.token, "")
			want := h.do("GET", azR+"/users?"+tc.control, tc.token, "")
			if got.status != 400 {
				t.Fatalf("got status %d (%s), want 400", got.status, got.body)
			}
			if !azSame(got, tc.field, want, "nosuchfield") {
				t.Errorf("got %s, want the answer for an unknown field: %s", got.body, want.body)
			}
		})
	}
	t.Run("a guardian reading their child sees no hidden field", func(t *testing.T) {
		m := h.do("GET", azR+"/users/"+testdistrict.Minor, guardian, "").json(t)["user"].(map[string]any)
		for _, f := range []string{"identifier", "phone", "sms", "userIds"} {
			if _, ok := m[f]; ok {
				t.Errorf("got field %s, want it hidden", f)
			}
		}
		if m["email"] == nil || m["givenName"] != "Mia" {
			t.Errorf("got %v, want the child's name and email", m)
		}
	})
	t.Run("a teacher filters on the identifier of their own students only", func(t *testing.T) {
		q := azR + "/users?filter=" + url.QueryEscape("identifier='"+minorID+"'")
		r := h.do("GET", q, teacherA, "")
		if got := ids(t, r, "users"); !slices.Equal(got, []string{testdistrict.Minor}) {
			t.Errorf("got %v, want [%s]", got, testdistrict.Minor)
		}
		qb := azR + "/users?filter=" + url.QueryEscape("identifier='SID-12-"+testdistrict.Canary+"'") // StudentB
		if r := h.do("GET", qb, teacherA, ""); len(ids(t, r, "users")) != 0 || r.header.Get("X-Total-Count") != "0" {
			t.Errorf("filtering on another school's student's identifier: got %s (total %s), want nothing", r.body, r.header.Get("X-Total-Count"))
		}
	})
	t.Run("a principal may select userIds", func(t *testing.T) {
		r := h.do("GET", azR+"/users/"+testdistrict.Minor+"?fields=sourcedId,userIds", principalA, "")
		if r.status != 200 || !strings.Contains(string(r.body), "userIds") {
			t.Errorf("got %d %s, want the userIds", r.status, r.body)
		}
	})
}

func TestFiltersAndPagingNeverReachRowsOutOfScope(t *testing.T) {
	azOnBothEngines(t, testFiltersAndPagingNeverReachRowsOutOfScope)
}

func testFiltersAndPagingNeverReachRowsOutOfScope(t *testing.T) {
	h := newAZHarness(t, azOptions{extra: true})
	teacherA := h.user(testdistrict.TeacherA)
	schoolA := h.client(azReadScopes, testdistrict.SchoolA)
	tests := []struct {
		name      string
		token     string
		path      string
		wantIDs   []string
		wantTotal string
	}{
		{"a teacher filtering on another school's student id", teacherA, azR + "/users?filter=" + url.QueryEscape("sourcedId='"+testdistrict.StudentB+"'"), nil, "0"},
		{"a teacher filtering on a name in another school", teacherA, azR + "/users?filter=" + url.QueryEscape("givenName~'Blair'"), nil, "0"},
		{"a teacher filtering enrollments on the class a student left", teacherA, azR + "/enrollments?filter=" + url.QueryEscape("user.sourcedId='"+testdistrict.StudentB+"'"), nil, "0"},
		{"a teacher asking for a billion rows", teacherA, azR + "/students?limit=1000000000", []string{testdistrict.Eligible, testdistrict.Minor, testdistrict.Student3}, "3"},
		{"a teacher paging past the end", teacherA, azR + "/students?limit=2&offset=1000000", nil, "3"},
		{"a school client asking for a billion users", schoolA, azR + "/students?limit=1000000000", []string{testdistrict.Eligible, testdistrict.Minor, testdistrict.Student3}, "3"},
		{"a school client filtering on the other district's org", schoolA, azR + "/users?filter=" + url.QueryEscape("roles.org.sourcedId='"+testdistrict.SchoolC+"'"), nil, "0"},
	}
	for _, tc := range tests {
		t.Run(tc.name+" gets only visible rows and their count", func(t *testing.T) {
			r := h.do("GET", tc.path, tc.token, "")
			if r.status != 200 {
				t.Fatalf("got status %d (%s), want 200", r.status, r.body)
			}
			key := "users"
			if strings.Contains(tc.path, "/enrollments") {
				key = "enrollments"
			}
			got := ids(t, r, key)
			sort.Strings(got)
			sort.Strings(tc.wantIDs)
			if !slices.Equal(got, tc.wantIDs) {
				t.Errorf("got %v, want %v", got, tc.wantIDs)
			}
			if got := r.header.Get("X-Total-Count"); got != tc.wantTotal {
				t.Errorf("got X-Total-Count %s, want %s", got, tc.wantTotal)
			}
		})
	}
	t.Run("absurd limits are refused with a 400, never a 5xx", func(t *testing.T) {
		for _, q := range []string{"limit=-1", "limit=0", "limit=99999999999999999999999999", "offset=-5", "limit=1e9"} {
			if r := h.do("GET", azR+"/students?"+q, teacherA, ""); r.status != 400 {
				t.Errorf("GET /students?%s: got status %d, want 400", q, r.status)
			}
		}
	})
}

// azSnapshot reads objects straight from the store, unscoped, to show nothing changed.
func azSnapshot(t *testing.T, st *sqlstore.Store, e *records.Entity, ids ...string) string {
	t.Helper()
	var b strings.Builder
	for _, id := range ids {
		o, err := st.Get(context.Background(), sqlstore.Query{Entity: e}, id)
		if records.IsNotFound(err) {
			fmt.Fprintf(&b, "%s: absent\n", id)
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		j, _ := json.Marshal(o)
		fmt.Fprintf(&b, "%s: %s\n", id, j)
	}
	return b.String()
}

func TestGradebookWritesOutOfScopeChangeNothing(t *testing.T) {
	azOnBothEngines(t, testGradebookWritesOutOfScopeChangeNothing)
}

func testGradebookWritesOutOfScopeChangeNothing(t *testing.T) {
	h := newAZHarness(t, azOptions{extra: true})
	teacherA := h.user(testdistrict.TeacherA)
	teacherA2 := h.user(testdistrict.TeacherA2)
	// A school A client that may write results but read no roster: its references
	// must still be checked within its orgs, or a write would tell it which ids exist.
	writer := h.client([]string{authz.GradebookCreatePut}, testdistrict.SchoolA)
	li := func(id, class, school string) string {
		return fmt.Sprintf(`{"lineItem":{"sourcedId":%q,"title":"Moved","assignDate":"2026-09-01T08:00:00Z","dueDate":"2026-09-08T08:00:00Z",`+
			`"class":{"sourcedId":%q},"school":{"sourcedId":%q},"category":{"sourcedId":%q}}}`, id, class, school, testdistrict.Category)
	}
	res := func(id, lineItem, student string) string {
		return fmt.Sprintf(`{"result":{"sourcedId":%q,"lineItem":{"sourcedId":%q},"student":{"sourcedId":%q},"scoreStatus":"fully graded","score":1,"scoreDate":"2026-09-15"}}`,
			id, lineItem, student)
	}
	tests := []struct {
		name          string
		token         string
		method, path  string
		body          string
		ghostPath     string // the same request for an object that does not exist
		ghostBody     string
		id, ghostID   string
		entity        *records.Entity
		unchanged     []string
		wantStatus    int
		wantGhostLike bool
	}{
		{name: "PUT of a result in another teacher's class", token: teacherA, method: "PUT", path: azG + "/results/" + testdistrict.ResultB,
			body: res(testdistrict.ResultB, testdistrict.LineItemB, testdistrict.StudentB), ghostPath: azG + "/results/" + azGhost,
			ghostBody: res(azGhost, testdistrict.LineItemB, testdistrict.StudentB), id: testdistrict.ResultB, ghostID: azGhost,
			entity: records.Result, unchanged: []string{testdistrict.ResultB}, wantStatus: 404},
		{name: "PUT of a result of a student who left the class", token: teacherA, method: "PUT", path: azG + "/results/" + azResultLeft,
			body: res(azResultLeft, testdistrict.LineItemA, testdistrict.StudentB), ghostPath: azG + "/results/" + azGhost,
			ghostBody: res(azGhost, testdistrict.LineItemA, testdistrict.StudentB), id: azResultLeft, ghostID: azGhost,
			entity: records.Result, unchanged: []string{azResultLeft}, wantStatus: 404},
		{name: "PUT of a result in a colleague's class of the same school", token: teacherA2, method: "PUT", path: azG + "/results/" + testdistrict.ResultMinA,
			body: res(testdistrict.ResultMinA, testdistrict.LineItemA, testdistrict.Minor), ghostPath: azG + "/results/" + azGhost,
			ghostBody: res(azGhost, testdistrict.LineItemA, testdistrict.Minor), id: testdistrict.ResultMinA, ghostID: azGhost,
			entity: records.Result, unchanged: []string{testdistrict.ResultMinA}, wantStatus: 404},
		{name: "DELETE of another class's line item", token: teacherA, method: "DELETE", path: azG + "/lineItems/" + testdistrict.LineItemB,
			ghostPath: azG + "/lineItems/" + azGhost, id: testdistrict.LineItemB, ghostID: azGhost,
			entity: records.LineItem, unchanged: []string{testdistrict.LineItemB}, wantStatus: 404},
		{name: "DELETE of another class's result", token: teacherA, method: "DELETE", path: azG + "/results/" + testdistrict.ResultB,
			ghostPath: azG + "/results/" + azGhost, id: testdistrict.ResultB, ghostID: azGhost,
			entity: records.Result, unchanged: []string{testdistrict.ResultB}, wantStatus: 404},
		{name: "PUT of another class's line item", token: teacherA, method: "PUT", path: azG + "/lineItems/" + testdistrict.LineItemB,
			body: li(testdistrict.LineItemB, testdistrict.ClassMathA, testdistrict.SchoolA), ghostPath: azG + "/lineItems/" + azGhost, id: testdistrict.LineItemB, ghostID: azGhost,
			entity: records.LineItem, unchanged: []string{testdistrict.LineItemB}, wantStatus: 404},
		// Moving an own line item into another class names a class the teacher cannot
		// see: the answer is the one for a class that does not exist.
		{name: "PUT moving an own line item into another teacher's class", token: teacherA, method: "PUT", path: azG + "/lineItems/" + testdistrict.LineItemA,
			body: li(testdistrict.LineItemA, testdistrict.ClassB, testdistrict.SchoolB), ghostPath: azG + "/lineItems/" + testdistrict.LineItemA,
			ghostBody: li(testdistrict.LineItemA, azGhost, testdistrict.SchoolB), id: testdistrict.ClassB, ghostID: azGhost,
			entity: records.LineItem, unchanged: []string{testdistrict.LineItemA}, wantGhostLike: true},
		{name: "PUT creating a result for a student in another teacher's class", token: teacherA, method: "PUT", path: azG + "/results/new-result-1",
			body: res("new-result-1", testdistrict.LineItemA, testdistrict.StudentB), ghostPath: azG + "/results/new-result-1",
			ghostBody: res("new-result-1", testdistrict.LineItemA, azGhost), id: testdistrict.StudentB, ghostID: azGhost,
			entity: records.Result, unchanged: []string{"new-result-1"}, wantGhostLike: true},
		{name: "PUT creating a result on another class's line item", token: teacherA, method: "PUT", path: azG + "/results/new-result-2",
			body: res("new-result-2", testdistrict.LineItemB, testdistrict.Minor), ghostPath: azG + "/results/new-result-2",
			ghostBody: res("new-result-2", azGhost, testdistrict.Minor), id: testdistrict.LineItemB, ghostID: azGhost,
			entity: records.Result, unchanged: []string{"new-result-2"}, wantGhostLike: true},
		{name: "PUT by a write-only school client of a result for another district's student", token: writer, method: "PUT", path: azG + "/results/new-result-3",
			body: res("new-result-3", testdistrict.LineItemA, testdistrict.StudentC), ghostPath: azG + "/results/new-result-3",
			ghostBody: res("new-result-3", testdistrict.LineItemA, azGhost), id: testdistrict.StudentC, ghostID: azGhost,
			entity: records.Result, unchanged: []string{"new-result-3"}, wantGhostLike: true},
		{name: "POST of line items into another teacher's class", token: teacherA, method: "POST", path: azG + "/classes/" + testdistrict.ClassB + "/lineItems",
			body:      `{"lineItems":[{"sourcedId":"x","title":"t","assignDate":"2026-09-01T08:00:00Z","dueDate":"2026-09-08T08:00:00Z","school":{"sourcedId":"org-school-b"},"category":{"sourcedId":"cat-homework"}}]}`,
			ghostPath: azG + "/classes/" + azGhost + "/lineItems",
			ghostBody: `{"lineItems":[{"sourcedId":"x","title":"t","assignDate":"2026-09-01T08:00:00Z","dueDate":"2026-09-08T08:00:00Z","school":{"sourcedId":"org-school-b"},"category":{"sourcedId":"cat-homework"}}]}`,
			id:        testdistrict.ClassB, ghostID: azGhost, entity: records.LineItem, unchanged: []string{testdistrict.LineItemB}, wantStatus: 404},
		{name: "POST of results on another class's line item", token: teacherA, method: "POST", path: azG + "/lineItems/" + testdistrict.LineItemB + "/results",
			body:      `{"results":[{"sourcedId":"r","student":{"sourcedId":"user-student-b"},"scoreStatus":"fully graded","score":1,"scoreDate":"2026-09-15"}]}`,
			ghostPath: azG + "/lineItems/" + azGhost + "/results",
			ghostBody: `{"results":[{"sourcedId":"r","student":{"sourcedId":"user-student-b"},"scoreStatus":"fully graded","score":1,"scoreDate":"2026-09-15"}]}`,
			id:        testdistrict.LineItemB, ghostID: azGhost, entity: records.Result, unchanged: []string{testdistrict.ResultB}, wantStatus: 404},
	}
	for _, tc := range tests {
		t.Run(tc.name+" answers as for a missing record and changes nothing", func(t *testing.T) {
			before := azSnapshot(t, h.store, tc.entity, tc.unchanged...)
			liBefore := azSnapshot(t, h.store, records.LineItem, h.lineItemIDs(t)...)
			got := h.do(tc.method, tc.path, tc.token, tc.body)
			// A PUT to a missing id would create it: the missing-record answer of a PUT
			// is the 404 that a GET of a missing id gets.
			gm := tc.method
			if tc.wantStatus == 404 && gm == "PUT" {
				gm, tc.ghostBody = "GET", ""
			}
			want := h.do(gm, tc.ghostPath, tc.token, tc.ghostBody)
			if tc.wantStatus != 0 && got.status != tc.wantStatus {
				t.Errorf("%s %s: got status %d (%s), want %d", tc.method, tc.path, got.status, got.body, tc.wantStatus)
			}
			if got.status < 400 {
				t.Fatalf("%s %s: got status %d, want a refusal", tc.method, tc.path, got.status)
			}
			if !azSame(got, tc.id, want, tc.ghostID) {
				t.Errorf("%s %s: got %d %s, want the answer for a missing one: %d %s", tc.method, tc.path, got.status, got.body, want.status, want.body)
			}
			if after := azSnapshot(t, h.store, tc.entity, tc.unchanged...); after != before {
				t.Errorf("the store changed:\n got %s\nwant %s", after, before)
			}
			if after := azSnapshot(t, h.store, records.LineItem, h.lineItemIDs(t)...); after != liBefore {
				t.Errorf("line items changed:\n got %s\nwant %s", after, liBefore)
			}
		})
	}
	t.Run("a teacher still writes a result in their own class", func(t *testing.T) {
		r := h.do("PUT", azG+"/results/own-result", teacherA, res("own-result", testdistrict.LineItemA, testdistrict.Student3))
		if r.status != 201 {
			t.Errorf("got status %d (%s), want 201", r.status, r.body)
		}
	})
}

// lineItemIDs lists every line item in the store, unscoped.
func (h *azHarness) lineItemIDs(t *testing.T) []string {
	t.Helper()
	res, err := h.store.List(context.Background(), sqlstore.Query{Entity: records.LineItem, Page: azPage(1000)})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, o := range res.Objects {
		out = append(out, o.ID())
	}
	return out
}

// ---------------------------------------------------------------------------------
// Eligibility: the birthday and the district's time zone.

func TestGuardianAccessEndsOnTheEighteenthBirthday(t *testing.T) {
	t.Parallel()
	h := newAZHarness(t, azOptions{})
	g := h.user(testdistrict.Guardian2)
	paths := []string{
		azR + "/users/" + testdistrict.Eligible,
		azR + "/students/" + testdistrict.Eligible,
		azR + "/demographics/" + testdistrict.Eligible,
		azG + "/results/" + testdistrict.ResultEliA,
		azR + "/students/" + testdistrict.Eligible + "/classes",
	}
	tests := []struct {
		name string
		now  time.Time
		want int
	}{
		{"the day before the birthday, at the last second", time.Date(2026, 9, 14, 23, 59, 59, 0, time.UTC), 200},
		{"the day before the birthday", testdistrict.Today.AddDate(0, 0, -1), 200},
		{"on the birthday, at midnight", time.Date(2026, 9, 15, 0, 0, 0, 0, time.UTC), 404},
		{"on the birthday", testdistrict.Today, 404},
		{"a year later", testdistrict.Today.AddDate(1, 0, 0), 404},
	}
	for _, tc := range tests {
		t.Run(tc.name+", the guardian gets "+strconv.Itoa(tc.want), func(t *testing.T) {
			h.setNow(tc.now)
			for _, p := range paths {
				if got := h.do("GET", p, g, ""); got.status != tc.want {
					t.Errorf("GET %s: got status %d, want %d", p, got.status, tc.want)
				}
			}
			r := h.do("GET", azR+"/students", g, "")
			want := []string{testdistrict.Eligible}
			if tc.want == 404 {
				want = nil
			}
			if got := ids(t, r, "users"); !slices.Equal(got, want) {
				t.Errorf("GET /students: got %v, want %v", got, want)
			}
			if r := h.do("GET", azR+"/users/"+testdistrict.Guardian2, g, ""); r.status != 200 {
				t.Errorf("GET own user record: got status %d, want 200", r.status)
			}
		})
	}

	// 34 CFR 99.31(a)(8): with the district's record that the student is the parent's
	// dependent, the same parent keeps access on the birthday and after it.
	admin := h.user(testdistrict.Admin)
	flag := "/v1/students/" + testdistrict.Eligible + "/dependents/" + testdistrict.Guardian2
	h.setNow(testdistrict.Today.AddDate(0, 0, -1))
	if r := h.do("PUT", flag, admin, ""); r.status != 201 {
		t.Fatalf("record the dependency: got %d: %s", r.status, r.body)
	}
	for _, tc := range tests {
		t.Run(tc.name+", with the dependency flag recorded, the guardian gets 200", func(t *testing.T) {
			h.setNow(tc.now)
			for _, p := range paths {
				if got := h.do("GET", p, g, ""); got.status != 200 {
					t.Errorf("GET %s: got status %d, want 200", p, got.status)
				}
			}
			if got := ids(t, h.do("GET", azR+"/students", g, ""), "users"); !slices.Equal(got, []string{testdistrict.Eligible}) {
				t.Errorf("GET /students: got %v, want %v", got, []string{testdistrict.Eligible})
			}
		})
	}
	t.Run("on the birthday, once the flag is removed, the guardian gets 404", func(t *testing.T) {
		h.setNow(testdistrict.Today)
		if r := h.do("DELETE", flag, admin, ""); r.status != 204 {
			t.Fatalf("remove the dependency: got %d: %s", r.status, r.body)
		}
		for _, p := range paths {
			if got := h.do("GET", p, g, ""); got.status != 404 {
				t.Errorf("GET %s: got status %d, want 404", p, got.status)
			}
		}
	})
}

func TestEligibilityIsDecidedInTheDistrictsTimeZone(t *testing.T) {
	t.Parallel()
	la, err := time.LoadLocation("America/Los_Angeles")
	if err != nil {
		t.Skipf("no time zone database: %v", err)
	}
	// 23:30 on the eve in Los Angeles is already the birthday in UTC.
	eve := time.Date(2026, 9, 14, 23, 30, 0, 0, la)
	tests := []struct {
		name string
		loc  *time.Location
		want int
	}{
		{"a district in Los Angeles, still the eve there", la, 200},
		{"a district in UTC, already the birthday there", time.UTC, 404},
	}
	for _, tc := range tests {
		t.Run(tc.name+", the guardian gets "+strconv.Itoa(tc.want), func(t *testing.T) {
			t.Parallel()
			h := newAZHarness(t, azOptions{loc: tc.loc})
			h.setNow(eve)
			if got := h.do("GET", azR+"/users/"+testdistrict.Eligible, h.user(testdistrict.Guardian2), ""); got.status != tc.want {
				t.Errorf("got status %d, want %d", got.status, tc.want)
			}
		})
	}
}

// ---------------------------------------------------------------------------------
// A disabled account and unknown users.

func TestPeopleWithoutStandingAreUnauthenticated(t *testing.T) {
	t.Parallel()
	h := newAZHarness(t, azOptions{})
	tests := []struct{ name, user string }{
		{"a disabled teacher", testdistrict.Disabled},
		{"a user id that is not on the roster", "user-who-left"},
	}
	for _, tc := range tests {
		t.Run(tc.name+" gets 401 with a Bearer challenge", func(t *testing.T) {
			for _, p := range []string{azR + "/students", "/v1/me", azR + "/users/" + tc.user} {
				r := h.do("GET", p, h.user(tc.user), "")
				if r.status != 401 || !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer") {
					t.Errorf("GET %s: got %d, WWW-Authenticate %q, want 401 and a Bearer challenge", p, r.status, r.header.Get("WWW-Authenticate"))
				}
			}
		})
	}
}

func azPage(n int) query.Page { return query.Page{Limit: n} }
