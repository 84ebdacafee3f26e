package tenantplugin

import (
	"context"
	"log/slog"

	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

// Logs that name their tenant, without application code: LogHandler for
// log/slog, Logger for GORM's logger.

// LogKey is the attribute key LogHandler adds.
const LogKey = "tenant"

// LogHandler returns a slog.Handler that adds the attribute tenant=NAME to
// every record whose context carries a tenant (FromContext), then passes the
// record to next. Records logged without a context (Info rather than
// InfoContext), with no tenant, with a SharedOnly context or with an invalid
// name get nothing added; a record that already has a "tenant" attribute is
// left alone. Under a group (Logger.WithGroup) the attribute lands in that
// group, as any attribute of the record does.
//
//	log := slog.New(tenantplugin.LogHandler(slog.NewJSONHandler(os.Stderr, nil)))
//	log.InfoContext(r.Context(), "poll created", "id", p.ID) // ... "id":7,"tenant":"thor"}
//
// Inside a request served by the tenanthttp middleware, a job context from
// ContextFor or the context RunInTenant gives its transaction, every
// *Context call names the tenant. Cost: one context lookup per record, and
// one copy of the record when the attribute is added.
func LogHandler(next slog.Handler) slog.Handler { return logHandler{next: next} }

type logHandler struct{ next slog.Handler }

// Enabled implements slog.Handler.
func (h logHandler) Enabled(ctx context.Context, l slog.Level) bool { return h.next.Enabled(ctx, l) }

// Handle implements slog.Handler.
func (h logHandler) Handle(ctx context.Context, r slog.Record) error {
	if name, ok := FromContext(ctx); ok && !hasAttr(r, LogKey) {
		r = r.Clone() // a record may be shared with other handlers
		r.AddAttrs(slog.String(LogKey, name))
	}
	return h.next.Handle(ctx, r)
}

// WithAttrs implements slog.Handler.
func (h logHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return logHandler{next: h.next.WithAttrs(as)}
}

// WithGroup implements slog.Handler.
func (h logHandler) WithGroup(name string) slog.Handler {
	return logHandler{next: h.next.WithGroup(name)}
}

func hasAttr(r slog.Record, key string) bool {
	found := false
	r.Attrs(func(a slog.Attr) bool {
		found = a.Key == key
		return !found
	})
	return found
}

// Logger wraps a GORM logger (gorm.Config.Logger) so that what it writes
// names the tenant of each statement, read from the statement's context:
// the SQL of a traced statement, and the message of Info, Warn and Error,
// start with [tenant=NAME] ([tenant=(shared)] for SharedOnly; nothing for a
// context without a tenant). It passes everything else through: log levels,
// the slow-query threshold, ParameterizedQueries (GORM asks the logger it
// holds, this one, to filter parameters, and it asks next), and the caller's
// file and line (see gormlogger.gen.go).
//
//	db, err := gorm.Open(tenantplugin.Open(dsn), &gorm.Config{
//		Logger: tenantplugin.Logger(logger.Default.LogMode(logger.Warn)),
//	})
//	// 2025/01/02 15:04:05 /app/polls.go:42 SLOW SQL >= 200ms
//	// [212.410ms] [rows:1] [tenant=thor] SELECT * FROM "thor"."polls" ...
//
// With GORM's slog logger (logger.NewSlogLogger) over a LogHandler, records
// already carry tenant=NAME as an attribute; wrapping it as well adds the
// prefix to the sql attribute too.
func Logger(next logger.Interface) logger.Interface { return gormLogger{next: next} }

type gormLogger struct{ next logger.Interface }

// LogMode implements logger.Interface.
func (l gormLogger) LogMode(level logger.LogLevel) logger.Interface {
	return gormLogger{next: l.next.LogMode(level)}
}

// ParamsFilter implements gorm.ParamsFilter by asking the wrapped logger,
// so that its ParameterizedQueries setting (which keeps parameter values,
// secrets among them, out of the log) still holds.
func (l gormLogger) ParamsFilter(ctx context.Context, sql string, params ...any) (string, []any) {
	if f, ok := l.next.(gorm.ParamsFilter); ok {
		return f.ParamsFilter(ctx, sql, params...)
	}
	return sql, params
}

// logPrefix is "[tenant=NAME] " for ctx's tenant, or "".
func logPrefix(ctx context.Context) string {
	v := valueFrom(ctx)
	if v == nil || v.err != nil {
		return ""
	}
	return "[tenant=" + v.label() + "] "
}
