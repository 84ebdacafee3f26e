package tenantcmd

import (
	"errors"
	"testing"
)

func TestParseFlags(t *testing.T) {
	pos, flags, err := parseFlags([]string{"thor", "--domain", "a.com", "--domain=b.com", "--all"}, map[string]bool{"domain": true, "all": false})
	if err != nil {
		t.Fatal(err)
	}
	if len(pos) != 1 || pos[0] != "thor" || len(flags["domain"]) != 2 || flags["domain"][1] != "b.com" {
		t.Fatalf("got %v %v", pos, flags)
	}
	if _, ok := flags["all"]; !ok {
		t.Fatal("--all not seen")
	}
	if _, _, err := parseFlags([]string{"--nope"}, map[string]bool{}); !errors.Is(err, ErrUsage) {
		t.Fatalf("unknown flag: %v", err)
	}
	if _, _, err := parseFlags([]string{"--domain"}, map[string]bool{"domain": true}); !errors.Is(err, ErrUsage) {
		t.Fatalf("missing value: %v", err)
	}
}
