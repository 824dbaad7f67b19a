package httpapi_test

import (
	"context"
	"encoding/json"
	"net/url"
	"strings"
	"testing"

	"registrar/authz"
	"registrar/internal/testdistrict"
	"registrar/records"
	"registrar/sqlstore"
)

type feedChange struct {
	Entity    string `json:"entity"`
	SourcedID string `json:"sourcedId"`
	Op        string `json:"op"`
	Time      string `json:"time"`
}

// feed follows GET /v1/changes from the start to its end, page by page.
func feed(t *testing.T, h *harness, token string, limit string) []feedChange {
	t.Helper()
	var all []feedChange
	since := ""
	for pages := 0; ; pages++ {
		if pages > 1000 {
			t.Fatal("the feed does not end")
		}
		r := h.do("GET", "/v1/changes?limit="+limit+"&since="+url.QueryEscape(since), token, "")
		if r.status != 200 {
			t.Fatalf("GET /v1/changes: status %d: %s", r.status, r.body)
		}
		var page struct {
			Changes []feedChange `json:"changes"`
			Next    string       `json:"next"`
			More    bool         `json:"more"`
		}
		if err := json.Unmarshal(r.body, &page); err != nil {
			t.Fatal(err)
		}
		all = append(all, page.Changes...)
		since = page.Next
		if !page.More {
			return all
		}
	}
}

func has(cs []feedChange, entity, id, op string) bool {
	for _, c := range cs {
		if c.Entity == entity && c.SourcedID == id && c.Op == op {
			return true
		}
	}
	return false
}

func TestChangeFeedIsAuthorizedLikeReads(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	// Delete a result of teacher A's class, and an enrollment of school B.
	if err := h.store.Write(ctx, func(ctx context.Context, tx *sqlstore.Tx) error {
		if err := tx.Delete(ctx, records.Result, testdistrict.ResultMinA); err != nil {
			return err
		}
		return tx.Delete(ctx, records.Enrollment, "enr-sb-b")
	}); err != nil {
		t.Fatal(err)
	}
	district := h.client([]string{authz.RosterReadonly, authz.RosterDemographics, authz.GradebookReadonly})
	schoolB := h.client([]string{authz.RosterReadonly, authz.GradebookReadonly}, testdistrict.SchoolB)

	t.Run("a district client sees every change, deletes included, across pages", func(t *testing.T) {
		all := feed(t, h, district, "7")
		if n := len(testdistrict.Objects()); len(all) != n {
			t.Errorf("got %d changes, want %d (every load upsert but the two of deleted rows, and the two deletes)", len(all), n)
		}
		if !has(all, "result", testdistrict.ResultMinA, "delete") || !has(all, "enrollment", "enr-sb-b", "delete") {
			t.Errorf("deletes missing from the district's feed")
		}
		if has(all, "result", testdistrict.ResultMinA, "upsert") {
			t.Errorf("the upsert of a row that no longer exists is listed")
		}
	})
	t.Run("a school B client sees school B's changes and none of school A's", func(t *testing.T) {
		all := feed(t, h, schoolB, "500")
		if !has(all, "user", testdistrict.StudentB, "upsert") || !has(all, "enrollment", "enr-sb-b", "delete") {
			t.Errorf("school B's own changes are missing: %v", all)
		}
		for _, c := range all {
			if c.SourcedID == testdistrict.Minor || c.SourcedID == testdistrict.ResultMinA || c.SourcedID == testdistrict.ClassMathA {
				t.Errorf("school B sees a change to school A's %s %s", c.Entity, c.SourcedID)
			}
		}
	})
	t.Run("a teacher sees the delete of a result in their class; another teacher does not", func(t *testing.T) {
		if !has(feed(t, h, h.user(testdistrict.TeacherA), "500"), "result", testdistrict.ResultMinA, "delete") {
			t.Errorf("teacher A does not see the delete of a result in their class")
		}
		if has(feed(t, h, h.user(testdistrict.TeacherB), "500"), "result", testdistrict.ResultMinA, "delete") {
			t.Errorf("teacher B sees the delete of a result in teacher A's class")
		}
	})
	t.Run("a parent sees their child's changes and not a classmate's", func(t *testing.T) {
		all := feed(t, h, h.user(testdistrict.Guardian), "500")
		if !has(all, "result", testdistrict.ResultMinA, "delete") {
			t.Errorf("the parent does not see the delete of their child's result")
		}
		if has(all, "user", testdistrict.Student3, "upsert") || has(all, "result", testdistrict.ResultEliA, "upsert") {
			t.Errorf("the parent sees a classmate's changes")
		}
	})
	t.Run("the token is opaque and checked; the feed needs a token", func(t *testing.T) {
		if r := h.do("GET", "/v1/changes?since=bm90LWEtdG9rZW4", district, ""); r.status != 400 {
			t.Errorf("a forged token: status %d, want 400", r.status)
		}
		if r := h.do("GET", "/v1/changes?limit=0", district, ""); r.status != 400 {
			t.Errorf("limit=0: status %d, want 400", r.status)
		}
		if r := h.do("GET", "/v1/changes", "", ""); r.status != 401 {
			t.Errorf("no token: status %d, want 401", r.status)
		}
		r := h.do("GET", "/v1/changes?limit=1", district, "")
		next := r.json(t)["next"].(string)
		if strings.Contains(next, "1") && !strings.ContainsAny(next, "=_-abcdefghijklmnopqrstuvwxyz") {
			t.Errorf("the token %q looks like a bare number", next)
		}
	})
}

func TestEventsAreAcceptedFromClientsAndDeadLettersShownToAdmins(t *testing.T) {
	h := newHarness(t)
	sis := h.client([]string{authz.AdminScope})
	reader := h.client([]string{authz.RosterReadonly})
	ev := `{"version":1,"id":"ev-1","op":"delete","entity":"enrollment","sourcedId":"enr-sb-b"}`
	if r := h.do("POST", "/v1/events", sis, `{"events":[`+ev+`]}`); r.status != 202 {
		t.Fatalf("POST /v1/events: status %d: %s", r.status, r.body)
	}
	if r := h.do("POST", "/v1/events", sis, `{"events":[{"version":2,"id":"x","op":"delete","entity":"user","sourcedId":"u"}]}`); r.status != 400 || !strings.Contains(string(r.body), "events[0]: version 2") {
		t.Errorf("a bad envelope: status %d %s, want 400 naming events[0]", r.status, r.body)
	}
	if r := h.do("POST", "/v1/events", h.user(testdistrict.Admin), `{"events":[`+ev+`]}`); r.status != 403 {
		t.Errorf("a person putting events: status %d, want 403", r.status)
	}
	if r := h.do("GET", "/v1/stream/dead-letters", sis, ""); r.status != 200 || !strings.Contains(string(r.body), `"deadLetters":[]`) {
		t.Errorf("dead letters for an admin client: status %d %s", r.status, r.body)
	}
	if r := h.do("GET", "/v1/stream/dead-letters", reader, ""); r.status != 403 {
		t.Errorf("dead letters for a reader: status %d, want 403", r.status)
	}
}
