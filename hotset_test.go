package tenantplugin

import (
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

func hotTexts(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf(`SELECT * FROM "%s%d"."items" WHERE "items"."id" = $1 LIMIT 1`, prefix, i)
	}
	return out
}

// pass runs every text once, in order, and returns how many ran prepared.
func pass(h *hotSet, texts []string) int {
	hot := 0
	for _, q := range texts {
		if h.withMode(q, []any{1})[0] == pgx.QueryExecModeCacheStatement {
			hot++
		}
	}
	return hot
}

// TestHotSetSteadyWorkloadLargerThanTheSet: 1,000 texts round-robin over
// 448 places (pgx's defaults) fill the set and then keep it: no churn, so no
// prepare and deallocate round trips in the steady state.
func TestHotSetSteadyWorkloadLargerThanTheSet(t *testing.T) {
	h := newHotSet(448, pgx.QueryExecModeCacheDescribe)
	a := hotTexts("a", 1000)
	var got []int
	for i := 0; i < 5; i++ {
		got = append(got, pass(h, a))
	}
	t.Logf("prepared per pass: %v", got)
	for i, n := range got {
		if n != 448 {
			t.Fatalf("pass %d: %d prepared, want 448 (%v)", i+1, n, got)
		}
	}
	before := h.evicted.Load()
	for i := 0; i < 20; i++ {
		pass(h, a)
	}
	if churn := h.evicted.Load() - before; churn > 0 {
		t.Fatalf("20 steady passes evicted %d texts, want 0", churn)
	}
}

// TestHotSetAdaptsToAShift: after the workload moves to 1,000 other texts,
// the set holds the new ones within a few passes, and then stays put.
func TestHotSetAdaptsToAShift(t *testing.T) {
	for _, limit := range []int{448, 1024} {
		h := newHotSet(limit, pgx.QueryExecModeCacheDescribe)
		a, b := hotTexts("a", 1000), hotTexts("b", 1000)
		for i := 0; i < 10; i++ {
			pass(h, a)
		}
		want := min(limit, 1000)
		var got []int
		for i := 0; i < 8; i++ {
			got = append(got, pass(h, b))
		}
		t.Logf("limit %d: prepared per pass after the shift: %v", limit, got)
		if got[5] < want*9/10 {
			t.Fatalf("limit %d: sixth pass after the shift ran %d prepared, want >= %d (%v)", limit, got[5], want*9/10, got)
		}
		before := h.evicted.Load()
		for i := 0; i < 10; i++ {
			pass(h, b)
		}
		if churn := h.evicted.Load() - before; churn > int64(want/20) {
			t.Fatalf("limit %d: steady passes after the shift evicted %d", limit, churn)
		}
	}
}

// TestHotSetColdModes: cold statements run in exec mode when every argument
// has a Go basic type, in the typed mode otherwise; no arguments or a
// caller's own mode are left alone.
func TestHotSetColdModes(t *testing.T) {
	h := newHotSet(1, pgx.QueryExecModeCacheDescribe)
	if got := h.withMode("SELECT 'first'", []any{1}); got[0] != pgx.QueryExecModeCacheStatement {
		t.Fatalf("a set with room: %v", got[0])
	}
	q := "SELECT $1"
	if got := h.withMode(q, []any{1, "x", nil, 2.5, true}); got[0] != pgx.QueryExecModeExec {
		t.Fatalf("basic args: %v", got[0])
	}
	if got := h.withMode("SELECT $2", []any{time.Now()}); got[0] != pgx.QueryExecModeCacheDescribe {
		t.Fatalf("time.Time: %v", got[0])
	}
	if got := h.withMode("SELECT $3", []any{[]byte("x")}); got[0] != pgx.QueryExecModeCacheDescribe {
		t.Fatalf("[]byte: %v", got[0])
	}
	if got := h.withMode(q, nil); got != nil {
		t.Fatalf("no args: %v", got)
	}
	if got := h.withMode(q, []any{pgx.QueryExecModeSimpleProtocol, 1}); len(got) != 2 {
		t.Fatalf("own mode: %v", got)
	}
	var nilSet *hotSet
	if got := nilSet.withMode(q, []any{1}); len(got) != 1 {
		t.Fatalf("nil set: %v", got)
	}
}

// TestHotLimit: the set is sized to the pool's statement cache, and a DSN
// naming a mode turns it off.
func TestHotLimit(t *testing.T) {
	for _, c := range []struct {
		dsn  string
		want int
	}{
		{"postgres://h/db", 448},
		{"postgres://h/db?statement_cache_capacity=8192", 7168},
		{"postgres://h/db?statement_cache_capacity=0", 0},
		{"postgres://h/db?default_query_exec_mode=cache_statement", 0},
		{"postgres://h/db?default_query_exec_mode=exec", 0},
		{"host=h dbname=db default_query_exec_mode=cache_describe", 0},
	} {
		cfg, err := pgx.ParseConfig(c.dsn)
		if err != nil {
			t.Fatal(err)
		}
		if got := settingsOf(cfg).hotLimit(); got != c.want {
			t.Errorf("%s: limit %d, want %d", c.dsn, got, c.want)
		}
	}
	cfg, _ := pgx.ParseConfig("postgres://h/db")
	cfg.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol // gorm's PreferSimpleProtocol
	if got := settingsOf(cfg).hotLimit(); got != 0 {
		t.Errorf("simple protocol set in code: limit %d", got)
	}
}

func BenchmarkHotSetHit(b *testing.B) {
	h := newHotSet(448, pgx.QueryExecModeCacheDescribe)
	a := hotTexts("a", 400)
	pass(h, a)
	pass(h, a)
	args := []any{1}
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			h.withMode(a[i%len(a)], args)
			i++
		}
	})
}
