package records

import (
	"strings"
	"testing"
)

// ValidText is the one rule for text a request names something by; ValidID adds
// a sourcedId's own rules to it.
func TestValidTextAndValidID(t *testing.T) {
	for _, tt := range []struct {
		s            string
		text, id     bool
		mentionsText string
	}{
		{"user-1", true, true, ""},
		{"Zoë Ångström", true, true, ""},
		{"", true, false, ""},
		{" user-1", true, false, ""},
		{"a\x00b", false, false, "control"},
		{"a\x01b", false, false, "control"},
		{"a\x7fb", false, false, "control"},
		{"tab\t", false, false, "control"},
		{"caf\xe9", false, false, "UTF-8"},
		{"\xff\xfe", false, false, "UTF-8"},
		{strings.Repeat("x", MaxID+1), true, false, ""},
	} {
		err := ValidText(tt.s)
		if (err == nil) != tt.text {
			t.Errorf("ValidText(%q) = %v, want valid %v", tt.s, err, tt.text)
		}
		if err != nil && !strings.Contains(err.Error(), tt.mentionsText) {
			t.Errorf("ValidText(%q) = %v, want it to say %q", tt.s, err, tt.mentionsText)
		}
		if err := ValidID(tt.s); (err == nil) != tt.id {
			t.Errorf("ValidID(%q) = %v, want valid %v", tt.s, err, tt.id)
		}
	}
}

// BenchmarkValidText is the check every route makes of each path value
// (docs/architecture.md, session 8): one sourcedId of the generated district's form.
func BenchmarkValidText(b *testing.B) {
	id := "5d7233f3-b0b4-4847-969d-e427ee0db8ea"
	for b.Loop() {
		if ValidText(id) != nil {
			b.Fatal("a valid id refused")
		}
	}
}
