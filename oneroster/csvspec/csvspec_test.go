package csvspec

import (
	"bytes"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// golden is the header order of every data file of the 1.2.1 CSV binding,
// written out independently of files.go so that an accidental edit of the
// table shows up here.
var golden = map[string]string{
	"orgs":                         "sourcedId,status,dateLastModified,name,type,identifier,parentSourcedId",
	"academicSessions":             "sourcedId,status,dateLastModified,title,type,startDate,endDate,parentSourcedId,schoolYear",
	"courses":                      "sourcedId,status,dateLastModified,schoolYearSourcedId,title,courseCode,grades,orgSourcedId,subjects,subjectCodes",
	"classes":                      "sourcedId,status,dateLastModified,title,grades,courseSourcedId,classCode,classType,location,schoolSourcedId,termSourcedIds,subjects,subjectCodes,periods",
	"users":                        "sourcedId,status,dateLastModified,enabledUser,username,userIds,givenName,familyName,middleName,identifier,email,sms,phone,agentSourcedIds,grades,password,userMasterIdentifier,preferredGivenName,preferredMiddleName,preferredFamilyName,primaryOrgSourcedId,pronouns",
	"userProfiles":                 "sourcedId,status,dateLastModified,userSourcedId,profileType,vendorId,applicationId,description,credentialType,username,password",
	"roles":                        "sourcedId,status,dateLastModified,userSourcedId,roleType,role,beginDate,endDate,orgSourcedId,userProfileSourcedId",
	"enrollments":                  "sourcedId,status,dateLastModified,classSourcedId,schoolSourcedId,userSourcedId,role,primary,beginDate,endDate",
	"demographics":                 "sourcedId,status,dateLastModified,birthDate,sex,americanIndianOrAlaskaNative,asian,blackOrAfricanAmerican,nativeHawaiianOrOtherPacificIslander,white,demographicRaceTwoOrMoreRaces,hispanicOrLatinoEthnicity,countryOfBirthCode,stateOfBirthAbbreviation,cityOfBirth,publicSchoolResidenceStatus",
	"resources":                    "sourcedId,status,dateLastModified,vendorResourceId,title,roles,importance,vendorId,applicationId",
	"classResources":               "sourcedId,status,dateLastModified,title,classSourcedId,resourceSourcedId",
	"courseResources":              "sourcedId,status,dateLastModified,title,courseSourcedId,resourceSourcedId",
	"userResources":                "sourcedId,status,dateLastModified,userSourcedId,orgSourcedId,classSourcedId,resourceSourcedId",
	"categories":                   "sourcedId,status,dateLastModified,title,weight",
	"scoreScales":                  "sourcedId,status,dateLastModified,title,type,orgSourcedId,courseSourcedId,classSourcedId,scoreScaleValue",
	"lineItems":                    "sourcedId,status,dateLastModified,title,description,assignDate,dueDate,classSourcedId,categorySourcedId,academicSessionSourcedId,resultValueMin,resultValueMax,schoolSourcedId",
	"lineItemLearningObjectiveIds": "sourcedId,status,dateLastModified,lineItemSourcedId,source,learningObjectiveId",
	"lineItemScoreScales":          "sourcedId,status,dateLastModified,title,lineItemSourcedId,scoreScaleSourcedId",
	"results":                      "sourcedId,status,dateLastModified,lineItemSourcedId,studentSourcedId,scoreStatus,score,scoreDate,comment,textScore,classSourcedId,inProgress,incomplete,late,missing",
	"resultLearningObjectiveIds":   "sourcedId,status,dateLastModified,resultSourcedId,source,learningObjectiveId,score,textScore",
	"resultScoreScales":            "sourcedId,status,dateLastModified,title,resultSourcedId,scoreScaleSourcedId",
}

func TestHeadersMatchGolden(t *testing.T) {
	if len(Files) != len(golden) || len(Files) != 21 {
		t.Fatalf("have %d files, golden %d, binding defines 21", len(Files), len(golden))
	}
	for _, f := range Files {
		want, ok := golden[f.Name]
		if !ok {
			t.Errorf("file %s not in golden table", f.Name)
			continue
		}
		if got := strings.Join(f.Header(), ","); got != want {
			t.Errorf("%s header\n got %s\nwant %s", f.FileName, got, want)
		}
		if f.FileName != f.Name+".csv" || f.ManifestKey != "file."+f.Name {
			t.Errorf("%s: FileName %q ManifestKey %q", f.Name, f.FileName, f.ManifestKey)
		}
		if !f.HasLifecycle() {
			t.Errorf("%s lacks sourcedId,status,dateLastModified", f.Name)
		}
	}
}

func TestFilesAreInDependencyOrder(t *testing.T) {
	pos := map[string]int{}
	for i, f := range Files {
		if _, dup := pos[f.Name]; dup {
			t.Fatalf("duplicate file %s", f.Name)
		}
		pos[f.Name] = i
	}
	for i, f := range Files {
		names := map[string]bool{}
		for _, c := range f.Columns {
			if names[c.Name] {
				t.Errorf("%s: duplicate column %s", f.Name, c.Name)
			}
			names[c.Name] = true
			if (c.Type == GUID || c.Type == GUIDList) != (c.Ref != "" || c.Name == ColSourcedID) {
				t.Errorf("%s.%s: type %v with Ref %q", f.Name, c.Name, c.Type, c.Ref)
			}
			if (c.Type == Enum) != (len(c.Enum) > 0 && c.Type != List) {
				t.Errorf("%s.%s: enum/type mismatch", f.Name, c.Name)
			}
			if c.Ref == "" {
				continue
			}
			j, ok := pos[c.Ref]
			if !ok {
				t.Errorf("%s.%s references unknown file %q", f.Name, c.Name, c.Ref)
			} else if j > i {
				t.Errorf("%s.%s references %s, which comes later", f.Name, c.Name, c.Ref)
			}
		}
	}
	if len(manifestOrder) != len(Files) {
		t.Fatalf("manifestOrder has %d names", len(manifestOrder))
	}
	for _, n := range manifestOrder {
		if _, ok := pos[n]; !ok {
			t.Errorf("manifestOrder names unknown %s", n)
		}
	}
}

func TestLookup(t *testing.T) {
	for _, n := range []string{"users", "users.csv"} {
		f, ok := Lookup(n)
		if !ok || f.Name != "users" {
			t.Errorf("Lookup(%q) = %v, %v", n, f.Name, ok)
		}
	}
	if _, ok := Lookup("manifest"); ok {
		t.Error("manifest is not a data file")
	}
	if _, ok := Lookup("Users"); ok {
		t.Error("names are case-sensitive")
	}
	f := MustLookup("lineItems")
	if c, ok := f.Column("academicSessionSourcedId"); !ok || c.Ref != "academicSessions" || !c.Required {
		t.Errorf("lineItems.academicSessionSourcedId = %+v", c)
	}
	if f.Index("nope") != -1 {
		t.Error("Index of unknown column")
	}
}

func TestManifestRoundTrip(t *testing.T) {
	in := Manifest{
		Modes:            map[string]string{"users": ModeBulk, "orgs": ModeBulk, "results": ModeDelta, "roles": ModeAbsent},
		SourceSystemName: "Registrar, synthetic",
		SourceSystemCode: "REG-1",
	}
	var buf bytes.Buffer
	if err := WriteManifest(&buf, in); err != nil {
		t.Fatal(err)
	}
	text := buf.String()
	if !strings.HasPrefix(text, "propertyName,value\r\nmanifest.version,1.0\r\noneroster.version,1.2\r\nfile.academicSessions,absent\r\n") {
		t.Errorf("unexpected manifest start:\n%s", text)
	}
	if !strings.Contains(text, "source.systemName,\"Registrar, synthetic\"\r\n") {
		t.Errorf("system name not quoted:\n%s", text)
	}
	if n := strings.Count(text, "\r\n"); n != 1+2+len(Files)+2 {
		t.Errorf("manifest has %d lines", n)
	}
	out, err := ReadManifest(strings.NewReader("\uFEFF" + text))
	if err != nil {
		t.Fatal(err)
	}
	if out.Version != OneRosterVersion || out.ManifestVersion != ManifestVersion {
		t.Errorf("versions %q %q", out.Version, out.ManifestVersion)
	}
	if out.SourceSystemName != in.SourceSystemName || out.SourceSystemCode != in.SourceSystemCode {
		t.Errorf("source %q %q", out.SourceSystemName, out.SourceSystemCode)
	}
	for _, f := range Files {
		want := in.Mode(f.Name)
		if got := out.Modes[f.Name]; got != want {
			t.Errorf("mode %s = %q, want %q", f.Name, got, want)
		}
	}
	var again bytes.Buffer
	if err := WriteManifest(&again, out); err != nil {
		t.Fatal(err)
	}
	if again.String() != text {
		t.Errorf("second write differs:\n%s\n---\n%s", again.String(), text)
	}
	if out.Mode("users.csv") != ModeBulk || out.Mode("nope") != ModeAbsent {
		t.Error("Mode lookup by file name")
	}
}

func TestManifestErrors(t *testing.T) {
	bad := map[string]string{
		"header":    "name,value\noneroster.version,1.2\n",
		"version":   "propertyName,value\nfile.users,bulk\n",
		"mode":      "propertyName,value\noneroster.version,1.2\nfile.users,full\n",
		"unknown":   "propertyName,value\noneroster.version,1.2\nfile.people,bulk\n",
		"csvname":   "propertyName,value\noneroster.version,1.2\nfile.users.csv,bulk\n",
		"duplicate": "propertyName,value\noneroster.version,1.2\nfile.users,bulk\nfile.users,delta\n",
		"fields":    "propertyName,value\noneroster.version,1.2,x\n",
	}
	for name, text := range bad {
		if _, err := ReadManifest(strings.NewReader(text)); err == nil {
			t.Errorf("%s: ReadManifest accepted %q", name, text)
		}
	}
	m, err := ReadManifest(strings.NewReader("propertyName,value\noneroster.version,1.2\nvendor.note,hi\n"))
	if err != nil || m.Mode("users") != ModeAbsent {
		t.Errorf("unknown non-file property: %v %v", m, err)
	}
	if err := WriteManifest(&bytes.Buffer{}, Manifest{Modes: map[string]string{"users.csv": ModeBulk}}); err == nil {
		t.Error("WriteManifest accepted a file name key")
	}
	if err := WriteManifest(&bytes.Buffer{}, Manifest{Modes: map[string]string{"users": "full"}}); err == nil {
		t.Error("WriteManifest accepted mode full")
	}
}

func TestCheckLifecycle(t *testing.T) {
	cases := []struct {
		mode, status, dlm string
		ok                bool
	}{
		{ModeBulk, "", "", true},
		{ModeBulk, "active", "", false},
		{ModeBulk, "", "2026-01-02T03:04:05Z", false},
		{ModeDelta, "active", "2026-01-02T03:04:05Z", true},
		{ModeDelta, "tobedeleted", "2026-01-02T03:04:05.123Z", true},
		{ModeDelta, "inactive", "2026-01-02T03:04:05Z", false},
		{ModeDelta, "active", "", false},
		{ModeDelta, "active", "2026-01-02T03:04:05+01:00", false},
		{ModeDelta, "active", "2026-01-02", false},
		{ModeAbsent, "", "", false},
	}
	for _, c := range cases {
		if err := CheckLifecycle(c.mode, c.status, c.dlm); (err == nil) != c.ok {
			t.Errorf("CheckLifecycle(%q,%q,%q) = %v", c.mode, c.status, c.dlm, err)
		}
	}
}

func TestValidate(t *testing.T) {
	col := func(file, name string) Column {
		c, ok := MustLookup(file).Column(name)
		if !ok {
			t.Fatalf("no column %s.%s", file, name)
		}
		return c
	}
	cases := []struct {
		c    Column
		v    string
		okay bool
	}{
		{col("orgs", "name"), "", false},
		{col("orgs", "name"), "Cedar Hollow", true},
		{col("orgs", "name"), "two\nlines", false},
		{col("orgs", "type"), "school", true},
		{col("orgs", "type"), "School", false},
		{col("orgs", "type"), "ext:charter", true},
		{col("orgs", "type"), "ext:", false},
		{col("roles", "roleType"), "ext:tertiary", false},
		{col("academicSessions", "startDate"), "2025-08-26", true},
		{col("academicSessions", "startDate"), "2025-8-26", false},
		{col("academicSessions", "schoolYear"), "2026", true},
		{col("academicSessions", "schoolYear"), "26", false},
		{col("users", "enabledUser"), "true", true},
		{col("users", "enabledUser"), "TRUE", false},
		{col("users", "agentSourcedIds"), "a,b", true},
		{col("users", "agentSourcedIds"), "a,,b", false},
		{col("users", "agentSourcedIds"), "", true},
		{col("users", "grades"), "09,10", true},
		{col("results", "score"), "9.5", true},
		{col("results", "score"), "NaN", false},
		{col("results", "scoreStatus"), "fully graded", true},
		{col("results", "scoreStatus"), "fullyGraded", false},
		{col("resources", "roles"), "student,teacher", true},
		{col("resources", "roles"), "student,principal", false},
		{col("orgs", ColDateLastModified), "2026-01-01T00:00:00Z", true},
		{col("orgs", ColSourcedID), "", false},
		{col("orgs", ColSourcedID), " x", false},
		{Column{Name: "n", Type: Int}, "12", true},
		{Column{Name: "n", Type: Int}, "1.5", false},
	}
	for _, c := range cases {
		if err := c.c.Validate(c.v); (err == nil) != c.okay {
			t.Errorf("%s.Validate(%q) = %v", c.c.Name, c.v, err)
		}
	}
}

func TestMatchHeader(t *testing.T) {
	users := MustLookup("users")
	h := users.Header()
	idx, err := MatchHeader(users, append(slices.Clone(h), "metadata.district.house"))
	if err != nil || !reflect.DeepEqual(idx, seq(len(h))) {
		t.Fatalf("exact header: %v %v", idx, err)
	}
	bom := slices.Clone(h)
	bom[0] = "\uFEFF" + bom[0]
	if _, err := MatchHeader(users, bom); err != nil {
		t.Errorf("BOM: %v", err)
	}
	legacy := slices.Concat(h[:17], []string{"resourceSourcedIds"}, h[17:])
	idx, err = MatchHeader(users, legacy)
	if err != nil {
		t.Fatalf("legacy users header: %v", err)
	}
	if idx[17] != 18 || legacy[idx[17]] != "preferredGivenName" {
		t.Errorf("legacy mapping %v", idx)
	}
	li := MustLookup("lineItems")
	lh := li.Header()
	lh[li.Index("academicSessionSourcedId")] = "gradingPeriodSourcedId"
	if _, err := MatchHeader(li, lh); err != nil {
		t.Errorf("legacy lineItems header: %v", err)
	}
	swapped := slices.Clone(h)
	swapped[6], swapped[7] = swapped[7], swapped[6]
	if _, err := MatchHeader(users, swapped); err == nil {
		t.Error("swapped columns accepted")
	}
	if _, err := MatchHeader(users, h[:10]); err == nil {
		t.Error("short header accepted")
	}
	if _, err := MatchHeader(users, append(slices.Clone(h), "favouriteColour")); err == nil {
		t.Error("unknown trailing column accepted")
	}
}

func seq(n int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = i
	}
	return s
}

func TestListHelpers(t *testing.T) {
	if SplitList("") != nil || !reflect.DeepEqual(SplitList("a,b"), []string{"a", "b"}) || JoinList([]string{"a", "b"}) != "a,b" {
		t.Error("list helpers")
	}
	if Type(99).String() != "Type(99)" || GUIDList.String() != "GUIDList" {
		t.Error("Type.String")
	}
}
