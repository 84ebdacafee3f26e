package tenanthttp

import (
	"errors"
	"strings"
	"testing"

	"github.com/gorm-tenancy/tenantplugin"
)

func TestNormalizeHost(t *testing.T) {
	good := map[string]string{
		"thor.polls.localhost":      "thor.polls.localhost",
		"Thor.Polls.Localhost:8080": "thor.polls.localhost",
		"polls.thor.com.":           "polls.thor.com",
		"[::1]:8080":                "[::1]",
		"127.0.0.1:80":              "127.0.0.1",
		"a_b.example":               "a_b.example",
		"127.0.0.1:65535":           "127.0.0.1",
		"[::1]":                     "[::1]",
		"[0:0::1]:1":                "[::1]",
		"x1.example":                "x1.example",
		"example.1a":                "example.1a",
	}
	for in, want := range good {
		got, err := NormalizeHost(in)
		if err != nil || got != want {
			t.Errorf("NormalizeHost(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"", ":8080", "a..b", "-a.com", "a-.com", "bad_host!", "a b", "x:port", "[::1", "[nope]:1",
		strings.Repeat("a", 64) + ".com", `x";drop.polls.localhost`, "thor.polls.localhost:99999999",
		// ports outside 1-65535, non-ASCII letters that fold to ASCII (the
		// Kelvin sign), numeric hosts that are not IPv4 literals
		"thor.polls.localhost:0", "thor.polls.localhost:65536", "thor.polls.localhost:", "\u212aelvin.example",
		"thor.polls.locals\u017ft", "1.2.3", "999.1.1.1", "12345", "[::1]:0", "[::1]:70000", "[fe80::1%eth0]"} {
		if _, err := NormalizeHost(in); !errors.Is(err, tenantplugin.ErrMalformedHost) {
			t.Errorf("NormalizeHost(%q) = %v, want tenantplugin.ErrMalformedHost", in, err)
		}
	}
}

// FuzzHost: NormalizeHost never panics, its output is stable (normalizing
// twice changes nothing) and holds only host characters.
func FuzzHost(f *testing.F) {
	for _, s := range []string{"thor.polls.localhost:8080", "[::1]:80", "a..b", "\x00", "é.com", "x:"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		h, err := NormalizeHost(s)
		if err != nil {
			if !errors.Is(err, tenantplugin.ErrMalformedHost) {
				t.Fatalf("NormalizeHost(%q) error %v is not tenantplugin.ErrMalformedHost", s, err)
			}
			return
		}
		if h2, err := NormalizeHost(h); err != nil || h2 != h {
			t.Fatalf("NormalizeHost not stable on %q: %q -> %q, %v", s, h, h2, err)
		}
		for _, c := range h {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' || c == ':' || c == '[' || c == ']') {
				t.Fatalf("NormalizeHost(%q) = %q holds %q", s, h, c)
			}
		}
	})
}
