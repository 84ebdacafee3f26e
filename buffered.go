package tenantplugin

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"io"
	"reflect"
	"sync"
)

// A raw query routed by search_path outside a transaction must finish its
// transaction before GORM (or the caller of Rows) reads the rows: COMMIT would
// otherwise close them. So the rows are read into memory first, then handed
// out as *sql.Rows by this small in-process database/sql driver, which only
// replays a bufferedResult. Values are the driver's own values (as a scan into
// *any gives them), so scanning them behaves as scanning the original rows.

type bufferedResult struct {
	cols  []string
	types []*sql.ColumnType
	data  [][]driver.Value
	err   error
}

func bufferRows(rows *sql.Rows) (*bufferedResult, error) {
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return nil, err
	}
	types, err := rows.ColumnTypes()
	if err != nil {
		return nil, err
	}
	res := &bufferedResult{cols: cols, types: types}
	ptrs := make([]any, len(cols))
	for rows.Next() {
		vals := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return nil, err
		}
		row := make([]driver.Value, len(cols))
		for i, v := range vals {
			row[i] = v
		}
		res.data = append(res.data, row)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return res, rows.Close()
}

var replayDB = sync.OnceValue(func() *sql.DB {
	db := sql.OpenDB(replayConnector{})
	db.SetMaxIdleConns(64)
	return db
})

func (r *bufferedResult) rows(ctx context.Context) (*sql.Rows, error) {
	return replayDB().QueryContext(ctx, "replay", r)
}

func (r *bufferedResult) row(ctx context.Context) *sql.Row {
	return replayDB().QueryRowContext(ctx, "replay", r)
}

type replayConnector struct{}

func (replayConnector) Connect(context.Context) (driver.Conn, error) { return replayConn{}, nil }
func (replayConnector) Driver() driver.Driver                        { return replayDriver{} }

type replayDriver struct{}

func (replayDriver) Open(string) (driver.Conn, error) { return replayConn{}, nil }

var errReplayOnly = errors.New("tenantplugin: internal replay connection only replays buffered rows")

type replayConn struct{}

func (replayConn) Prepare(string) (driver.Stmt, error) { return nil, errReplayOnly }
func (replayConn) Close() error                        { return nil }
func (replayConn) Begin() (driver.Tx, error)           { return nil, errReplayOnly }

// CheckNamedValue lets the *bufferedResult argument through unconverted.
func (replayConn) CheckNamedValue(*driver.NamedValue) error { return nil }

func (replayConn) QueryContext(_ context.Context, _ string, args []driver.NamedValue) (driver.Rows, error) {
	if len(args) != 1 {
		return nil, errReplayOnly
	}
	res, ok := args[0].Value.(*bufferedResult)
	if !ok {
		return nil, errReplayOnly
	}
	if res.err != nil {
		return nil, res.err
	}
	return &replayRows{res: res}, nil
}

type replayRows struct {
	res *bufferedResult
	i   int
}

func (r *replayRows) Columns() []string { return r.res.cols }
func (r *replayRows) Close() error      { r.i = len(r.res.data); return nil }

func (r *replayRows) Next(dest []driver.Value) error {
	if r.i >= len(r.res.data) {
		return io.EOF
	}
	copy(dest, r.res.data[r.i])
	r.i++
	return nil
}

func (r *replayRows) ColumnTypeScanType(i int) reflect.Type {
	if t := r.res.types[i].ScanType(); t != nil {
		return t
	}
	return reflect.TypeFor[any]()
}

func (r *replayRows) ColumnTypeDatabaseTypeName(i int) string {
	return r.res.types[i].DatabaseTypeName()
}

func (r *replayRows) ColumnTypeLength(i int) (int64, bool) { return r.res.types[i].Length() }

func (r *replayRows) ColumnTypeNullable(i int) (bool, bool) { return r.res.types[i].Nullable() }

func (r *replayRows) ColumnTypePrecisionScale(i int) (int64, int64, bool) {
	return r.res.types[i].DecimalSize()
}
