package tenantcmd

import (
	"context"
	"errors"
	"strings"
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

// TestTenantsAloneShowsUsage: "tenants" with no subcommand is a usage error
// that lists the tenants subcommands, not "unknown command"; so are a
// subcommand "migrate" does not have and a rollback without --to. None of
// them reaches the Migrator (nil here).
func TestTenantsAloneShowsUsage(t *testing.T) {
	c := &Commands{}
	err := c.Run(context.Background(), []string{"tenants"})
	if !errors.Is(err, ErrUsage) {
		t.Fatalf("tenants: %v, want ErrUsage", err)
	}
	msg := err.Error()
	if strings.Contains(msg, "unknown command") || !strings.Contains(msg, "tenants needs a subcommand") ||
		!strings.Contains(msg, "tenants list") || !strings.Contains(msg, "tenants create NAME") {
		t.Fatalf("tenants: %q", msg)
	}
	for _, args := range [][]string{{"migrate", "sideways"}, {"migrate", "rollback"}, {"migrate", "rollback", "--tenant", "thor"},
		{"migrate", "rollback", "--to", "a", "--to", "b"}, {"migrate", "rollback", "--to", ""}, {"migrate", "rollback", "--all", "--to", "a"}} {
		if err := c.Run(context.Background(), args); !errors.Is(err, ErrUsage) {
			t.Errorf("%q: %v, want ErrUsage", args, err)
		}
	}
}
