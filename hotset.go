package tenantplugin

import (
	"database/sql"
	"gorm.io/gorm"
	"sync"
	"sync/atomic"

	"github.com/jackc/pgx/v5"
)

// hotSet admits statement texts to run as prepared statements: a text seen
// twice becomes hot while fewer than limit texts are. Every connection's
// statement cache holds limit entries, so the hot texts never thrash it,
// and each backend holds at most limit prepared statements.
type hotSet struct {
	hot   sync.Map // text -> struct{}
	n     atomic.Int64
	limit int64

	mu   sync.Mutex
	seen map[string]uint8
}

func newHotSet(limit int) *hotSet {
	return &hotSet{limit: int64(limit), seen: map[string]uint8{}}
}

// admit reports whether query runs as a prepared statement.
func (h *hotSet) admit(query string) bool {
	if _, ok := h.hot.Load(query); ok {
		return true
	}
	if h.n.Load() >= h.limit {
		return false
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.seen[query] >= 1 {
		delete(h.seen, query)
		if h.n.Load() < h.limit {
			h.hot.Store(query, struct{}{})
			h.n.Add(1)
		}
		return false // from the next time on
	}
	if len(h.seen) >= 64*int(h.limit) {
		clear(h.seen) // bounded memory for texts seen once
	}
	h.seen[query] = 1
	return false
}

// withMode prepends pgx's cache_statement mode to the arguments of a hot
// statement. Statements without arguments are left alone: pgx sends them
// over the simple protocol, and a script of several statements cannot be
// prepared.
func (h *hotSet) withMode(query string, args []any) []any {
	if h == nil || len(args) == 0 || !h.admit(query) {
		return args
	}
	out := make([]any, 0, len(args)+1)
	out = append(out, pgx.QueryExecModeCacheStatement)
	return append(out, args...)
}

// hotSetFor returns the hot set for db's pool, or nil to leave pgx's
// execution mode alone.
func hotSetFor(db *gorm.DB) *hotSet {
	if sqlDB, ok := db.ConnPool.(*sql.DB); ok {
		if limit, ok := hybridPools.Load(sqlDB); ok {
			return newHotSet(limit.(int))
		}
	}
	return nil
}
