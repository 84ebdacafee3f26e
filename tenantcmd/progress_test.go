package tenantcmd

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gorm-tenancy/tenantplugin"
)

// fakeClock advances by step on every reading.
type fakeClock struct {
	t    time.Time
	step time.Duration
}

func (c *fakeClock) now() time.Time { c.t = c.t.Add(c.step); return c.t }

// events simulates a run over total tenants, one every 10 ms; states picks
// each one's state.
func events(total int, state func(i int) tenantplugin.State) []tenantplugin.Progress {
	var out []tenantplugin.Progress
	for i := 1; i <= total; i++ {
		ev := tenantplugin.Progress{Tenant: fmt.Sprintf("t%d", i), State: state(i), Done: i, Total: total,
			Elapsed: time.Duration(i) * 10 * time.Millisecond}
		if ev.State == tenantplugin.StateFailed {
			ev.Err = &tenantplugin.TenantError{Tenant: ev.Tenant, Op: "migrate", Err: errors.New("boom")}
		}
		out = append(out, ev)
	}
	return out
}

func TestProgressPlainLines(t *testing.T) {
	var buf bytes.Buffer
	clock := &fakeClock{step: time.Millisecond}
	p := newProgressLine(&buf, false, "migrate", clock.now)
	for _, ev := range events(40, func(i int) tenantplugin.State {
		if i == 7 {
			return tenantplugin.StateFailed
		}
		return tenantplugin.StateMigrated
	}) {
		p.update(ev)
	}
	p.finish()
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if len(lines) != 22 { // the first tenant, every 5% (2 tenants), the failure
		t.Fatalf("%d lines:\n%s", len(lines), buf.String())
	}
	if lines[0] != "migrate: 1/40 tenants, 0 failed, 100 tenants/s, about 390ms left" {
		t.Errorf("first line %q", lines[0])
	}
	if want := `migrate: tenantplugin: tenant "t7": migrate: boom`; lines[4] != want {
		t.Errorf("failure line %q, want %q", lines[4], want)
	}
	if want := "migrate: 40/40 tenants, 1 failed, 100 tenants/s in 400ms"; lines[21] != want {
		t.Errorf("last line %q, want %q", lines[21], want)
	}
	if strings.Contains(buf.String(), "\r") || strings.Contains(buf.String(), "\033") {
		t.Error("control characters in plain output")
	}
}

func TestProgressNothingToDoPrintsNothing(t *testing.T) {
	for _, live := range []bool{false, true} {
		var buf bytes.Buffer
		clock := &fakeClock{step: time.Second}
		p := newProgressLine(&buf, live, "migrate", clock.now)
		for _, ev := range events(500, func(int) tenantplugin.State { return tenantplugin.StateUpToDate }) {
			p.update(ev)
		}
		p.finish()
		if buf.Len() != 0 {
			t.Errorf("live=%v: %q", live, buf.String())
		}
	}
}

func TestProgressLiveLine(t *testing.T) {
	var buf bytes.Buffer
	clock := &fakeClock{step: 10 * time.Millisecond} // one reading per event
	p := newProgressLine(&buf, true, "migrate", clock.now)
	evs := events(100, func(i int) tenantplugin.State {
		if i == 50 {
			return tenantplugin.StateFailed
		}
		return tenantplugin.StateMigrated
	})
	for _, ev := range evs {
		p.update(ev)
	}
	p.finish()
	out := buf.String()
	// Redrawn every 100 ms of the fake clock (10 events), plus the last one.
	if n := strings.Count(out, "\r\033[K"); n < 10 || n > 13 {
		t.Errorf("%d redraws:\n%q", n, out)
	}
	if !strings.Contains(out, "\r\033[Kmigrate: 10/100 tenants, 0 failed, 100 tenants/s, about 900ms left") {
		t.Errorf("no line at 10/100 with its rate and remaining time:\n%q", out)
	}
	if !strings.Contains(out, "\r\033[K"+`migrate: tenantplugin: tenant "t50": migrate: boom`+"\n") {
		t.Errorf("the failure is not on a line of its own:\n%q", out)
	}
	if !strings.HasSuffix(out, "\r\033[Kmigrate: 100/100 tenants, 1 failed, 100 tenants/s in 1s\n") {
		t.Errorf("last line:\n%q", out)
	}
}

func TestIsTerminal(t *testing.T) {
	if isTerminal(&bytes.Buffer{}) {
		t.Error("a buffer is no terminal")
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	if isTerminal(w) {
		t.Error("a pipe is no terminal")
	}
	devNull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer devNull.Close()
	// A character device counts as a terminal (the standard library's
	// test, no ioctl); TERM=dumb turns the live line off.
	if !isTerminal(devNull) {
		t.Error("a character device")
	}
	t.Setenv("TERM", "dumb")
	if isTerminal(devNull) {
		t.Error("TERM=dumb")
	}
}

func TestFormatBytes(t *testing.T) {
	for n, want := range map[int64]string{
		0: "0 bytes", 8192: "8192 bytes", 10240: "10 kB", 1 << 20: "1024 kB", 10 << 20: "10 MB",
		3 << 30: "3072 MB", 20 << 30: "20 GB", 20 << 40: "20 TB",
	} {
		if got := formatBytes(n); got != want {
			t.Errorf("formatBytes(%d) = %q, want %q", n, got, want)
		}
	}
}
