package tenantplugin

import (
	"context"
	"database/sql"
	"hash/maphash"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"gorm.io/gorm"
)

// Qualified SQL is different text for every tenant, so a pool serving many
// tenants sees more statement texts than pgx's per-connection statement cache
// holds (512 by default): run everything as a cached prepared statement and
// the cache thrashes, paying a prepare and a deallocate round trip on almost
// every statement. The hot set picks pgx's execution mode per statement
// instead:
//
//   - hot texts (the most used, at most hotSet.limit of them, sized to the
//     pool's statement cache) run as cached prepared statements
//     (pgx.QueryExecModeCacheStatement), which every connection's cache holds
//     without thrashing;
//   - every other statement with arguments runs in pgx.QueryExecModeExec: one
//     round trip, nothing kept per text on client or server (measured at
//     1,000 tenants, one connection: 1.10x a prepared statement's latency,
//     against 1.63x for cache_describe with pgx's 512-entry description
//     cache and 2.1x for the thrashing statement cache). Exec sends arguments
//     as text typed by the server, which is exact only for Go's basic types;
//     a statement with any other argument (time.Time, []byte, driver.Valuer,
//     pointers, named types) runs in cache_describe, which types arguments as
//     pgx's default mode does;
//   - statements without arguments are left alone (pgx sends them over the
//     simple protocol; a script of several statements cannot be prepared).
//
// The set adapts. While it has room, a text takes a place the first time it
// is seen (as pgx's own cache would prepare it). Once it is full, a text
// seen twice in an epoch replaces one of a few hot texts looked at clock-wise
// from a hand: one unused for a whole epoch, else the least used if the
// newcomer was used clearly more often (by hotMargin). Each epoch halves the
// use counts; it lasts at least twice as many cold statements as there are
// cold texts counted, so a text used once per cycle of the workload is seen
// twice. Texts that stop being used lose their place within two epochs to
// texts used now, while a steady workload larger than the set (1,000 tenants
// round-robin over 448 places) keeps its hot texts instead of churning them. A text that leaves the set is no longer run as a
// prepared statement, and pgx's per-connection LRU deallocates it when newer
// prepared texts push it out.
//
// Bounds: each backend holds at most the pool's statement cache capacity of
// prepared statements (pgx enforces it; the set stays below it); the client
// keeps limit hot texts (the text and about 40 bytes each) and counts for at
// most 8 x limit texts seen recently, by 64-bit hash (about 40 bytes each,
// never the text): 448 places on pgx's defaults is at most about 140 kB.
type hotSet struct {
	hot   sync.Map // text -> *hotEntry; read without a lock by every statement
	limit int
	// coldTyped is the mode of cold statements whose arguments pgx cannot
	// type from their Go values: cache_describe, or describe_exec when the
	// pool has no description cache.
	coldTyped pgx.QueryExecMode

	epoch atomic.Uint32 // ageings so far

	mu       sync.Mutex // the cold path: an admission decision per cold statement
	ring     []*hotEntry
	hand     int
	seed     maphash.Seed
	seen     map[uint64]uint8 // recent use counts of cold texts
	misses   int              // cold statements since the last ageing
	admitted atomic.Int64     // texts that entered the set (tests, stats)
	evicted  atomic.Int64     // texts that left it
}

type hotEntry struct {
	text string
	hits atomic.Uint32 // recent uses, halved at each ageing, saturating at hotMaxCount
	last atomic.Uint32 // the epoch of the last use
}

const (
	hotMaxCount = 15 // counts saturate
	hotMargin   = 2  // a candidate needs this many more recent uses than its victim
	hotSample   = 8  // hot texts looked at to pick a victim
)

func newHotSet(limit int, coldTyped pgx.QueryExecMode) *hotSet {
	return &hotSet{
		limit:     limit,
		coldTyped: coldTyped,
		seed:      maphash.MakeSeed(),
		seen:      map[uint64]uint8{},
	}
}

func (h *hotSet) maxSeen() int { return max(8*h.limit, 1024) }

// admit reports whether query runs as a prepared statement. The hot path is a
// sync.Map load and, until its count saturates, an atomic add.
func (h *hotSet) admit(query string) bool {
	if v, ok := h.hot.Load(query); ok {
		e := v.(*hotEntry)
		if now := h.epoch.Load(); e.last.Load() != now {
			e.last.Store(now)
		}
		if e.hits.Load() < hotMaxCount {
			e.hits.Add(1)
		}
		return true
	}
	return h.cold(query)
}

// cold counts a use of a text that is not hot and decides whether it takes
// a place, and so runs prepared from this use on. While the set has room a
// text takes one at once, as pgx's own cache would prepare it; once the set
// is full, a text needs a second use in the epoch (texts run once are never
// prepared then) and a victim it beats.
func (h *hotSet) cold(query string) bool {
	k := maphash.String(h.seed, query)
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.hot.Load(query); ok {
		return true // admitted meanwhile
	}
	h.misses++
	if h.misses >= max(2*len(h.seen), 2*h.limit, 256) {
		h.age()
	}
	c := h.seen[k]
	if c < hotMaxCount {
		c++
	}
	if h.limit <= 0 {
		return false
	}
	if len(h.ring) < h.limit {
		delete(h.seen, k)
		e := h.entry(query, c)
		h.ring = append(h.ring, e)
		h.hot.Store(query, e)
		h.admitted.Add(1)
		return true
	}
	if c < 2 {
		h.remember(k, c)
		return false
	}
	i := h.victim()
	v := h.ring[i]
	vc := v.hits.Load()
	if !h.dead(v) && uint32(c) < vc+hotMargin {
		h.remember(k, c)
		return false
	}
	delete(h.seen, k)
	h.hot.Delete(v.text)
	h.remember(maphash.String(h.seed, v.text), uint8(vc)) // it may come back
	e := h.entry(query, c)
	h.ring[i] = e
	h.hot.Store(query, e)
	h.admitted.Add(1)
	h.evicted.Add(1)
	return true
}

// remember records a cold text's count while the bookkeeping has room.
func (h *hotSet) remember(k uint64, c uint8) {
	if c == 0 {
		return
	}
	if _, ok := h.seen[k]; ok || len(h.seen) < h.maxSeen() {
		h.seen[k] = c
	}
}

func (h *hotSet) entry(query string, c uint8) *hotEntry {
	e := &hotEntry{text: query}
	e.hits.Store(uint32(c))
	e.last.Store(h.epoch.Load())
	return e
}

// dead reports whether a hot text went unused for a whole epoch.
func (h *hotSet) dead(e *hotEntry) bool { return e.last.Load()+1 < h.epoch.Load() }

// victim returns the index of a hot text to replace: among hotSample texts
// from the clock hand on, one unused for a whole epoch, else the least used.
// The hand moves past them.
func (h *hotSet) victim() int {
	best, bestHits := h.hand%len(h.ring), uint32(1<<31)
	for j := 0; j < hotSample && j < len(h.ring); j++ {
		i := (h.hand + j) % len(h.ring)
		e := h.ring[i]
		if h.dead(e) {
			best = i
			break
		}
		if c := e.hits.Load(); c < bestHits {
			best, bestHits = i, c
		}
	}
	h.hand = (h.hand + hotSample) % len(h.ring)
	return best
}

// age starts an epoch: it halves every count, hot and cold, and forgets cold
// texts whose count reaches zero. An epoch lasts at least twice as many cold
// statements as there are cold texts counted (so that a text used once per
// cycle of the workload is seen twice in an epoch) and at least 2 x limit;
// at most 2 x 8 x limit, as the counts are bounded. A concurrent hit may be
// lost; counts are estimates.
func (h *hotSet) age() {
	h.misses = 0
	h.epoch.Add(1)
	for _, e := range h.ring {
		e.hits.Store(e.hits.Load() / 2)
	}
	for k, c := range h.seen {
		if c /= 2; c == 0 {
			delete(h.seen, k)
		} else {
			h.seen[k] = c
		}
	}
}

// withMode prepends the execution mode the hot set picks to the arguments
// (see the comment at the top of this file). A nil hot set, a statement
// without arguments, and arguments that already start with a pgx option
// (an execution mode, a rewriter such as pgx.NamedArgs) are left alone.
func (h *hotSet) withMode(query string, args []any) []any {
	if h == nil || len(args) == 0 {
		return args
	}
	var mode pgx.QueryExecMode
	switch args[0].(type) {
	case pgx.QueryExecMode, pgx.QueryRewriter, pgx.QueryResultFormats, pgx.QueryResultFormatsByOID:
		return args
	}
	switch {
	case h.admit(query):
		mode = pgx.QueryExecModeCacheStatement
	case basicArgs(args):
		mode = pgx.QueryExecModeExec
	default:
		mode = h.coldTyped
	}
	out := make([]any, 0, len(args)+1)
	out = append(out, mode)
	return append(out, args...)
}

// basicArgs reports whether every argument has a Go basic type, whose text
// form the server reads the same whatever type it infers for the parameter
// (what pgx.QueryExecModeExec needs to behave like the typed modes).
func basicArgs(args []any) bool {
	for _, a := range args {
		switch a.(type) {
		case nil, string, bool, int, int8, int16, int32, int64,
			uint, uint8, uint16, uint32, uint64, float32, float64:
		default:
			return false
		}
	}
	return true
}

// pgxSettings is what the hot set needs to know of a pgx-backed pool.
type pgxSettings struct {
	statementCache   int // pgx ConnConfig.StatementCacheCapacity
	descriptionCache int // pgx ConnConfig.DescriptionCacheCapacity
	mode             pgx.QueryExecMode
	connString       string
	openMode         bool // Open chose the mode (cache_describe) itself
}

func settingsOf(cfg *pgx.ConnConfig) pgxSettings {
	return pgxSettings{
		statementCache:   cfg.StatementCacheCapacity,
		descriptionCache: cfg.DescriptionCacheCapacity,
		mode:             cfg.DefaultQueryExecMode,
		connString:       cfg.ConnString(),
	}
}

// hotLimit returns how many texts may be hot on a pool with these settings,
// 0 to leave pgx's mode alone:
//
//   - a connection string naming default_query_exec_mode, or a default mode
//     other than cache_statement and cache_describe (set in code, as GORM's
//     PreferSimpleProtocol does), is the user's choice (a pooler such as
//     PgBouncer, say): left alone;
//   - otherwise the set is sized to the statement cache, whether the DSN
//     names statement_cache_capacity or pgx's default (512) applies. When the
//     default mode is cache_statement, statements that do not pass through
//     the plugin's pool wrapper, or that carry their own mode, use that cache
//     too: an eighth of it (at least 16 places) is left to them, so 448 of
//     pgx's default 512.
func (s pgxSettings) hotLimit() int {
	if strings.Contains(s.connString, "default_query_exec_mode") {
		return 0
	}
	switch s.mode {
	case pgx.QueryExecModeCacheDescribe:
		if !s.openMode {
			return 0 // set in code: the user's choice, as from a DSN
		}
		return max(s.statementCache, 0)
	case pgx.QueryExecModeCacheStatement:
		headroom := min(max(s.statementCache/8, 16), s.statementCache/2)
		return max(s.statementCache-headroom, 0)
	}
	return 0
}

// prepares reports whether the pool may hold prepared statements: pgx's
// default mode, or Open's choice; not a mode a DSN names or code sets
// (exec, simple_protocol, cache_describe: a pooler without prepared
// statements, such as PgBouncer before 1.21 in transaction mode).
func (s pgxSettings) prepares() bool {
	if strings.Contains(s.connString, "default_query_exec_mode") {
		return s.mode == pgx.QueryExecModeCacheStatement
	}
	return s.mode == pgx.QueryExecModeCacheStatement || s.openMode
}

func (s pgxSettings) hotSet() *hotSet {
	limit := s.hotLimit()
	if limit <= 0 {
		return nil
	}
	typed := pgx.QueryExecModeCacheDescribe
	if s.descriptionCache <= 0 {
		typed = pgx.QueryExecModeDescribeExec
	}
	return newHotSet(limit, typed)
}

// settingsCarrier is implemented by the dialector Open returns.
type settingsCarrier interface{ pgxSettings() pgxSettings }

// poolSettings returns the pgx settings of db's pool, false when it is not
// pgx's. A dialector from Open carries its settings; any other *sql.DB
// backed by pgx's stdlib driver (gorm's postgres.Open, sql.Open("pgx")) is
// asked once, on one of its connections.
func poolSettings(db *gorm.DB) (pgxSettings, bool) {
	if s, ok := settingsFromDialector(db.Dialector); ok {
		return s, true
	}
	pool := db.ConnPool
	if ps, ok := pool.(*gorm.PreparedStmtDB); ok {
		pool = ps.ConnPool
	}
	sqlDB, ok := pool.(*sql.DB)
	if !ok {
		return pgxSettings{}, false
	}
	return probePgx(sqlDB)
}

func settingsFromDialector(d gorm.Dialector) (pgxSettings, bool) {
	for d != nil {
		switch x := d.(type) {
		case settingsCarrier:
			return x.pgxSettings(), true
		case guardDialector:
			d = x.Dialector
		case migrationDialector:
			d = x.Dialector
		default:
			return pgxSettings{}, false
		}
	}
	return pgxSettings{}, false
}

// probePgx reads the pgx configuration of sqlDB's connections; false when
// they are not pgx's or no connection can be had.
func probePgx(sqlDB *sql.DB) (pgxSettings, bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := sqlDB.Conn(ctx)
	if err != nil {
		return pgxSettings{}, false
	}
	defer conn.Close()
	var s pgxSettings
	found := false
	_ = conn.Raw(func(dc any) error {
		if c, ok := dc.(*stdlib.Conn); ok {
			s, found = settingsOf(c.Conn().Config()), true
		}
		return nil
	})
	return s, found
}
