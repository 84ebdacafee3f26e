package tenantplugin

import (
	"bytes"
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"
)

// progressLines feeds SlogProgress one run of events with the given states and
// returns the log lines at level and above.
func progressLines(t *testing.T, fn func(Progress), buf *bytes.Buffer, states []State) []string {
	t.Helper()
	buf.Reset()
	for i, st := range states {
		var err error
		if st == StateFailed {
			err = errors.New("boom")
		}
		fn(Progress{Tenant: "t" + string(rune('a'+i%26)), State: st, Err: err, Done: i + 1, Total: len(states),
			Took: time.Millisecond, Elapsed: time.Duration(i+1) * time.Millisecond})
	}
	out := strings.TrimSpace(buf.String())
	if out == "" {
		return nil
	}
	return strings.Split(out, "\n")
}

func repeatState(st State, n int) []State {
	out := make([]State, n)
	for i := range out {
		out[i] = st
	}
	return out
}

// TestSlogProgressQuietWhenUpToDate: a run where every tenant is up to date
// logs one Info line, whatever its size; a run with work logs a line every
// 5%, from the first tenant with work on, and every failure.
func TestSlogProgressQuietWhenUpToDate(t *testing.T) {
	var buf bytes.Buffer
	fn := SlogProgress(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo})))

	for _, n := range []int{1, 7, 1000} {
		lines := progressLines(t, fn, &buf, repeatState(StateUpToDate, n))
		if len(lines) != 1 || !strings.Contains(lines[0], "every tenant up to date") || !strings.Contains(lines[0], "total="+strconv.Itoa(n)) {
			t.Fatalf("%d up-to-date tenants logged %d lines: %q", n, len(lines), lines)
		}
	}

	// 100 tenants, the last 50 migrated: lines at 55, 60, ... 100.
	states := append(repeatState(StateUpToDate, 50), repeatState(StateMigrated, 50)...)
	lines := progressLines(t, fn, &buf, states)
	if len(lines) != 10 || !strings.Contains(lines[0], "done=55 ") || !strings.Contains(lines[9], "done=100 total=100") {
		t.Fatalf("a run with work logged %d lines: %q", len(lines), lines)
	}

	// The state resets between runs: an up-to-date run after a busy one is
	// quiet again.
	lines = progressLines(t, fn, &buf, repeatState(StateUpToDate, 40))
	if len(lines) != 1 {
		t.Fatalf("second run logged %q", lines)
	}

	// A failure is an Error line even among up-to-date tenants, and the run
	// then reports progress.
	states = append(repeatState(StateUpToDate, 3), StateFailed)
	lines = progressLines(t, fn, &buf, states)
	if len(lines) != 2 || !strings.Contains(lines[0], "level=ERROR") || !strings.Contains(lines[0], "err=boom") ||
		!strings.Contains(lines[1], "done=4 total=4") {
		t.Fatalf("failure run logged %q", lines)
	}

	// At Debug, every tenant has its line.
	dbg := SlogProgress(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if lines := progressLines(t, dbg, &buf, repeatState(StateUpToDate, 5)); len(lines) != 6 {
		t.Fatalf("debug run logged %d lines: %q", len(lines), lines)
	}
}
