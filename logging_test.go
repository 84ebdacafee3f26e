package tenantplugin_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log"
	"log/slog"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorm-tenancy/tenantplugin"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

// jsonLines decodes the JSON records written to buf.
func jsonLines(t *testing.T, buf *bytes.Buffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("%v: %s", err, l)
		}
		out = append(out, m)
	}
	buf.Reset()
	return out
}

func TestLogHandlerAddsTheTenant(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(tenantplugin.LogHandler(slog.NewJSONHandler(&buf, nil)))
	ctx := context.Background()
	thor := tenantplugin.WithTenant(ctx, "thor")

	log.InfoContext(thor, "hello", "id", 7)
	log.InfoContext(ctx, "no tenant")
	log.Info("no context")
	log.InfoContext(tenantplugin.SharedOnly(ctx), "shared")
	log.InfoContext(tenantplugin.WithTenant(ctx, `x";drop`), "invalid name")
	log.InfoContext(thor, "explicit", "tenant", "given")
	log.With("app", "polls").WithGroup("req").InfoContext(thor, "grouped", "path", "/")
	recs := jsonLines(t, &buf)
	if len(recs) != 7 {
		t.Fatalf("%d records", len(recs))
	}
	if recs[0]["tenant"] != "thor" || recs[0]["id"] != float64(7) {
		t.Errorf("tenant record: %v", recs[0])
	}
	for _, r := range recs[1:5] {
		if _, ok := r["tenant"]; ok {
			t.Errorf("%v: tenant added without a valid tenant", r)
		}
	}
	if recs[5]["tenant"] != "given" {
		t.Errorf("an explicit tenant attribute was replaced: %v", recs[5])
	}
	req, _ := recs[6]["req"].(map[string]any)
	if recs[6]["app"] != "polls" || req["tenant"] != "thor" || req["path"] != "/" {
		t.Errorf("WithAttrs/WithGroup lost: %v", recs[6])
	}
	if !tenantplugin.LogHandler(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelWarn})).Enabled(ctx, slog.LevelWarn) ||
		tenantplugin.LogHandler(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelWarn})).Enabled(ctx, slog.LevelInfo) {
		t.Error("Enabled does not follow the wrapped handler")
	}
}

// TestLogHandlerConcurrentHandlers: a record shared by several handlers is
// copied before the attribute is added (run with -race).
func TestLogHandlerConcurrentHandlers(t *testing.T) {
	var mu sync.Mutex
	var buf bytes.Buffer
	h := tenantplugin.LogHandler(slog.NewJSONHandler(&lockedWriter{mu: &mu, w: &buf}, nil))
	r := slog.NewRecord(timeZero, slog.LevelInfo, "shared", 0)
	r.AddAttrs(slog.Int("a", 1))
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			_ = h.Handle(tenantplugin.WithTenant(context.Background(), fmt.Sprintf("t%d", i)), r)
		}(i)
	}
	wg.Wait()
	seen := map[any]bool{}
	for _, rec := range jsonLines(t, &buf) {
		seen[rec["tenant"]] = true
	}
	if len(seen) != 8 {
		t.Fatalf("tenants seen: %v", seen)
	}
}

// TestLoggerNamesTheTenantAndTheCaller: GORM's default logger and its slog
// logger, wrapped, name the tenant of each statement and still point at
// the application's line, not at the wrapper; parameters stay filtered.
func TestLoggerNamesTheTenantAndTheCaller(t *testing.T) {
	ctx := context.Background()
	var text bytes.Buffer
	db := open()
	defer closeDB(db)
	db.Logger = tenantplugin.Logger(logger.New(log.New(&text, "", 0), logger.Config{LogLevel: logger.Info, ParameterizedQueries: true}))
	plugin := tenantplugin.New(tenantplugin.WithSharedSchema("logging_shared"), tenantplugin.WithTenantModels(&Poll{}))
	if err := db.Use(plugin); err != nil {
		t.Fatal(err)
	}
	m := plugin.Migrator()
	if err := m.MigrateShared(ctx); err != nil {
		t.Fatal(err)
	}
	if err := m.CreateTenant(ctx, "log_thor"); err != nil {
		t.Fatal(err)
	}
	text.Reset()
	thor := tenantplugin.WithTenant(ctx, "log_thor")
	db.WithContext(thor).Create(&Poll{Question: "secret-question"})
	file, lineA := here()
	lineA--
	var n int64
	db.WithContext(thor).Raw("SELECT count(*) FROM polls").Scan(&n)
	db.WithContext(tenantplugin.SharedOnly(ctx)).Raw("SELECT 1").Scan(&n)
	db.WithContext(ctx).Raw("SELECT 2").Scan(&n)
	db.WithContext(thor).Where("question = ?", "nope").First(&Poll{}) // record not found: Error level

	out := text.String()
	t.Log(out)
	for _, want := range []string{
		fmt.Sprintf("%s:%d", file, lineA),
		`[tenant=log_thor] INSERT INTO "log_thor"."polls"`,
		"[tenant=log_thor] SELECT count(*) FROM polls",
		"[tenant=(shared)] SELECT 1",
		"record not found",
		`[tenant=log_thor] SELECT * FROM "log_thor"."polls" WHERE question = $1`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q", want)
		}
	}
	for _, bad := range []string{"gormlogger", "/logging.go", "secret-question"} {
		if strings.Contains(out, bad) {
			t.Errorf("log holds %q", bad)
		}
	}
	if !strings.Contains(out, "[rows:1] SELECT 2") {
		t.Error("a statement without a tenant is logged without prefix")
	}

	// GORM's slog logger over LogHandler: the attribute and the source.
	var js bytes.Buffer
	db.Logger = tenantplugin.Logger(logger.NewSlogLogger(
		slog.New(tenantplugin.LogHandler(slog.NewJSONHandler(&js, &slog.HandlerOptions{AddSource: true}))),
		logger.Config{LogLevel: logger.Info}))
	db.WithContext(thor).Find(&[]Poll{})
	_, lineB := here()
	lineB--
	recs := jsonLines(t, &js)
	if len(recs) != 1 {
		t.Fatalf("%d records", len(recs))
	}
	src, _ := recs[0]["source"].(map[string]any)
	trace, _ := recs[0]["trace"].(map[string]any)
	if recs[0]["tenant"] != "log_thor" || src["file"] != file || src["line"] != float64(lineB) ||
		!strings.HasPrefix(fmt.Sprint(trace["sql"]), `[tenant=log_thor] SELECT * FROM "log_thor"."polls"`) {
		t.Errorf("slog record: %v", recs[0])
	}
}

// here returns its caller's file and line.
func here() (string, int) {
	_, file, line, _ := runtime.Caller(1)
	return file, line
}

var timeZero time.Time

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func closeDB(db *gorm.DB) {
	if s, err := db.DB(); err == nil {
		s.Close()
	}
}

func ExampleLogHandler() {
	log := slog.New(tenantplugin.LogHandler(slog.NewTextHandler(os.Stdout, &slog.HandlerOptions{
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				return slog.Attr{} // keep the output stable
			}
			return a
		},
	})))
	ctx := tenantplugin.WithTenant(context.Background(), "thor") // as the middleware does
	log.InfoContext(ctx, "poll created", "id", 7)
	log.InfoContext(context.Background(), "no tenant here")
	// Output:
	// level=INFO msg="poll created" id=7 tenant=thor
	// level=INFO msg="no tenant here"
}

// printSQL is a GORM logger.Writer that prints only the SQL of each line.
type printSQL struct{}

func (printSQL) Printf(_ string, args ...any) { fmt.Println(args[len(args)-1]) }

func ExampleLogger() {
	ctx := context.Background()
	db := open()
	defer closeDB(db)
	db.Logger = tenantplugin.Logger(logger.New(printSQL{}, logger.Config{LogLevel: logger.Info}))
	plugin := tenantplugin.New(tenantplugin.WithSharedSchema("example_logger"), tenantplugin.WithTenantModels(&Poll{}))
	if err := db.Use(plugin); err != nil {
		panic(err)
	}
	dry := db.Session(&gorm.Session{DryRun: true}) // build the SQL, send nothing
	dry.WithContext(tenantplugin.WithTenant(ctx, "thor")).Find(&[]Poll{})
	dry.WithContext(tenantplugin.WithTenant(ctx, "potter")).Where("id = ?", 7).Find(&[]Poll{})
	// Output:
	// [tenant=thor] SELECT * FROM "thor"."polls"
	// [tenant=potter] SELECT * FROM "potter"."polls" WHERE id = 7
}
