package jsonenc

import (
	"bytes"
	"encoding/json"
	"testing"
)

// reference is encoding/json's encoding of v with SetEscapeHTML(false).
func reference(t testing.TB, v any) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		t.Fatal(err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
}

var samples = []string{
	"", "plain", `quote " and \ backslash`, "<tag> & amp", "tab\tnew\nline\rret\bback\fform",
	"\x00\x01\x1f\x7f", "é ü 名前 🙂", "\u2028\u2029", "bad \xff\xfe utf8", "trunc \xe2\x82",
}

func TestAppendStringMatchesEncodingJSON(t *testing.T) {
	for _, s := range samples {
		if got, want := AppendString(nil, s), reference(t, s); !bytes.Equal(got, want) {
			t.Errorf("AppendString(%q) = %s, encoding/json writes %s", s, got, want)
		}
	}
	for _, l := range [][]string{{}, {"a"}, samples} {
		if got, want := AppendStrings(nil, l), reference(t, l); !bytes.Equal(got, want) {
			t.Errorf("AppendStrings(%q) = %s, encoding/json writes %s", l, got, want)
		}
	}
}

func FuzzAppendString(f *testing.F) {
	for _, s := range samples {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := AppendString([]byte("x"), s), append([]byte("x"), reference(t, s)...); !bytes.Equal(got, want) {
			t.Errorf("AppendString(%q) = %s, encoding/json writes %s", s, got, want)
		}
	})
}
