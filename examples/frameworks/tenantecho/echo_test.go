package tenantecho_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/gorm-tenancy/tenantplugin/examples/frameworks/internal/notes"
	"github.com/gorm-tenancy/tenantplugin/examples/frameworks/tenantecho"
	"github.com/gorm-tenancy/tenantplugin/tenanthttp"
	"github.com/gorm-tenancy/tenantplugin/tenanttest"
	"github.com/labstack/echo/v4"
)

var env notes.Env

func TestMain(m *testing.M) { notes.Main(m, &env) }

// routes adds the notes API; handlers use c.Request().Context().
func routes(e *echo.Echo) *echo.Echo {
	e.GET("/notes", func(c echo.Context) error {
		list := []notes.Note{}
		if err := env.DB.WithContext(c.Request().Context()).Order("id").Find(&list).Error; err != nil {
			return err
		}
		return c.JSON(http.StatusOK, list)
	})
	e.POST("/notes", func(c echo.Context) error {
		var n notes.Note
		if err := c.Bind(&n); err != nil {
			return err
		}
		if err := env.DB.WithContext(c.Request().Context()).Create(&n).Error; err != nil {
			return err
		}
		return c.JSON(http.StatusCreated, n)
	})
	return e
}

func TestEchoBySubdomain(t *testing.T) {
	e := echo.New()
	e.Use(tenantecho.Middleware(tenanthttp.WithResolvers(tenanthttp.Subdomain(notes.Base, env.Plugin.Directory()))))
	srv := httptest.NewServer(routes(e))
	defer srv.Close()
	a := tenanttest.New(t, env.Migrator, tenanttest.WithSubdomain(notes.Base))
	b := tenanttest.New(t, env.Migrator, tenanttest.WithSubdomain(notes.Base))
	notes.CheckIsolation(t, srv.URL, a, b,
		notes.Request(t, "GET", srv.URL+"/notes", "nobody."+notes.Base),
		notes.Request(t, "POST", srv.URL+"/notes", "nobody."+notes.Base),
		notes.Request(t, "GET", srv.URL+"/notes", "elsewhere.example"))
}

// TestEchoByPathPrefix: e.Pre runs before echo routes, so /t/NAME/notes is
// routed as /notes.
func TestEchoByPathPrefix(t *testing.T) {
	e := echo.New()
	e.Pre(tenantecho.Middleware(tenanthttp.WithResolvers(tenanthttp.PathPrefix("/t", env.Plugin.Directory()))))
	srv := httptest.NewServer(routes(e))
	defer srv.Close()
	a := tenanttest.New(t, env.Migrator, tenanttest.WithPathPrefix("/t"))
	b := tenanttest.New(t, env.Migrator, tenanttest.WithPathPrefix("/t"))
	notes.CheckIsolation(t, srv.URL, a, b,
		notes.Request(t, "GET", srv.URL+"/t/nobody/notes", "localhost"),
		notes.Request(t, "GET", srv.URL+"/notes", "localhost"))
}
