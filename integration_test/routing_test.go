package integration_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/gorm-tenancy/tenantplugin"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"
	"gorm.io/gorm/clause"
)

var tenantTables = []string{"authors", "profiles", "polls", "choices", "tags", "poll_tags"}

// snapshot returns every row of every tenant table of schema, and of the
// shared plans table, as text (read directly, not through the plugin).
func (e *env) snapshot(schema string) string {
	e.t.Helper()
	out := ""
	for _, t := range tenantTables {
		var s *string
		q := fmt.Sprintf(`SELECT json_agg(x ORDER BY x::text)::text FROM %s.%s x`,
			tenantplugin.QuoteIdentifier(schema), tenantplugin.QuoteIdentifier(t))
		require.NoError(e.t, e.db.WithContext(context.Background()).Raw(q).Scan(&s).Error)
		if s != nil {
			out += t + ":" + *s + "\n"
		} else {
			out += t + ": []\n"
		}
	}
	var s *string
	require.NoError(e.t, e.db.WithContext(context.Background()).Raw(`SELECT json_agg(x ORDER BY id)::text FROM public.plans x`).Scan(&s).Error)
	if s != nil {
		out += "plans:" + *s
	}
	return out
}

// seed writes the same set of rows into tenant, each marked with its name.
func (e *env) seed(tenant string, plan *Plan) {
	e.t.Helper()
	tx := e.as(tenant)
	author := Author{Name: "ann", Owner: tenant, Profile: &Profile{Bio: "bio of " + tenant, Owner: tenant}}
	require.NoError(e.t, tx.Create(&author).Error)
	for i := 1; i <= 3; i++ {
		p := Poll{
			Question: fmt.Sprintf("q%d", i), Owner: tenant, AuthorID: &author.ID, PlanID: &plan.ID,
			Choices: []Choice{{Text: "yes", Owner: tenant}, {Text: "no", Owner: tenant}},
			Tags:    []Tag{{Name: fmt.Sprintf("tag%d", i), Owner: tenant}},
		}
		require.NoError(e.t, tx.Create(&p).Error)
	}
}

// seededTenants creates n tenants named prefix_N, each seeded with the same
// rows (see seed) against one shared plan.
func (e *env) seededTenants(prefix string, n int) []string {
	e.t.Helper()
	plan := e.plan()
	tenants := make([]string, n)
	for i := range tenants {
		tenants[i] = e.tenant(prefix)
		e.seed(tenants[i], plan)
	}
	return tenants
}

func ownersOf[T any](t *testing.T, rows []T, get func(T) string) []string {
	t.Helper()
	var out []string
	for _, r := range rows {
		out = append(out, get(r))
	}
	return out
}

func allEqual(t *testing.T, want string, got []string) {
	t.Helper()
	for _, g := range got {
		require.Equal(t, want, g, "row of another tenant")
	}
}

// TestEveryStatementKindIsRouted runs each kind of statement GORM builds for
// tenant A and checks that A sees and changes only A's rows while B's rows
// (and the shared table) stay exactly as they were.
func TestEveryStatementKindIsRouted(t *testing.T) {
	e := newEnv(t, 4)
	plan := Plan{Name: "gold"}
	require.NoError(t, e.db.WithContext(tenantplugin.SharedOnly(context.Background())).Create(&plan).Error)

	cases := []struct {
		name string
		run  func(t *testing.T, a string, db *gorm.DB)
	}{
		{"create", func(t *testing.T, a string, db *gorm.DB) {
			require.NoError(t, db.Create(&Poll{Question: "new", Owner: a}).Error)
			assert.EqualValues(t, 4, e.count(a, "polls"))
		}},
		{"create batch", func(t *testing.T, a string, db *gorm.DB) {
			require.NoError(t, db.Create(&[]Poll{{Question: "n1", Owner: a}, {Question: "n2", Owner: a}}).Error)
			assert.EqualValues(t, 5, e.count(a, "polls"))
		}},
		{"create in batches", func(t *testing.T, a string, db *gorm.DB) {
			ps := []Poll{{Question: "n1", Owner: a}, {Question: "n2", Owner: a}, {Question: "n3", Owner: a}}
			require.NoError(t, db.CreateInBatches(&ps, 2).Error)
			assert.EqualValues(t, 6, e.count(a, "polls"))
		}},
		{"find", func(t *testing.T, a string, db *gorm.DB) {
			var ps []Poll
			require.NoError(t, db.Find(&ps).Error)
			require.Len(t, ps, 3)
			allEqual(t, a, ownersOf(t, ps, func(p Poll) string { return p.Owner }))
		}},
		{"first take last", func(t *testing.T, a string, db *gorm.DB) {
			var p1, p2, p3 Poll
			require.NoError(t, db.First(&p1).Error)
			require.NoError(t, db.Take(&p2).Error)
			require.NoError(t, db.Last(&p3).Error)
			allEqual(t, a, []string{p1.Owner, p2.Owner, p3.Owner})
			assert.Equal(t, "q1", p1.Question)
			assert.Equal(t, "q3", p3.Question)
		}},
		{"count", func(t *testing.T, a string, db *gorm.DB) {
			var n int64
			require.NoError(t, db.Model(&Choice{}).Where("text = ?", "yes").Count(&n).Error)
			assert.EqualValues(t, 3, n)
		}},
		{"pluck", func(t *testing.T, a string, db *gorm.DB) {
			var owners []string
			require.NoError(t, db.Model(&Choice{}).Pluck("owner", &owners).Error)
			require.Len(t, owners, 6)
			allEqual(t, a, owners)
		}},
		{"scan", func(t *testing.T, a string, db *gorm.DB) {
			var res []struct{ Owner, Question string }
			require.NoError(t, db.Model(&Poll{}).Select("owner, question").Scan(&res).Error)
			require.Len(t, res, 3)
			for _, r := range res {
				assert.Equal(t, a, r.Owner)
			}
		}},
		{"save", func(t *testing.T, a string, db *gorm.DB) {
			var p Poll
			require.NoError(t, db.First(&p).Error)
			p.Question = "saved"
			require.NoError(t, db.Save(&p).Error)
			var got Poll
			require.NoError(t, db.First(&got, p.ID).Error)
			assert.Equal(t, "saved", got.Question)
		}},
		{"updates", func(t *testing.T, a string, db *gorm.DB) {
			require.NoError(t, db.Model(&Poll{}).Where("question = ?", "q2").Updates(Poll{Question: "upd"}).Error)
			var n int64
			require.NoError(t, db.Model(&Poll{}).Where("question = ?", "upd").Count(&n).Error)
			assert.EqualValues(t, 1, n)
		}},
		{"update", func(t *testing.T, a string, db *gorm.DB) {
			var p Poll
			require.NoError(t, db.First(&p).Error)
			require.NoError(t, db.Model(&p).Update("question", "one").Error)
			require.NoError(t, db.First(&p, p.ID).Error)
			assert.Equal(t, "one", p.Question)
		}},
		{"update column", func(t *testing.T, a string, db *gorm.DB) {
			require.NoError(t, db.Model(&Choice{}).Where("text = ?", "no").UpdateColumn("votes", gorm.Expr("votes + ?", 5)).Error)
			var sum int64
			require.NoError(t, db.Model(&Choice{}).Select("coalesce(sum(votes),0)").Scan(&sum).Error)
			assert.EqualValues(t, 15, sum)
		}},
		{"model where update", func(t *testing.T, a string, db *gorm.DB) {
			var p Poll
			require.NoError(t, db.Where("question = ?", "q3").First(&p).Error)
			require.NoError(t, db.Model(&p).Where("owner = ?", a).Update("question", "mw").Error)
			require.NoError(t, db.First(&p, p.ID).Error)
			assert.Equal(t, "mw", p.Question)
		}},
		{"soft delete", func(t *testing.T, a string, db *gorm.DB) {
			require.NoError(t, db.Where("question = ?", "q1").Delete(&Poll{}).Error)
			var n int64
			require.NoError(t, db.Model(&Poll{}).Count(&n).Error)
			assert.EqualValues(t, 2, n)
			assert.EqualValues(t, 3, e.count(a, "polls"), "soft delete keeps the row")
		}},
		{"unscoped delete", func(t *testing.T, a string, db *gorm.DB) {
			require.NoError(t, db.Create(&Poll{Question: "gone", Owner: a}).Error)
			require.NoError(t, db.Unscoped().Where("question = ?", "gone").Delete(&Poll{}).Error)
			assert.EqualValues(t, 3, e.count(a, "polls"))
			var p Poll
			require.NoError(t, db.Where("question = ?", "q1").First(&p).Error)
			require.NoError(t, db.Select("Tags", "Choices").Unscoped().Delete(&p).Error)
			assert.EqualValues(t, 2, e.count(a, "polls"))
			assert.EqualValues(t, 2, e.count(a, "poll_tags"))
		}},
		{"first or create", func(t *testing.T, a string, db *gorm.DB) {
			var p Poll
			require.NoError(t, db.Where(Poll{Question: "foc"}).Attrs(Poll{Owner: a}).FirstOrCreate(&p).Error)
			assert.NotZero(t, p.ID)
			var again Poll
			require.NoError(t, db.Where(Poll{Question: "q1"}).FirstOrCreate(&again).Error)
			assert.Equal(t, a, again.Owner)
			assert.EqualValues(t, 4, e.count(a, "polls"))
		}},
		{"first or init", func(t *testing.T, a string, db *gorm.DB) {
			var p Poll
			require.NoError(t, db.Where(Poll{Question: "q2"}).FirstOrInit(&p).Error)
			assert.Equal(t, a, p.Owner)
			var fresh Poll
			require.NoError(t, db.Where(Poll{Question: "absent"}).FirstOrInit(&fresh).Error)
			assert.Zero(t, fresh.ID)
		}},
		{"nested preload", func(t *testing.T, a string, db *gorm.DB) {
			var ps []Poll
			require.NoError(t, db.Preload("Choices").Preload("Author.Profile").Preload("Tags").Preload("Plan").Find(&ps).Error)
			require.Len(t, ps, 3)
			for _, p := range ps {
				require.Len(t, p.Choices, 2)
				allEqual(t, a, ownersOf(t, p.Choices, func(c Choice) string { return c.Owner }))
				require.NotNil(t, p.Author)
				require.NotNil(t, p.Author.Profile)
				assert.Equal(t, a, p.Author.Owner)
				assert.Equal(t, a, p.Author.Profile.Owner)
				require.Len(t, p.Tags, 1)
				assert.Equal(t, a, p.Tags[0].Owner)
				require.NotNil(t, p.Plan)
				assert.Equal(t, "gold", p.Plan.Name)
			}
		}},
		{"joins belongs-to and shared", func(t *testing.T, a string, db *gorm.DB) {
			var ps []Poll
			require.NoError(t, db.Joins("Author").Joins("Plan").Where(`"Author"."name" = ?`, "ann").Find(&ps).Error)
			require.Len(t, ps, 3)
			for _, p := range ps {
				require.NotNil(t, p.Author)
				assert.Equal(t, a, p.Author.Owner)
				require.NotNil(t, p.Plan)
				assert.Equal(t, "gold", p.Plan.Name)
			}
		}},
		{"joins has-one", func(t *testing.T, a string, db *gorm.DB) {
			var as []Author
			require.NoError(t, db.Joins("Profile").Find(&as).Error)
			require.Len(t, as, 1)
			require.NotNil(t, as[0].Profile)
			assert.Equal(t, a, as[0].Profile.Owner)
		}},
		{"many2many create and preload", func(t *testing.T, a string, db *gorm.DB) {
			p := Poll{Question: "m2m", Owner: a, Tags: []Tag{{Name: "x", Owner: a}, {Name: "y", Owner: a}}}
			require.NoError(t, db.Create(&p).Error)
			var got Poll
			require.NoError(t, db.Preload("Tags").First(&got, p.ID).Error)
			require.Len(t, got.Tags, 2)
			assert.EqualValues(t, 5, e.count(a, "poll_tags"))
		}},
		{"association mode", func(t *testing.T, a string, db *gorm.DB) {
			var p Poll
			require.NoError(t, db.Where("question = ?", "q1").First(&p).Error)
			assoc := db.Model(&p).Association("Tags")
			require.NoError(t, assoc.Append(&Tag{Name: "appended", Owner: a}))
			assert.EqualValues(t, 2, assoc.Count())
			var extra Tag
			require.NoError(t, db.Where("name = ?", "tag2").First(&extra).Error)
			require.NoError(t, db.Model(&p).Association("Tags").Replace(&extra))
			assert.EqualValues(t, 1, db.Model(&p).Association("Tags").Count())
			require.NoError(t, db.Model(&p).Association("Tags").Delete(&extra))
			assert.EqualValues(t, 0, db.Model(&p).Association("Tags").Count())
			require.NoError(t, db.Model(&p).Association("Tags").Append(&extra))
			require.NoError(t, db.Model(&p).Association("Tags").Clear())
			assert.EqualValues(t, 0, db.Model(&p).Association("Tags").Count())
			require.NoError(t, db.Model(&p).Association("Choices").Append(&Choice{Text: "maybe", Owner: a}))
			assert.EqualValues(t, 3, db.Model(&p).Association("Choices").Count())
			assert.EqualValues(t, 7, e.count(a, "choices"))
		}},
		{"table with plain name", func(t *testing.T, a string, db *gorm.DB) {
			var owners []string
			require.NoError(t, db.Table("polls").Pluck("owner", &owners).Error)
			require.Len(t, owners, 3)
			allEqual(t, a, owners)
			require.NoError(t, db.Table("polls").Where("question = ?", "q1").Update("question", "tbl").Error)
			var n int64
			require.NoError(t, db.Table("polls").Where("question = ?", "tbl").Count(&n).Error)
			assert.EqualValues(t, 1, n)
		}},
		{"subquery without context", func(t *testing.T, a string, db *gorm.DB) {
			var ps []Poll
			sub := e.db.Model(&Choice{}).Select("poll_id").Where("text = ?", "yes")
			require.NoError(t, db.Where("id IN (?)", sub).Find(&ps).Error)
			require.Len(t, ps, 3)
			allEqual(t, a, ownersOf(t, ps, func(p Poll) string { return p.Owner }))
		}},
		{"subquery with context", func(t *testing.T, a string, db *gorm.DB) {
			var n int64
			require.NoError(t, db.Model(&Poll{}).Where("id IN (?)", db.Model(&Choice{}).Select("poll_id")).Count(&n).Error)
			assert.EqualValues(t, 3, n)
		}},
		{"raw subselect in where", func(t *testing.T, a string, db *gorm.DB) {
			var ps []Poll
			require.NoError(t, db.Where("id IN (SELECT poll_id FROM choices WHERE text = ?)", "no").Find(&ps).Error)
			require.Len(t, ps, 3)
			allEqual(t, a, ownersOf(t, ps, func(p Poll) string { return p.Owner }))
		}},
		{"raw join string", func(t *testing.T, a string, db *gorm.DB) {
			var res []struct{ Owner, Text string }
			require.NoError(t, db.Model(&Poll{}).Select("choices.owner, choices.text").
				Joins("JOIN choices ON choices.poll_id = polls.id").Scan(&res).Error)
			require.Len(t, res, 6)
			for _, r := range res {
				assert.Equal(t, a, r.Owner)
			}
		}},
		{"raw table expression", func(t *testing.T, a string, db *gorm.DB) {
			var owners []string
			require.NoError(t, db.Table("polls p").Pluck("p.owner", &owners).Error)
			require.Len(t, owners, 3)
			allEqual(t, a, owners)
		}},
		{"upsert", func(t *testing.T, a string, db *gorm.DB) {
			var p Poll
			require.NoError(t, db.First(&p).Error)
			p.Question = "upserted"
			require.NoError(t, db.Clauses(clause.OnConflict{UpdateAll: true}).Create(&p).Error)
			require.NoError(t, db.First(&p, p.ID).Error)
			assert.Equal(t, "upserted", p.Question)
		}},
	}

	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a, b := e.tenant("a"), e.tenant("b")
			e.seed(a, &plan)
			e.seed(b, &plan)
			before := e.snapshot(b)
			c.run(t, a, e.as(a))
			assert.Equal(t, before, e.snapshot(b), "tenant B's rows changed")
			// Whatever A's operation wrote carries A's name only.
			for _, tbl := range []string{"authors", "profiles", "polls", "choices", "tags"} {
				owners := e.owners(a, tbl)
				for _, o := range owners {
					assert.Equal(t, a, o, "table %s of %s holds a row of %s", tbl, a, o)
				}
			}
		})
	}
}

// TestSQLIsQualified checks the text GORM sends: tenant tables carry the
// tenant's schema, shared tables the shared schema, joins included.
func TestSQLIsQualified(t *testing.T) {
	e := newEnv(t, 2)
	a := e.tenant("sqlq")
	stmt := e.as(a).Session(&gorm.Session{DryRun: true}).Joins("Author").Joins("Plan").Find(&[]Poll{}).Statement
	sql := stmt.SQL.String()
	assert.Contains(t, sql, `FROM "`+a+`"."polls"`)
	assert.Contains(t, sql, `LEFT JOIN "`+a+`"."authors" "Author"`)
	assert.Contains(t, sql, `LEFT JOIN "public"."plans" "Plan"`)

	stmt = e.as(a).Session(&gorm.Session{DryRun: true}).Create(&Poll{Question: "x"}).Statement
	assert.Contains(t, stmt.SQL.String(), `INSERT INTO "`+a+`"."polls"`)
	stmt = e.as(a).Session(&gorm.Session{DryRun: true}).Model(&Poll{ID: 1}).Update("question", "y").Statement
	assert.Contains(t, stmt.SQL.String(), `UPDATE "`+a+`"."polls"`)
	stmt = e.as(a).Session(&gorm.Session{DryRun: true}).Unscoped().Delete(&Poll{ID: 1}).Statement
	assert.Contains(t, stmt.SQL.String(), `DELETE FROM "`+a+`"."polls"`)
	stmt = e.db.Session(&gorm.Session{DryRun: true}).Find(&[]Plan{}).Statement
	assert.Contains(t, stmt.SQL.String(), `FROM "public"."plans"`)
}

// TestGORMBuiltStatementsCostNoExtraRoundTrip counts the statements pgx sends.
func TestGORMBuiltStatementsCostNoExtraRoundTrip(t *testing.T) {
	e := newEnv(t, 2)
	a := e.tenant("rt")
	db := e.as(a)
	require.NoError(t, db.Create(&Poll{Question: "x", Owner: a}).Error)

	measure := func(fn func()) []string {
		server.Counter.Record()
		fn()
		return server.Counter.Take()
	}
	var p Poll
	sent := measure(func() { require.NoError(t, db.First(&p).Error) })
	assert.Len(t, sent, 1, "a read is one statement: %q", sent)
	sent = measure(func() {
		require.NoError(t, db.Session(&gorm.Session{SkipDefaultTransaction: true}).Model(&p).Update("question", "y").Error)
	})
	assert.Len(t, sent, 1, "an update without a transaction is one statement: %q", sent)
	sent = measure(func() { require.NoError(t, db.Model(&p).Update("question", "z").Error) })
	assert.Len(t, sent, 3, "begin + update + commit: %q", sent)
	var n int64
	sent = measure(func() { require.NoError(t, db.Model(&Poll{}).Joins("Author").Count(&n).Error) })
	assert.Len(t, sent, 1, "a join is one statement: %q", sent)
}

// TestSubqueriesEverywhereTakeTheTenant: subqueries built without a context in
// FROM, SELECT and JOIN take the tenant of the statement embedding them.
func TestSubqueriesEverywhereTakeTheTenant(t *testing.T) {
	e := newEnv(t, 2)
	a, b := e.tenant("suba"), e.tenant("subb")
	plan := e.plan()
	e.seed(a, plan)
	e.seed(b, plan)
	db := e.as(a)

	var owners []string
	sub := e.db.Model(&Poll{}).Select("owner")
	require.NoError(t, db.Table("(?) AS t", sub).Pluck("owner", &owners).Error)
	require.Len(t, owners, 3)
	allEqual(t, a, owners)

	var rows []struct {
		Question string
		N        int
	}
	require.NoError(t, db.Model(&Poll{}).
		Select("question, (?) AS n", e.db.Model(&Choice{}).Select("count(*)")).Scan(&rows).Error)
	require.Len(t, rows, 3)
	assert.Equal(t, 6, rows[0].N, "the subquery counted a's choices only")

	var joined []struct{ Owner string }
	require.NoError(t, db.Model(&Poll{}).Select("c.owner").
		Joins("JOIN (?) c ON c.poll_id = polls.id", e.db.Model(&Choice{}).Select("poll_id, owner")).Scan(&joined).Error)
	require.Len(t, joined, 6)
	for _, j := range joined {
		assert.Equal(t, a, j.Owner)
	}
}

// TestReusedStatementFollowsItsContext: a statement that was routed by
// search_path for tenant A and is then cloned into tenant B's context reads B.
func TestReusedStatementFollowsItsContext(t *testing.T) {
	e := newEnv(t, 1)
	a, b := e.tenant("reusea"), e.tenant("reuseb")
	plan := e.plan()
	e.seed(a, plan)
	e.seed(b, plan)
	q := e.as(a).Table("polls p").Select("p.owner") // a statement reused as GORM allows
	var r1, r2 []struct{ Owner string }
	require.NoError(t, q.Find(&r1).Error)
	require.Len(t, r1, 3)
	for _, r := range r1 {
		require.Equal(t, a, r.Owner)
	}
	server.Counter.Record()
	require.NoError(t, q.WithContext(e.ctx(b)).Find(&r2).Error)
	sent := server.Counter.Take()
	// the route statement and the query (one round trip): nothing left over from a's routing.
	assert.Len(t, sent, 2, "%q", sent)
	require.Len(t, r2, 3)
	for _, r := range r2 {
		require.Equal(t, b, r.Owner)
	}
}
