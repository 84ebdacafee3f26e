package tenantplugin

import (
	"strings"
	"testing"
)

// FuzzNamesRelation: the raw-fragment test is exactly "contains one of the
// relation words, ASCII case-insensitively" (PostgreSQL keywords are ASCII),
// so it can never miss a fragment a reference implementation flags.
func FuzzNamesRelation(f *testing.F) {
	for _, s := range []string{"id IN (SELECT tag_id FROM links)", "name = ?", "EXISTS (TABLE links)",
		"'links'::regclass", "nextval('s')", "SeLeCt", "sel\x00ect", "ſelect", "selec", "\xffTABLE"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		lower := make([]byte, len(s))
		for i := 0; i < len(s); i++ {
			c := s[i]
			if c >= 'A' && c <= 'Z' {
				c += 'a' - 'A'
			}
			lower[i] = c
		}
		want := false
		for _, w := range relationWords {
			if strings.Contains(string(lower), w) {
				want = true
			}
		}
		if got := namesRelation(s); got != want {
			t.Fatalf("namesRelation(%q) = %v, want %v", s, got, want)
		}
	})
}
