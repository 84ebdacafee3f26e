package tenantplugin

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"math"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
)

// A raw query routed outside the caller's transaction reads its rows from a
// connection the library holds (pipeline.go) or from a transaction the
// library opened (searchpath.go); either must be released when the caller
// is done with the rows, and GORM wants them as *sql.Rows. A *sql.Rows can
// only come from a database/sql driver, so a tiny in-process driver hands
// out the library's own driver.Rows (pgxRows, txRows) unchanged: rows stream
// from the server one at a time, and closing them (or reading them to the
// end) ends the library's work on that connection. A caller who never closes
// them holds the connection, as with plain database/sql.

var handoffDB = sync.OnceValue(func() *sql.DB {
	db := sql.OpenDB(handoffConnector{})
	db.SetMaxIdleConns(64)
	return db
})

// asSQLRows turns rows into *sql.Rows; ctx ends them as it would end rows
// read from a *sql.DB. When database/sql refuses the handoff (ctx already
// ended), rows are closed here: they hold a connection.
func asSQLRows(ctx context.Context, rows driver.Rows) (*sql.Rows, error) {
	out, err := handoffDB().QueryContext(ctx, "handoff", rows)
	if err != nil {
		rows.Close()
		return nil, err
	}
	return out, nil
}

// asSQLRow is asSQLRows for QueryRow: err, if not nil, is the row's error.
func asSQLRow(ctx context.Context, rows driver.Rows, err error) *sql.Row {
	if err != nil {
		return handoffDB().QueryRowContext(ctx, "handoff", err)
	}
	row := handoffDB().QueryRowContext(ctx, "handoff", rows)
	if row.Err() != nil {
		rows.Close()
	}
	return row
}

type handoffConnector struct{}

func (handoffConnector) Connect(context.Context) (driver.Conn, error) { return handoffConn{}, nil }
func (handoffConnector) Driver() driver.Driver                        { return handoffDriver{} }

type handoffDriver struct{}

func (handoffDriver) Open(string) (driver.Conn, error) { return handoffConn{}, nil }

type handoffConn struct{}

func (handoffConn) Prepare(string) (driver.Stmt, error) { return nil, errHandoffOnly }
func (handoffConn) Close() error                        { return nil }
func (handoffConn) Begin() (driver.Tx, error)           { return nil, errHandoffOnly }

// CheckNamedValue lets the driver.Rows (or error) argument through unconverted.
func (handoffConn) CheckNamedValue(*driver.NamedValue) error { return nil }

func (handoffConn) QueryContext(_ context.Context, _ string, args []driver.NamedValue) (driver.Rows, error) {
	if len(args) == 1 {
		switch v := args[0].Value.(type) {
		case driver.Rows:
			return v, nil
		case error:
			return nil, v
		}
	}
	return nil, errHandoffOnly
}

// pgxRows streams the rows of one result of a pipeline (pipeline.go) and
// converts each value as pgx's database/sql driver (stdlib) does, so that
// scanning them behaves as scanning rows from a *sql.DB. The first row is
// already read (first tells whether there is one). release runs once, when
// the rows are closed or read to the end, with the result's command tag and
// its first error.
type pgxRows struct {
	m       *pgtype.Map
	rr      *pgconn.ResultReader
	fields  []pgconn.FieldDescription
	values  []rowValueFunc
	cols    []string
	release func(pgconn.CommandTag, error) error
	first   bool // the first row is read and not yet returned
	done    bool
	err     error
}

type rowValueFunc func(src []byte) (driver.Value, error)

func newPgxRows(m *pgtype.Map, rr *pgconn.ResultReader, first bool, release func(pgconn.CommandTag, error) error) *pgxRows {
	fields := rr.FieldDescriptions()
	r := &pgxRows{m: m, rr: rr, fields: fields, release: release, first: first,
		values: make([]rowValueFunc, len(fields)), cols: make([]string, len(fields))}
	for i, fd := range fields {
		r.cols[i] = fd.Name
		r.values[i] = valueFuncFor(m, fd)
	}
	if !first {
		r.Close()
	}
	return r
}

func (r *pgxRows) Columns() []string { return r.cols }

func (r *pgxRows) Next(dest []driver.Value) error {
	if r.done {
		if r.err != nil {
			return r.err
		}
		return io.EOF
	}
	if r.first {
		r.first = false
	} else if !r.rr.NextRow() {
		if err := r.Close(); err != nil {
			return err
		}
		return io.EOF
	}
	for i, raw := range r.rr.Values() {
		if raw == nil {
			dest[i] = nil
			continue
		}
		v, err := r.values[i](raw)
		if err != nil {
			return fmt.Errorf("convert field %d failed: %w", i, err)
		}
		dest[i] = v
	}
	return nil
}

// Close ends the result, reads what is left of the pipeline and releases the
// connection. It may run twice (end of rows, then database/sql's Close).
func (r *pgxRows) Close() error {
	if r.done {
		return r.err
	}
	r.done = true
	tag, err := r.rr.Close()
	r.err = r.release(tag, err)
	return r.err
}

// The column metadata follows pgx's stdlib.Rows.

func (r *pgxRows) ColumnTypeDatabaseTypeName(i int) string {
	if t, ok := r.m.TypeForOID(r.fields[i].DataTypeOID); ok {
		return strings.ToUpper(t.Name)
	}
	return strconv.FormatInt(int64(r.fields[i].DataTypeOID), 10)
}

func (r *pgxRows) ColumnTypeLength(i int) (int64, bool) {
	fd := r.fields[i]
	switch fd.DataTypeOID {
	case pgtype.TextOID, pgtype.ByteaOID:
		return math.MaxInt64, true
	case pgtype.VarcharOID, pgtype.BPCharOID:
		return int64(fd.TypeModifier - 4), true
	case pgtype.VarbitOID:
		return int64(fd.TypeModifier), true
	}
	return 0, false
}

func (r *pgxRows) ColumnTypePrecisionScale(i int) (int64, int64, bool) {
	fd := r.fields[i]
	if fd.DataTypeOID != pgtype.NumericOID {
		return 0, 0, false
	}
	mod := fd.TypeModifier - 4
	return int64((mod >> 16) & 0xffff), int64(mod & 0xffff), true
}

func (r *pgxRows) ColumnTypeScanType(i int) reflect.Type {
	switch r.fields[i].DataTypeOID {
	case pgtype.Float8OID, pgtype.NumericOID:
		return reflect.TypeFor[float64]()
	case pgtype.Float4OID:
		return reflect.TypeFor[float32]()
	case pgtype.Int8OID:
		return reflect.TypeFor[int64]()
	case pgtype.Int4OID:
		return reflect.TypeFor[int32]()
	case pgtype.Int2OID:
		return reflect.TypeFor[int16]()
	case pgtype.BoolOID:
		return reflect.TypeFor[bool]()
	case pgtype.DateOID, pgtype.TimestampOID, pgtype.TimestamptzOID:
		return reflect.TypeFor[time.Time]()
	case pgtype.ByteaOID:
		return reflect.TypeFor[[]byte]()
	}
	return reflect.TypeFor[string]()
}

// valueFuncFor converts a column's values to the driver.Value pgx's stdlib
// gives for its type (stdlib.Rows.Next): integers as int64, floats as
// float64, bytea, json and xml as []byte, dates and timestamps as time.Time
// (or their infinity strings), anything else as its text.
func valueFuncFor(m *pgtype.Map, fd pgconn.FieldDescription) rowValueFunc {
	switch fd.DataTypeOID {
	case pgtype.BoolOID:
		return scanAs(m, fd, func(d bool) (driver.Value, error) { return d, nil })
	case pgtype.ByteaOID, pgtype.JSONOID, pgtype.JSONBOID, pgtype.XMLOID:
		return scanAs(m, fd, func(d []byte) (driver.Value, error) { return d, nil })
	case pgtype.CIDOID, pgtype.OIDOID, pgtype.XIDOID:
		return scanAs(m, fd, pgtype.Uint32.Value)
	case pgtype.DateOID:
		return scanAs(m, fd, pgtype.Date.Value)
	case pgtype.Float4OID:
		return scanAs(m, fd, func(d float32) (driver.Value, error) { return float64(d), nil })
	case pgtype.Float8OID:
		return scanAs(m, fd, func(d float64) (driver.Value, error) { return d, nil })
	case pgtype.Int2OID:
		return scanAs(m, fd, func(d int16) (driver.Value, error) { return int64(d), nil })
	case pgtype.Int4OID:
		return scanAs(m, fd, func(d int32) (driver.Value, error) { return int64(d), nil })
	case pgtype.Int8OID:
		return scanAs(m, fd, func(d int64) (driver.Value, error) { return d, nil })
	case pgtype.TimestampOID:
		return scanAs(m, fd, pgtype.Timestamp.Value)
	case pgtype.TimestamptzOID:
		return scanAs(m, fd, pgtype.Timestamptz.Value)
	}
	return scanAs(m, fd, func(d string) (driver.Value, error) { return d, nil })
}

func scanAs[T any](m *pgtype.Map, fd pgconn.FieldDescription, conv func(T) (driver.Value, error)) rowValueFunc {
	var d T
	plan := m.PlanScan(fd.DataTypeOID, fd.Format, &d)
	return func(src []byte) (driver.Value, error) {
		if err := plan.Scan(src, &d); err != nil {
			return nil, err
		}
		return conv(d)
	}
}

// txRows streams the rows of a query run in a transaction the library opened
// for it (searchpath.go, on pools that are not pgx's): closing them, or
// reading them to the end, commits that transaction.
type txRows struct {
	rows   *sql.Rows
	types  []*sql.ColumnType
	cols   []string
	end    func(ok bool) error // commit (ok) or roll back
	ptrs   []any
	vals   []any
	closed bool
	err    error
}

func newTxRows(rows *sql.Rows, end func(ok bool) error) (*txRows, error) {
	cols, err := rows.Columns()
	if err == nil {
		var types []*sql.ColumnType
		if types, err = rows.ColumnTypes(); err == nil {
			r := &txRows{rows: rows, types: types, cols: cols, end: end,
				ptrs: make([]any, len(cols)), vals: make([]any, len(cols))}
			for i := range r.vals {
				r.ptrs[i] = &r.vals[i]
			}
			return r, nil
		}
	}
	rows.Close()
	return nil, errors.Join(err, end(false))
}

func (r *txRows) Columns() []string { return r.cols }

func (r *txRows) Next(dest []driver.Value) error {
	if r.closed {
		return io.EOF
	}
	if !r.rows.Next() {
		if err := r.Close(); err != nil {
			return err
		}
		return io.EOF
	}
	if err := r.rows.Scan(r.ptrs...); err != nil {
		return err
	}
	for i, v := range r.vals {
		dest[i] = v
	}
	return nil
}

func (r *txRows) Close() error {
	if r.closed {
		return r.err
	}
	r.closed = true
	err := r.rows.Close()
	if err == nil {
		err = r.rows.Err()
	}
	r.err = errors.Join(err, r.end(err == nil))
	return r.err
}

func (r *txRows) ColumnTypeScanType(i int) reflect.Type {
	if t := r.types[i].ScanType(); t != nil {
		return t
	}
	return reflect.TypeFor[any]()
}

func (r *txRows) ColumnTypeDatabaseTypeName(i int) string { return r.types[i].DatabaseTypeName() }

func (r *txRows) ColumnTypeLength(i int) (int64, bool) { return r.types[i].Length() }

func (r *txRows) ColumnTypeNullable(i int) (bool, bool) { return r.types[i].Nullable() }

func (r *txRows) ColumnTypePrecisionScale(i int) (int64, int64, bool) {
	return r.types[i].DecimalSize()
}
