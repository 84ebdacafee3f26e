package notes

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/gorm-tenancy/tenantplugin/tenanttest"
)

// CheckIsolation drives a notes API (POST /notes {"text": ...} answers 201
// with the note, GET /notes 200 with the tenant's notes) served at url,
// over HTTP, for tenants a and b, whose requests carry their tenant as
// their options say: each tenant sees exactly its own notes, and the
// requests unknown builds (for a tenant that does not exist) get 404.
func CheckIsolation(t *testing.T, url string, a, b *tenanttest.Tenant, unknown ...func() *http.Request) {
	t.Helper()
	do := func(tn *tenanttest.Tenant, method, body string) (int, string) {
		t.Helper()
		var rd io.Reader
		if body != "" {
			rd = strings.NewReader(body)
		}
		req, err := tn.NewClientRequest(method, url+"/notes", rd)
		if err != nil {
			t.Fatal(err)
		}
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		return send(t, req)
	}
	texts := func(tn *tenanttest.Tenant) []string {
		t.Helper()
		code, body := do(tn, "GET", "")
		if code != http.StatusOK {
			t.Fatalf("GET /notes as %s: %d %s", tn.Name, code, body)
		}
		var notes []Note
		if err := json.Unmarshal([]byte(body), &notes); err != nil {
			t.Fatalf("GET /notes as %s: %v: %s", tn.Name, err, body)
		}
		out := []string{}
		for _, n := range notes {
			out = append(out, n.Text)
		}
		return out
	}
	post := func(tn *tenanttest.Tenant, text string) {
		t.Helper()
		if code, body := do(tn, "POST", `{"text":"`+text+`"}`); code != http.StatusCreated || !strings.Contains(body, text) {
			t.Fatalf("POST /notes as %s: %d %s", tn.Name, code, body)
		}
	}
	equal := func(got []string, want ...string) bool {
		return strings.Join(got, ",") == strings.Join(want, ",")
	}

	post(a, "a1")
	if got := texts(a); !equal(got, "a1") {
		t.Errorf("a sees %v", got)
	}
	if got := texts(b); !equal(got) {
		t.Errorf("b sees %v before writing anything", got)
	}
	post(b, "b1")
	post(a, "a2")
	if got := texts(a); !equal(got, "a1", "a2") {
		t.Errorf("a sees %v", got)
	}
	if got := texts(b); !equal(got, "b1") {
		t.Errorf("b sees %v", got)
	}
	for _, u := range unknown {
		req := u()
		if code, body := send(t, req); code != http.StatusNotFound {
			t.Errorf("%s %s (host %s): %d %s, want 404", req.Method, req.URL, req.Host, code, body)
		}
	}
}

func send(t *testing.T, req *http.Request) (int, string) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// Request builds a client request with an explicit host.
func Request(t *testing.T, method, url, host string) func() *http.Request {
	return func() *http.Request {
		req, err := http.NewRequest(method, url, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Host = host
		return req
	}
}
