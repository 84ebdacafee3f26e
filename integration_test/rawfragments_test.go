package integration_test

import (
	"context"
	"fmt"
	"sort"
	"testing"

	"github.com/gorm-tenancy/tenantplugin"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"
)

// Issue 16: a raw table name anywhere in a statement's tree is routed by
// search_path (or fails closed), inside and outside a transaction, at any
// depth, whatever shadow the shared schema holds.

type MxTag struct {
	ID    uint
	Name  string
	Owner string
}

type MxLink struct {
	ID    uint
	TagID uint
}

// rawInner builds the innermost subquery, which carries the raw fragment and
// selects one column named id: the tags that have a link.
var rawInner = map[string]func(db, plain *gorm.DB) any{
	"raw join": func(db, _ *gorm.DB) any {
		return db.Table("mx_tags").Select("mx_tags.id AS id").Joins("JOIN mx_links ON mx_links.tag_id = mx_tags.id")
	},
	"raw table expression": func(db, _ *gorm.DB) any {
		return db.Table("mx_links l").Select("l.tag_id AS id")
	},
	"raw subselect string": func(db, _ *gorm.DB) any {
		return db.Model(&MxTag{}).Select("id").Where("id IN (SELECT tag_id FROM mx_links)")
	},
	"db.Raw subquery": func(db, _ *gorm.DB) any {
		return db.Raw("SELECT tag_id AS id FROM mx_links")
	},
	"scope adding a raw join": func(db, _ *gorm.DB) any {
		return db.Model(&MxTag{}).Select("mx_tags.id").Scopes(func(d *gorm.DB) *gorm.DB {
			return d.Joins("JOIN mx_links ON mx_links.tag_id = mx_tags.id")
		})
	},
	"generics chain": func(_, plain *gorm.DB) any {
		return gorm.G[MxTag](plain).Select("id").Where("id IN (SELECT tag_id FROM mx_links)")
	},
	"context-less subquery": func(_, plain *gorm.DB) any {
		return plain.Table("mx_tags").Select("mx_tags.id").Joins("JOIN mx_links ON mx_links.tag_id = mx_tags.id")
	},
}

// positions put a subquery (selecting id) into a statement that returns the
// linked tag IDs.
var positions = map[string]func(db *gorm.DB, sub any) ([]uint, error){
	"WHERE": func(db *gorm.DB, sub any) ([]uint, error) {
		var ids []uint
		err := db.Model(&MxTag{}).Where("id IN (?)", sub).Order("id").Pluck("id", &ids).Error
		return ids, err
	},
	"SELECT": func(db *gorm.DB, sub any) ([]uint, error) {
		var rows []struct {
			ID     uint
			Linked bool
		}
		err := db.Model(&MxTag{}).Select("id, id IN (?) AS linked", sub).Order("id").Scan(&rows).Error
		var ids []uint
		for _, r := range rows {
			if r.Linked {
				ids = append(ids, r.ID)
			}
		}
		return ids, err
	},
	"FROM": func(db *gorm.DB, sub any) ([]uint, error) {
		var ids []uint
		err := db.Table("(?) AS t", sub).Order("t.id").Pluck("t.id", &ids).Error
		return ids, err
	},
	"JOIN": func(db *gorm.DB, sub any) ([]uint, error) {
		var ids []uint
		err := db.Model(&MxTag{}).Joins("JOIN (?) AS t ON t.id = mx_tags.id", sub).Order("mx_tags.id").Pluck("mx_tags.id", &ids).Error
		return ids, err
	},
	"HAVING": func(db *gorm.DB, sub any) ([]uint, error) {
		var ids []uint
		err := db.Model(&MxTag{}).Select("id").Group("id").Having("id IN (?)", sub).Order("id").Pluck("id", &ids).Error
		return ids, err
	},
}

func TestRawFragmentsAnywhereInTheTreeAreRouted(t *testing.T) {
	// The shared schema is public, as in the apps this comes from: a
	// leftover public.mx_links is the shadow a leak would read.
	db, err := server.Open(2, nil)
	require.NoError(t, err)
	defer closeDB(db)
	p := tenantplugin.New(tenantplugin.WithTenantModels(&MxTag{}, &MxLink{}))
	require.NoError(t, db.Use(p))
	m := p.Migrator(tenantplugin.WithShadowTablesAllowed())
	ctx := context.Background()
	require.NoError(t, m.MigrateShared(ctx))
	t1 := fmt.Sprintf("mx_%d", tenantN.Add(1))
	require.NoError(t, m.CreateTenant(ctx, t1))
	defer func() { _ = m.DropTenant(ctx, t1) }()
	tdb := db.WithContext(tenantplugin.WithTenant(ctx, t1))
	require.NoError(t, tdb.Create(&[]MxTag{{Name: "one", Owner: t1}, {Name: "two", Owner: t1}}).Error)
	require.NoError(t, tdb.Create(&MxLink{TagID: 2}).Error)
	want := []uint{2}

	kinds := sortedKeys(rawInner)
	places := sortedKeys(positions)
	cells := 0
	for _, shadow := range []bool{false, true} {
		if shadow {
			// The shadow links tag 1, which t1 never linked.
			require.NoError(t, db.Exec(`CREATE TABLE public.mx_links (id bigint, tag_id bigint); INSERT INTO public.mx_links VALUES (1, 1)`).Error)
		}
		for _, inTx := range []bool{false, true} {
			for _, depth := range []int{1, 2} {
				for _, kind := range kinds {
					for _, place := range places {
						name := fmt.Sprintf("shadow=%v/tx=%v/depth=%d/%s/%s", shadow, inTx, depth, kind, place)
						run := func(base *gorm.DB) ([]uint, error) {
							sub := rawInner[kind](base, db)
							if depth == 2 {
								sub = base.Model(&MxTag{}).Select("id").Where("id IN (?)", sub)
							}
							return positions[place](base, sub)
						}
						var got []uint
						if inTx {
							err = tdb.Transaction(func(tx *gorm.DB) error {
								var err error
								got, err = run(tx)
								return err
							})
						} else {
							got, err = run(tdb)
						}
						if assert.NoError(t, err, name) {
							assert.Equal(t, want, got, name)
						}
						cells++
					}
				}
			}
		}
		if shadow {
			require.NoError(t, db.Exec(`DROP TABLE public.mx_links`).Error)
		}
	}
	t.Logf("%d cells: %d fragment kinds x %d positions x 2 depths x 2 (in/out of a transaction) x 2 (with/without shadow)", cells, len(kinds), len(places))

	// Without a tenant, a tenant subquery makes the statement fail closed.
	before := server.Counter.Count()
	_, err = positions["WHERE"](db.WithContext(tenantplugin.SharedOnly(ctx)), rawInner["raw join"](db, db))
	require.ErrorIs(t, err, tenantplugin.ErrNoTenant)
	assert.Equal(t, before, server.Counter.Count())
}

// The example of the issue, verbatim in shape.
func TestIssue16Example(t *testing.T) {
	e := newEnv(t, 2)
	t1 := e.tenant("ex16")
	tdb := e.as(t1)
	require.NoError(t, tdb.Create(&Tag{Name: "one", Owner: t1}).Error)
	var tagID uint
	require.NoError(t, tdb.Model(&Tag{}).Pluck("id", &tagID).Error)
	require.NoError(t, e.db.Exec(`CREATE TABLE public.links (id serial, tag_id bigint)`).Error)
	t.Cleanup(func() { e.db.Exec(`DROP TABLE public.links`) })
	require.NoError(t, e.db.Exec(`INSERT INTO public.links (tag_id) VALUES (?)`, tagID).Error)
	require.NoError(t, e.db.Exec(fmt.Sprintf(`CREATE TABLE %s.links (id serial, tag_id bigint)`, tenantplugin.QuoteIdentifier(t1))).Error)

	count := func(db *gorm.DB) int64 {
		sub := db.Table("tags").Select("tags.id").Joins("JOIN links ON links.tag_id = tags.id")
		var n int64
		require.NoError(t, db.Model(&Tag{}).Where("tags.id IN (?)", sub).Count(&n).Error)
		return n
	}
	assert.EqualValues(t, 0, count(tdb), "outside a transaction")
	require.NoError(t, tdb.Transaction(func(tx *gorm.DB) error {
		assert.EqualValues(t, 0, count(tx), "inside a transaction")
		return nil
	}))
}

// A statement with no raw fragment anywhere costs no extra statement.
func TestPlainStatementsWithSubqueriesCostOneStatement(t *testing.T) {
	e := newEnv(t, 1)
	t1 := e.tenant("plain16")
	tdb := e.as(t1)
	require.NoError(t, tdb.Create(&Poll{Question: "q", Owner: t1, Choices: []Choice{{Text: "c", Owner: t1}}}).Error)
	server.Counter.Record()
	var polls []Poll
	require.NoError(t, tdb.Where("id IN (?)", e.db.Model(&Choice{}).Select("poll_id").Where("text = ?", "c")).
		Where("question = ?", "q").Order("id").Find(&polls).Error)
	sent := server.Counter.Take()
	require.Len(t, polls, 1)
	assert.Len(t, sent, 1, "one statement: %v", sent)
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
