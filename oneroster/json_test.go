package oneroster

import (
	"encoding/json"
	"testing"

	"registrar/records"
)

// TestAppendHrefIsTheURLAsJSON: the href appended in place is base + path + escaped
// id as a JSON string, for a base that needs escaping in JSON and ids with reserved,
// non-ASCII and invalid bytes. encoding/json is the reference; it would also escape
// '<', '>' and '&', which jsonenc leaves as they are, so the bases here have none.
func TestAppendHrefIsTheURLAsJSON(t *testing.T) {
	for _, c := range []struct{ base, id, escaped string }{
		{"https://sis.example.org", "stu-001", "stu-001"},
		{"http://127.0.0.1:8080", "a b/c?d#e%f", "a%20b%2Fc%3Fd%23e%25f"},
		{`http://x"y\z`, "Zoë~_.-", "Zo%C3%AB~_.-"},
		{"", "\xff\"", "%FF%22"},
	} {
		want, err := json.Marshal(c.base + "/ims/oneroster/rostering/v1p2/users/" + c.escaped)
		if err != nil {
			t.Fatal(err)
		}
		got := appendHref([]byte("x"), c.base, records.User, c.id)
		if string(got) != "x"+string(want) {
			t.Errorf("appendHref(%q, %q) = %s, want x%s", c.base, c.id, got, want)
		}
	}
}
