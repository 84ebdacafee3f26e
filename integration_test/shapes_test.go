package integration_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/gorm-tenancy/tenantplugin"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
	"gorm.io/gorm/schema"
)

// Issue 9: isolation for every model shape. Each test uses a shared schema
// of its own and decoys in it where a leak would read them.

// shapeEnv opens a pool with a plugin for the given models on a new shared
// schema, migrates it, and closes the pool at cleanup.
func shapeEnv(t *testing.T, shared []any, tenant []any, popts []tenantplugin.Option, mopts ...tenantplugin.MigratorOption) *isolatedEnv {
	t.Helper()
	sh := fmt.Sprintf("shape_%d", sharedN.Add(1))
	db, err := server.Open(2, nil)
	require.NoError(t, err)
	t.Cleanup(func() {
		if s, err := db.DB(); err == nil {
			s.Close()
		}
	})
	opts := append([]tenantplugin.Option{tenantplugin.WithSharedSchema(sh), tenantplugin.WithSharedModels(shared...),
		tenantplugin.WithTenantModels(tenant...)}, popts...)
	p := tenantplugin.New(opts...)
	require.NoError(t, db.Use(p))
	m := p.Migrator(mopts...)
	require.NoError(t, m.MigrateShared(context.Background()))
	return &isolatedEnv{env: &env{t: t, db: db, p: p, m: m}, shared: sh}
}

// schemasHolding lists the schemas that hold a table named table.
func (e *env) schemasHolding(table string) []string {
	e.t.Helper()
	var out []string
	require.NoError(e.t, e.db.WithContext(context.Background()).Raw(
		`SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relname = ? AND c.relkind = 'r' ORDER BY 1`,
		table).Scan(&out).Error)
	return out
}

// Case 1: raw SQL for a tenant without a schema fails with
// ErrUnknownTenant and touches nothing (TestRawSQLForTenantWithoutSchemaFailsClosed
// covers Raw, Exec, Rows, Row, inside and outside a transaction). The same
// for the whole kind: a tenant model's table in the shared schema is a
// shadow, which MigrateShared refuses unless allowed.
func TestMigrateRefusesTenantTablesInTheSharedSchema(t *testing.T) {
	type ShadowNote struct {
		ID    uint
		Owner string
	}
	e := shapeEnv(t, nil, []any{&ShadowNote{}}, nil)
	ctx := context.Background()
	require.NoError(t, e.db.WithContext(ctx).Exec(fmt.Sprintf(`CREATE TABLE %s.shadow_notes (id int, owner text)`, e.shared)).Error)

	err := e.m.MigrateShared(ctx)
	var le *tenantplugin.LayoutError
	require.ErrorAs(t, err, &le)
	assert.Equal(t, "shadow_notes", le.Table)
	assert.Contains(t, err.Error(), "shadow_notes")
	assert.Contains(t, err.Error(), "WithShadowTablesAllowed")
	_, err = e.m.Migrate(ctx)
	require.ErrorAs(t, err, &le, "Migrate runs MigrateShared first")

	require.NoError(t, e.p.Migrator(tenantplugin.WithShadowTablesAllowed()).MigrateShared(ctx), "opted out")
}

// Case 2: GORM's own Migrator fails closed without a tenant and works on the
// tenant's schema with one; shared models go to the shared schema.
func TestGORMMigratorIsRoutedByTheLayout(t *testing.T) {
	type MigNote struct {
		ID    uint
		Owner string
	}
	type MigPlan struct {
		ID   uint
		Name string
	}
	e := shapeEnv(t, []any{&MigPlan{}}, []any{&MigNote{}}, nil)
	ctx := context.Background()
	t1, t2 := e.tenant("mig"), e.tenant("mig")
	require.ElementsMatch(t, []string{t1, t2}, e.schemasHolding("mig_notes"))

	before := server.Counter.Count()
	err := e.db.AutoMigrate(&MigNote{})
	require.ErrorIs(t, err, tenantplugin.ErrNoTenant)
	assert.Contains(t, err.Error(), "mig_notes")
	require.ErrorIs(t, e.db.Migrator().CreateTable(&MigNote{}), tenantplugin.ErrNoTenant)
	require.ErrorIs(t, e.db.Migrator().DropTable(&MigNote{}), tenantplugin.ErrNoTenant)
	require.ErrorIs(t, e.db.Migrator().AddColumn(&MigNote{}, "Owner"), tenantplugin.ErrNoTenant)
	require.ErrorIs(t, e.db.Migrator().DropTable("mig_notes"), tenantplugin.ErrNoTenant)
	assert.False(t, e.db.Migrator().HasTable(&MigNote{}), "no tenant: false, nothing asked")
	assert.False(t, e.db.Migrator().HasTable("mig_notes"))
	require.ErrorIs(t, e.db.WithContext(tenantplugin.SharedOnly(ctx)).AutoMigrate(&MigNote{}), tenantplugin.ErrNoTenant)
	assert.Equal(t, before, server.Counter.Count(), "no statement was sent")
	assert.ElementsMatch(t, []string{t1, t2}, e.schemasHolding("mig_notes"), "no copy was created anywhere")

	// With a tenant: that tenant's schema only.
	tdb := e.as(t1)
	assert.True(t, tdb.Migrator().HasTable(&MigNote{}))
	require.NoError(t, tdb.Migrator().DropTable(&MigNote{}))
	assert.Equal(t, []string{t2}, e.schemasHolding("mig_notes"))
	assert.False(t, tdb.Migrator().HasTable(&MigNote{}))
	require.NoError(t, tdb.AutoMigrate(&MigNote{}))
	assert.ElementsMatch(t, []string{t1, t2}, e.schemasHolding("mig_notes"))
	tables, err := e.as(t2).Migrator().GetTables()
	require.NoError(t, err)
	assert.Contains(t, tables, "mig_notes")
	// Inside the caller's transaction too.
	require.NoError(t, e.as(t2).Transaction(func(tx *gorm.DB) error {
		if !tx.Migrator().HasColumn(&MigNote{}, "Owner") {
			return errors.New("column owner not seen")
		}
		return tx.Migrator().DropColumn(&MigNote{}, "Owner")
	}))
	assert.False(t, e.as(t2).Migrator().HasColumn(&MigNote{}, "Owner"))
	assert.True(t, e.as(t1).Migrator().HasColumn(&MigNote{}, "Owner"), "t1 untouched")

	// A shared model with no tenant: the shared schema, not public.
	require.NoError(t, e.db.Migrator().DropTable(&MigPlan{}))
	assert.Empty(t, e.schemasHolding("mig_plans"))
	require.NoError(t, e.db.AutoMigrate(&MigPlan{}))
	assert.Equal(t, []string{e.shared}, e.schemasHolding("mig_plans"))
	// A tenant's AutoMigrate of a model that references nothing new leaves
	// shared tables where they are.
	require.NoError(t, e.as(t1).AutoMigrate(&MigPlan{}, &MigNote{}))
	assert.Equal(t, []string{e.shared}, e.schemasHolding("mig_plans"))
}

// Case 3: a tenant table whose name names a schema is one table for
// everybody: refused by db.Use with an error naming the table.
func TestSchemaQualifiedTenantTablesAreRefused(t *testing.T) {
	db, err := server.Open(1, nil)
	require.NoError(t, err)
	defer closeDB(db)
	err = db.Use(tenantplugin.New(tenantplugin.WithTenantModels(&qualifiedItem{})))
	var le *tenantplugin.LayoutError
	require.ErrorAs(t, err, &le)
	assert.Equal(t, "app.q_items", le.Table)
	assert.Contains(t, err.Error(), "app.q_items")

	prefixed, err := gorm.Open(tenantplugin.Open(server.URL), &gorm.Config{Logger: logger.Discard,
		NamingStrategy: schema.NamingStrategy{TablePrefix: "app."}})
	require.NoError(t, err)
	defer closeDB(prefixed)
	err = prefixed.Use(tenantplugin.New(tenantplugin.WithTenantModels(&Tag{})))
	require.ErrorAs(t, err, &le)
	assert.Equal(t, "app.tags", le.Table)
}

type qualifiedItem struct{ ID uint }

func (qualifiedItem) TableName() string { return "app.q_items" }

func closeDB(db *gorm.DB) {
	if s, err := db.DB(); err == nil {
		s.Close()
	}
}

// Case 4: a many2many between a shared and a tenant model: the join table
// holds tenant rows and lives in each tenant's schema.
type LinkMember struct {
	ID       uint
	Name     string
	Stations []LinkStation `gorm:"many2many:link_member_stations"`
}

type LinkStation struct {
	ID    uint
	Name  string
	Owner string
}

func TestManyToManyBetweenSharedAndTenantModels(t *testing.T) {
	e := shapeEnv(t, []any{&LinkMember{}}, []any{&LinkStation{}}, nil)
	ctx := context.Background()
	t1, t2 := e.tenant("m2m"), e.tenant("m2m")
	_, err := e.m.Migrate(ctx)
	require.NoError(t, err)
	assert.ElementsMatch(t, []string{t1, t2}, e.schemasHolding("link_member_stations"), "the join table is in each tenant, not shared")
	assert.Equal(t, []string{e.shared}, e.schemasHolding("link_members"))

	member := LinkMember{Name: "ann"}
	require.NoError(t, e.db.WithContext(tenantplugin.SharedOnly(ctx)).Create(&member).Error)
	for _, tn := range []string{t1, t2} {
		st := LinkStation{Name: "station of " + tn, Owner: tn}
		require.NoError(t, e.as(tn).Create(&st).Error)
		require.NoError(t, e.as(tn).Model(&member).Association("Stations").Append(&st))
	}
	// A decoy join table in the shared schema pointing at t2's station.
	require.NoError(t, e.db.WithContext(ctx).Exec(fmt.Sprintf(
		`CREATE TABLE %s.link_member_stations (link_member_id bigint, link_station_id bigint); INSERT INTO %[1]s.link_member_stations VALUES (%d, 1)`,
		e.shared, member.ID)).Error)

	for _, tn := range []string{t1, t2} {
		var got LinkMember
		require.NoError(t, e.as(tn).Preload("Stations").First(&got, member.ID).Error)
		require.Len(t, got.Stations, 1, tn)
		assert.Equal(t, tn, got.Stations[0].Owner)
		assert.EqualValues(t, 1, e.as(tn).Model(&member).Association("Stations").Count())
		var stations []LinkStation
		require.NoError(t, e.as(tn).Model(&member).Association("Stations").Find(&stations))
		allEqual(t, tn, ownersOf(t, stations, func(s LinkStation) string { return s.Owner }))
	}
	assert.EqualValues(t, 1, e.count(t1, "link_member_stations"))
	assert.EqualValues(t, 1, e.count(e.shared, "link_member_stations"), "decoy untouched")

	// Without a tenant the join table is out of reach.
	var got LinkMember
	err = e.db.WithContext(tenantplugin.SharedOnly(ctx)).Preload("Stations").First(&got, member.ID).Error
	require.ErrorIs(t, err, tenantplugin.ErrNoTenant)
	require.NoError(t, e.as(t1).Model(&member).Association("Stations").Clear())
	assert.EqualValues(t, 0, e.count(t1, "link_member_stations"))
	assert.EqualValues(t, 1, e.count(t2, "link_member_stations"))
}

// Case 5: a shared model that references a tenant model cannot exist:
// refused at registration, naming the model, the field and why.
func TestSharedModelReferencingTenantModelIsRefused(t *testing.T) {
	type School struct {
		ID   uint
		Name string
	}
	type Pupil struct {
		ID       uint
		SchoolID uint
		School   *School
	}
	db, err := server.Open(1, nil)
	require.NoError(t, err)
	defer closeDB(db)
	err = db.Use(tenantplugin.New(tenantplugin.WithSharedModels(&Pupil{}), tenantplugin.WithTenantModels(&School{})))
	var le *tenantplugin.LayoutError
	require.ErrorAs(t, err, &le)
	assert.Equal(t, "Pupil", le.Model)
	assert.Equal(t, "School", le.Field)
	assert.Contains(t, err.Error(), "foreign key from shared table pupils to tenant table schools")

	// The has-many form, declared on the tenant side, is the same key.
	type Student struct {
		ID       uint
		CampusID uint
	}
	type Campus struct {
		ID       uint
		Students []Student
	}
	err = db.Use(tenantplugin.New(tenantplugin.WithSharedModels(&Student{}), tenantplugin.WithTenantModels(&Campus{})))
	require.ErrorAs(t, err, &le)
	assert.Equal(t, "Campus", le.Model)
	assert.Equal(t, "Students", le.Field)

	// Tenant to shared is the supported direction.
	type Course struct {
		ID      uint
		VenueID uint
	}
	type Venue struct {
		ID      uint
		Courses []Course
	}
	require.NoError(t, db.Use(tenantplugin.New(tenantplugin.WithSharedModels(&Venue{}), tenantplugin.WithTenantModels(&Course{}))))
}

// Case 6: with tenant roles, GORM's creates, updates and deletes run under
// the tenant's role: current_user inside the write.
type RoleNote struct {
	ID   uint
	Body string
	Who  string `gorm:"default:(current_user)"`
}

func TestTenantRoleInsideGORMWrites(t *testing.T) {
	e := shapeEnv(t, nil, []any{&RoleNote{}}, []tenantplugin.Option{tenantplugin.WithTenantRoles()})
	ctx := context.Background()
	tn := e.tenant("rw")
	t.Cleanup(func() {
		_ = e.m.DropTenant(ctx, tn)
		e.db.Exec(`DROP OWNED BY ` + tenantplugin.QuoteIdentifier(tenantplugin.SharedAccessRoleName(server.Name)))
	})
	role := tenantplugin.RoleName(server.Name, tn)
	tdb := e.as(tn)

	// GORM's own transaction.
	n := RoleNote{Body: "default tx"}
	require.NoError(t, tdb.Create(&n).Error)
	assert.Equal(t, role, n.Who)
	// The caller's transaction.
	require.NoError(t, tdb.Transaction(func(tx *gorm.DB) error {
		n := RoleNote{Body: "caller tx"}
		if err := tx.Create(&n).Error; err != nil {
			return err
		}
		assert.Equal(t, role, n.Who)
		return nil
	}))
	// No transaction at all.
	n2 := RoleNote{Body: "no tx"}
	require.NoError(t, tdb.Session(&gorm.Session{SkipDefaultTransaction: true}).Create(&n2).Error)
	assert.Equal(t, role, n2.Who)

	// Update and delete: the statements only match under the role.
	res := tdb.Model(&RoleNote{}).Where("body = ?", "default tx").Update("who", gorm.Expr("current_user || '+'"))
	require.NoError(t, res.Error)
	var who string
	require.NoError(t, e.db.Raw(fmt.Sprintf(`SELECT who FROM %s.role_notes WHERE body = 'default tx'`, tenantplugin.QuoteIdentifier(tn))).Scan(&who).Error)
	assert.Equal(t, role+"+", who)
	res = tdb.Where("body = ? AND current_user = ?", "no tx", role).Delete(&RoleNote{})
	require.NoError(t, res.Error)
	assert.EqualValues(t, 1, res.RowsAffected, "the delete ran under the tenant role")
}

// Case 7: subqueries of GORM's generics API get the statement's tenant, and
// a subquery that cannot be routed fails the statement around it.
type GenItem struct {
	ID    uint
	Name  string
	Owner string
}

func TestGenericsSubqueriesTakeTheTenant(t *testing.T) {
	e := shapeEnv(t, nil, []any{&GenItem{}}, nil, tenantplugin.WithShadowTablesAllowed())
	ctx := context.Background()
	t1, t2 := e.tenant("gen"), e.tenant("gen")
	for _, tn := range []string{t1, t2} {
		require.NoError(t, e.as(tn).Create(&[]GenItem{{Name: "a", Owner: tn}, {Name: "b", Owner: tn}, {Name: "only_" + tn, Owner: tn}}).Error)
	}
	// A decoy in the shared schema, which a leak would read.
	require.NoError(t, e.db.Exec(fmt.Sprintf(`CREATE TABLE %s.gen_items (id bigint, name text, owner text); INSERT INTO %[1]s.gen_items VALUES (1, 'only_%s', 'shared')`, e.shared, t2)).Error)

	tctx := tenantplugin.WithTenant(ctx, t1)
	items, err := gorm.G[GenItem](e.db).Where("name IN (?)", gorm.G[GenItem](e.db).Select("name").Where("name <> ?", "b")).Order("name").Find(tctx)
	require.NoError(t, err)
	names := ownersOf(t, items, func(i GenItem) string { return i.Name })
	assert.Equal(t, []string{"a", "only_" + t1}, names)
	allEqual(t, t1, ownersOf(t, items, func(i GenItem) string { return i.Owner }))

	// Depth 2, in a *gorm.DB statement.
	var n int64
	inner := gorm.G[GenItem](e.db).Select("name").Where("name = ?", "only_"+t2)
	require.NoError(t, e.as(t1).Model(&GenItem{}).Where("name IN (?)", gorm.G[GenItem](e.db).Select("name").Where("name IN (?)", inner)).Count(&n).Error)
	assert.EqualValues(t, 0, n, "t2's row name is not in t1, and the shared decoy is not read")

	// No tenant anywhere: the statement fails closed before sending.
	before := server.Counter.Count()
	_, err = gorm.G[GenItem](e.db).Where("name IN (?)", gorm.G[GenItem](e.db).Select("name")).Find(ctx)
	require.ErrorIs(t, err, tenantplugin.ErrNoTenant)
	var m []map[string]any
	err = e.db.WithContext(tenantplugin.SharedOnly(ctx)).Table(e.shared+".gen_items").Where("name IN (?)", gorm.G[GenItem](e.db).Select("name")).Find(&m).Error
	require.ErrorIs(t, err, tenantplugin.ErrNoTenant, "a shared statement with a tenant subquery and no tenant")
	assert.Equal(t, before, server.Counter.Count())
}

// Raw SQL for a tenant whose schema does not exist must not fall through to
// a same-named table of the shared schema (PostgreSQL skips a search_path
// entry that names no schema).
func TestRawSQLForTenantWithoutSchemaFailsClosed(t *testing.T) {
	e := newEnv(t, 2)
	bg := context.Background()
	require.NoError(t, e.db.WithContext(bg).Exec(`CREATE TABLE public.fb_notes (id serial PRIMARY KEY, owner text)`).Error)
	t.Cleanup(func() { e.db.WithContext(bg).Exec(`DROP TABLE public.fb_notes`) })
	require.NoError(t, e.db.WithContext(bg).Exec(`INSERT INTO public.fb_notes (owner) VALUES ('shared')`).Error)

	ghost := e.as("ghost")
	var owners []string
	err := ghost.Raw("SELECT owner FROM fb_notes").Scan(&owners).Error
	require.ErrorIs(t, err, tenantplugin.ErrUnknownTenant)
	require.Contains(t, err.Error(), `"ghost"`)
	require.Empty(t, owners)

	err = ghost.Exec("UPDATE fb_notes SET owner = 'ghost'").Error
	require.ErrorIs(t, err, tenantplugin.ErrUnknownTenant)

	// Inside the caller's transaction too.
	err = ghost.Transaction(func(tx *gorm.DB) error {
		return tx.Exec("UPDATE fb_notes SET owner = 'ghost'").Error
	})
	require.ErrorIs(t, err, tenantplugin.ErrUnknownTenant)

	// Rows() and Row() as well.
	_, err = ghost.Raw("SELECT owner FROM fb_notes").Rows()
	require.ErrorIs(t, err, tenantplugin.ErrUnknownTenant)
	var one string
	err = ghost.Raw("SELECT owner FROM fb_notes").Row().Scan(&one)
	require.True(t, errors.Is(err, tenantplugin.ErrUnknownTenant), "got %v", err)

	require.Equal(t, []string{"shared"}, e.owners("public", "fb_notes"))
}
