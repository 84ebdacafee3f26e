package tenantplugin_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/gorm-tenancy/tenantplugin"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

// Routing is a function from (statement, context) to SQL text. These specs
// state, with GORM's DryRun and no PostgreSQL at all, the SQL every statement
// kind produces for a tenant, under SharedOnly, and with no tenant. The
// integration suite (integration_test) proves the same on the server.

type specPlan struct {
	ID   uint
	Name string
}

type specAuthor struct {
	ID   uint
	Name string
}

type specPoll struct {
	ID         uint
	Question   string
	SpecPlanID *uint
	SpecPlan   *specPlan
	AuthorID   *uint
	Author     *specAuthor
	Choices    []specChoice `gorm:"foreignKey:PollID"`
	DeletedAt  gorm.DeletedAt
}

type specChoice struct {
	ID     uint
	PollID uint
	Text   string
}

func (specPlan) TableName() string   { return "plans" }
func (specAuthor) TableName() string { return "authors" }
func (specPoll) TableName() string   { return "polls" }
func (specChoice) TableName() string { return "choices" }

// dryDB is a plugin-enabled DryRun database that never connects.
func dryDB(t *testing.T, opts ...tenantplugin.Option) *gorm.DB {
	t.Helper()
	db, err := gorm.Open(postgres.New(postgres.Config{DSN: "host=/nonexistent-tenantplugin-spec"}),
		&gorm.Config{DryRun: true, DisableAutomaticPing: true, SkipDefaultTransaction: true, Logger: logger.Discard})
	if err != nil {
		t.Fatal(err)
	}
	p := tenantplugin.New(append([]tenantplugin.Option{
		tenantplugin.WithSharedSchema("core"),
		tenantplugin.WithSharedModels(&specPlan{}),
		tenantplugin.WithTenantModels(&specPoll{}, &specChoice{}, &specAuthor{}),
	}, opts...)...)
	if err := db.Use(p); err != nil {
		t.Fatal(err)
	}
	return db
}

type spec struct {
	name string
	run  func(db *gorm.DB) *gorm.DB
	// The SQL for tenant "thor", or "" when the statement fails.
	thor string
	// The SQL under SharedOnly, or the error it gives.
	shared    string
	sharedErr error
	// The error with no tenant ("" SQL: the statement never runs).
	noTenantErr error
}

var one = uint(1)

var specs = []spec{
	{name: "First",
		run:         func(db *gorm.DB) *gorm.DB { return db.First(&specPoll{}) },
		thor:        `SELECT * FROM "thor"."polls" WHERE "polls"."deleted_at" IS NULL ORDER BY "polls"."id" LIMIT $1`,
		sharedErr:   tenantplugin.ErrNoTenant,
		noTenantErr: tenantplugin.ErrNoTenant},
	{name: "Find with conditions",
		run:         func(db *gorm.DB) *gorm.DB { return db.Where("question = ?", "q").Find(&[]specPoll{}) },
		thor:        `SELECT * FROM "thor"."polls" WHERE question = $1 AND "polls"."deleted_at" IS NULL`,
		sharedErr:   tenantplugin.ErrNoTenant,
		noTenantErr: tenantplugin.ErrNoTenant},
	{name: "Count",
		run:         func(db *gorm.DB) *gorm.DB { var n int64; return db.Model(&specChoice{}).Count(&n) },
		thor:        `SELECT count(*) FROM "thor"."choices"`,
		sharedErr:   tenantplugin.ErrNoTenant,
		noTenantErr: tenantplugin.ErrNoTenant},
	{name: "Create",
		run:         func(db *gorm.DB) *gorm.DB { return db.Create(&specChoice{PollID: 1, Text: "yes"}) },
		thor:        `INSERT INTO "thor"."choices" ("poll_id","text") VALUES ($1,$2) RETURNING "id"`,
		sharedErr:   tenantplugin.ErrNoTenant,
		noTenantErr: tenantplugin.ErrNoTenant},
	{name: "Updates",
		run: func(db *gorm.DB) *gorm.DB {
			return db.Model(&specChoice{ID: 1}).Updates(map[string]any{"text": "no"})
		},
		thor:        `UPDATE "thor"."choices" SET "text"=$1 WHERE "id" = $2`,
		sharedErr:   tenantplugin.ErrNoTenant,
		noTenantErr: tenantplugin.ErrNoTenant},
	{name: "soft Delete",
		run:         func(db *gorm.DB) *gorm.DB { return db.Delete(&specPoll{ID: 1}) },
		thor:        `UPDATE "thor"."polls" SET "deleted_at"=$1 WHERE "polls"."id" = $2 AND "polls"."deleted_at" IS NULL`,
		sharedErr:   tenantplugin.ErrNoTenant,
		noTenantErr: tenantplugin.ErrNoTenant},
	{name: "Unscoped Delete",
		run:         func(db *gorm.DB) *gorm.DB { return db.Unscoped().Delete(&specChoice{ID: 1}) },
		thor:        `DELETE FROM "thor"."choices" WHERE "choices"."id" = $1`,
		sharedErr:   tenantplugin.ErrNoTenant,
		noTenantErr: tenantplugin.ErrNoTenant},
	{name: "Joins of a tenant and a shared association",
		run:         func(db *gorm.DB) *gorm.DB { return db.Joins("Author").Joins("SpecPlan").Find(&[]specPoll{}) },
		thor:        `SELECT "polls"."id","polls"."question","polls"."spec_plan_id","polls"."author_id","polls"."deleted_at","Author"."id" AS "Author__id","Author"."name" AS "Author__name","SpecPlan"."id" AS "SpecPlan__id","SpecPlan"."name" AS "SpecPlan__name" FROM "thor"."polls" LEFT JOIN "thor"."authors" "Author" ON "polls"."author_id" = "Author"."id" LEFT JOIN "core"."plans" "SpecPlan" ON "polls"."spec_plan_id" = "SpecPlan"."id" WHERE "polls"."deleted_at" IS NULL`,
		sharedErr:   tenantplugin.ErrNoTenant,
		noTenantErr: tenantplugin.ErrNoTenant},
	{name: "Subquery without a context takes the statement's tenant",
		run: func(db *gorm.DB) *gorm.DB {
			sub := db.Session(&gorm.Session{NewDB: true, Context: context.Background()}).Model(&specChoice{}).Select("poll_id")
			return db.Where("id IN (?)", sub).Find(&[]specPoll{})
		},
		thor:        `SELECT * FROM "thor"."polls" WHERE id IN (SELECT "poll_id" FROM "thor"."choices") AND "polls"."deleted_at" IS NULL`,
		sharedErr:   tenantplugin.ErrNoTenant,
		noTenantErr: tenantplugin.ErrNoTenant},
	{name: "Table by name",
		run:         func(db *gorm.DB) *gorm.DB { return db.Table("choices").Where("id = ?", 1).Find(&[]map[string]any{}) },
		thor:        `SELECT * FROM "thor"."choices" WHERE id = $1`,
		sharedErr:   tenantplugin.ErrNoTenant,
		noTenantErr: tenantplugin.ErrNoTenant},
	{name: "shared table",
		run:    func(db *gorm.DB) *gorm.DB { return db.Find(&[]specPlan{}) },
		thor:   `SELECT * FROM "core"."plans"`,
		shared: `SELECT * FROM "core"."plans"`},
	{name: "tenant row referencing a shared row",
		run:         func(db *gorm.DB) *gorm.DB { return db.Create(&specPoll{Question: "q", SpecPlanID: &one}) },
		thor:        `INSERT INTO "thor"."polls" ("question","spec_plan_id","author_id","deleted_at") VALUES ($1,$2,$3,$4) RETURNING "id"`,
		sharedErr:   tenantplugin.ErrNoTenant,
		noTenantErr: tenantplugin.ErrNoTenant},
	{name: "explicitly qualified table runs as written",
		run:    func(db *gorm.DB) *gorm.DB { return db.Table("other.polls").Find(&[]map[string]any{}) },
		thor:   `SELECT * FROM "other"."polls"`,
		shared: `SELECT * FROM "other"."polls"`},
}

func TestSpecSQLPerStatementKind(t *testing.T) {
	db := dryDB(t)
	ctxs := []struct {
		label string
		ctx   context.Context
	}{
		{"thor", tenantplugin.WithTenant(context.Background(), "thor")},
		{"shared", tenantplugin.SharedOnly(context.Background())},
		{"no tenant", context.Background()},
	}
	for _, s := range specs {
		for _, c := range ctxs {
			res := s.run(db.WithContext(c.ctx))
			var wantSQL string
			var wantErr error
			switch c.label {
			case "thor":
				wantSQL = s.thor
			case "shared":
				wantSQL, wantErr = s.shared, s.sharedErr
			default:
				wantErr = s.noTenantErr
				if wantErr == nil {
					wantSQL = s.shared
				}
			}
			if wantErr != nil {
				if !errors.Is(res.Error, wantErr) {
					t.Errorf("%s / %s: error %v, want %v", s.name, c.label, res.Error, wantErr)
				}
				continue
			}
			if res.Error != nil {
				t.Errorf("%s / %s: unexpected error %v", s.name, c.label, res.Error)
				continue
			}
			if got := res.Statement.SQL.String(); got != wantSQL {
				t.Errorf("%s / %s:\n got  %s\n want %s", s.name, c.label, got, wantSQL)
			}
		}
	}
}

func TestSpecNamesThatAreNotTenants(t *testing.T) {
	db := dryDB(t)
	for name, want := range map[string]string{
		`""";DROP TABLE x;--`: "character",
		"Thor":                "upper-case",
		"pg_catalog":          "reserved by PostgreSQL",
		"core":                "shared schema",
	} {
		err := db.WithContext(tenantplugin.WithTenant(context.Background(), name)).Find(&[]specPoll{}).Error
		if !errors.Is(err, tenantplugin.ErrInvalidTenantName) || !strings.Contains(err.Error(), want) {
			t.Errorf("tenant %q: %v, want ErrInvalidTenantName mentioning %q", name, err, want)
		}
	}
}

func TestSpecGORMMigratorFailsClosedWithoutTenant(t *testing.T) {
	db := dryDB(t)
	if err := db.AutoMigrate(&specPoll{}); !errors.Is(err, tenantplugin.ErrNoTenant) {
		t.Fatalf("AutoMigrate without tenant: %v", err)
	}
	if db.Migrator().HasTable(&specChoice{}) {
		t.Fatal("HasTable without tenant answered true")
	}
}

// Shapes the layout refuses at registration, with no server.
func TestSpecRefusedShapes(t *testing.T) {
	type q struct{ ID uint }
	type school struct{ ID uint }
	type pupil struct {
		ID       uint
		SchoolID uint
		School   *school
	}
	type longIndex struct {
		ID   uint
		Name string `gorm:"index:idx_0123456789012345678901234567890123456789012345678901234567890123"`
	}
	cases := []struct {
		name   string
		opts   []tenantplugin.Option
		expect string
	}{
		{"shared and tenant at once", []tenantplugin.Option{tenantplugin.WithSharedModels(&specPlan{}), tenantplugin.WithTenantModels(&specPlan{})}, "both shared"},
		{"shared model with a foreign key to a tenant model", []tenantplugin.Option{tenantplugin.WithSharedModels(&pupil{}), tenantplugin.WithTenantModels(&school{})}, "foreign key from shared table pupils to tenant table schools"},
		{"index name PostgreSQL would truncate", []tenantplugin.Option{tenantplugin.WithTenantModels(&longIndex{})}, "PostgreSQL would truncate"},
		{"shared schema that is not a valid name", []tenantplugin.Option{tenantplugin.WithSharedSchema("Core")}, "upper-case"},
	}
	_ = q{}
	for _, c := range cases {
		db, err := gorm.Open(postgres.New(postgres.Config{DSN: "host=/nonexistent-tenantplugin-spec"}),
			&gorm.Config{DryRun: true, DisableAutomaticPing: true, SkipDefaultTransaction: true, Logger: logger.Discard})
		if err != nil {
			t.Fatal(err)
		}
		err = db.Use(tenantplugin.New(c.opts...))
		if err == nil || !strings.Contains(err.Error(), c.expect) {
			t.Errorf("%s: %v, want an error mentioning %q", c.name, err, c.expect)
		}
	}
}
