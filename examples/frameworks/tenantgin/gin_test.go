package tenantgin_test

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gin-gonic/gin"
	"github.com/gorm-tenancy/tenantplugin"
	"github.com/gorm-tenancy/tenantplugin/examples/frameworks/internal/notes"
	"github.com/gorm-tenancy/tenantplugin/examples/frameworks/tenantgin"
	"github.com/gorm-tenancy/tenantplugin/tenanthttp"
	"github.com/gorm-tenancy/tenantplugin/tenanttest"
)

var env notes.Env

func TestMain(m *testing.M) {
	gin.SetMode(gin.TestMode)
	notes.Main(m, &env)
}

// routes adds the notes API, whose handlers give c.Request.Context() to
// db.WithContext, and /notes-by-gin-context, which gives it c itself.
func routes(r *gin.Engine) *gin.Engine {
	r.GET("/notes", func(c *gin.Context) {
		list := []notes.Note{}
		if err := env.DB.WithContext(c.Request.Context()).Order("id").Find(&list).Error; err != nil {
			fail(c, err)
			return
		}
		c.JSON(http.StatusOK, list)
	})
	r.POST("/notes", func(c *gin.Context) {
		var n notes.Note
		if err := c.BindJSON(&n); err != nil {
			return
		}
		if err := env.DB.WithContext(c.Request.Context()).Create(&n).Error; err != nil {
			fail(c, err)
			return
		}
		c.JSON(http.StatusCreated, n)
	})
	r.GET("/notes-by-gin-context", func(c *gin.Context) {
		list := []notes.Note{}
		if err := env.DB.WithContext(c).Order("id").Find(&list).Error; err != nil {
			fail(c, err)
			return
		}
		c.JSON(http.StatusOK, list)
	})
	return r
}

// fail answers 418 for ErrNoTenant, so that the test tells it apart.
func fail(c *gin.Context, err error) {
	status := http.StatusInternalServerError
	if errors.Is(err, tenantplugin.ErrNoTenant) {
		status = http.StatusTeapot
	}
	c.String(status, err.Error())
}

func subdomain() tenanthttp.Option {
	return tenanthttp.WithResolvers(tenanthttp.Subdomain(notes.Base, env.Plugin.Directory()))
}

func TestGinBySubdomain(t *testing.T) {
	r := gin.New()
	r.Use(tenantgin.Middleware(subdomain()))
	srv := httptest.NewServer(routes(r))
	defer srv.Close()
	a := tenanttest.New(t, env.Migrator, tenanttest.WithSubdomain(notes.Base))
	b := tenanttest.New(t, env.Migrator, tenanttest.WithSubdomain(notes.Base))
	notes.CheckIsolation(t, srv.URL, a, b,
		notes.Request(t, "GET", srv.URL+"/notes", "nobody."+notes.Base),
		notes.Request(t, "POST", srv.URL+"/notes", "nobody."+notes.Base),
		notes.Request(t, "GET", srv.URL+"/notes", "elsewhere.example"))
}

// TestGinContextIsNotTheRequestContext is the pitfall of issue 17: a
// handler that gives the *gin.Context itself to db.WithContext (with gin's
// default, ContextWithFallback off) has no tenant. It fails closed, with
// ErrNoTenant and nothing sent, while c.Request.Context() works.
func TestGinContextIsNotTheRequestContext(t *testing.T) {
	r := gin.New()
	r.Use(tenantgin.Middleware(subdomain()))
	srv := httptest.NewServer(routes(r))
	defer srv.Close()
	a := tenanttest.New(t, env.Migrator, tenanttest.WithSubdomain(notes.Base))
	if err := a.DB().Create(&notes.Note{Text: "mine"}).Error; err != nil {
		t.Fatal(err)
	}
	get := func(path string) (int, string) {
		t.Helper()
		req, err := a.NewClientRequest("GET", srv.URL+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, string(body)
	}
	code, body := get("/notes-by-gin-context")
	if code != http.StatusTeapot || !strings.Contains(body, "no tenant in context") {
		t.Errorf("db.WithContext(c): %d %s; want ErrNoTenant", code, body)
	}
	code, body = get("/notes")
	if code != http.StatusOK || body != `[{"id":1,"text":"mine"}]` {
		t.Errorf("db.WithContext(c.Request.Context()): %d %s", code, body)
	}
}

// TestGinByPathPrefix: gin routes before its middleware runs, so a path
// prefix is resolved by wrapping the whole engine as an http.Handler.
func TestGinByPathPrefix(t *testing.T) {
	handler := tenanthttp.Middleware(tenanthttp.WithResolvers(tenanthttp.PathPrefix("/t", env.Plugin.Directory())))(routes(gin.New()))
	srv := httptest.NewServer(handler)
	defer srv.Close()
	a := tenanttest.New(t, env.Migrator, tenanttest.WithPathPrefix("/t"))
	b := tenanttest.New(t, env.Migrator, tenanttest.WithPathPrefix("/t"))
	notes.CheckIsolation(t, srv.URL, a, b,
		notes.Request(t, "GET", srv.URL+"/t/nobody/notes", "localhost"),
		notes.Request(t, "GET", srv.URL+"/notes", "localhost"))
}
