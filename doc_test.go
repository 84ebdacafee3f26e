package tenantplugin

import (
	"go/ast"
	"go/doc"
	"go/doc/comment"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestDocReferencesResolve: every place a doc comment sends the reader
// (`package documentation of X`, `README, "X"`) exists: a heading of the
// package documentation, a heading or bold lead of README.md.
func TestDocReferencesResolve(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	readmeHas := func(x string) bool {
		for _, l := range strings.Split(string(readme), "\n") {
			if strings.HasPrefix(l, "#") && strings.TrimSpace(strings.TrimLeft(l, "#")) == x || strings.Contains(l, "**"+x+"**") {
				return true
			}
		}
		return false
	}
	for _, dir := range []string{".", "tenanthttp", "tenantcmd"} {
		pkg := parseDoc(t, dir)
		headings := map[string]bool{}
		for _, b := range pkg.Parser().Parse(pkg.Doc).Content {
			if h, ok := b.(*comment.Heading); ok {
				var text strings.Builder
				for _, x := range h.Text {
					if p, ok := x.(comment.Plain); ok {
						text.WriteString(string(p))
					}
				}
				headings[strings.ToLower(text.String())] = true
			}
		}
		pkgRef := regexp.MustCompile(`package documentation(?: of|,) "?([A-Za-z][\w -]*\w)"?`)
		readmeRef := regexp.MustCompile(`README(?: section)?, "([^"]+)"`)
		checked := 0
		for _, text := range docTexts(pkg) {
			text = strings.Join(strings.Fields(text), " ")
			for _, m := range pkgRef.FindAllStringSubmatch(text, -1) {
				checked++
				if !headings[strings.ToLower(m[1])] {
					t.Errorf("%s: a doc comment points to the package documentation's %q, which has no such heading", dir, m[1])
				}
			}
			for _, m := range readmeRef.FindAllStringSubmatch(text, -1) {
				checked++
				if !readmeHas(m[1]) {
					t.Errorf("%s: a doc comment points to README %q, which has no such heading", dir, m[1])
				}
			}
		}
		t.Logf("%s: %d references checked", dir, checked)
	}
	// WithTenantRoles answers in go doc itself.
	for _, f := range parseDoc(t, ".").Funcs {
		if f.Name == "WithTenantRoles" && !(strings.Contains(f.Doc, "CREATEROLE") && strings.Contains(f.Doc, "RESET ROLE")) {
			t.Errorf("go doc WithTenantRoles does not say what it needs and how strong it is:\n%s", f.Doc)
		}
	}
}

func parseDoc(t *testing.T, dir string) *doc.Package {
	t.Helper()
	fset := token.NewFileSet()
	paths, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	var files []*ast.File
	for _, p := range paths {
		if strings.HasSuffix(p, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, p, nil, parser.ParseComments)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	pkg, err := doc.NewFromFiles(fset, files, "example.com/"+dir)
	if err != nil {
		t.Fatal(err)
	}
	return pkg
}

// docTexts returns every doc comment of pkg.
func docTexts(pkg *doc.Package) []string {
	out := []string{pkg.Doc}
	for _, v := range append(pkg.Consts, pkg.Vars...) {
		out = append(out, v.Doc)
	}
	for _, f := range pkg.Funcs {
		out = append(out, f.Doc)
	}
	for _, typ := range pkg.Types {
		out = append(out, typ.Doc)
		for _, f := range append(typ.Funcs, typ.Methods...) {
			out = append(out, f.Doc)
		}
		for _, v := range append(typ.Consts, typ.Vars...) {
			out = append(out, v.Doc)
		}
	}
	return out
}
