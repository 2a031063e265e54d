package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
)

// specChecker is an HTTP transport between the tests and the server that
// checks every answer to a phone API path against app-protocol/openapi.yaml:
// the status must be declared for the operation, a declared Retry-After or
// WWW-Authenticate header must be present, and a JSON body must match the
// declared schema. Paths the spec does not describe (health) pass
// unchecked.
type specChecker struct {
	t    *testing.T
	next http.RoundTripper
	ops  []specOp
}

type specOp struct {
	method string
	re     *regexp.Regexp
	path   string
	op     *openapi3.Operation
}

var (
	specOnce sync.Once
	specDoc  *openapi3.T
	specErr  error
)

func loadSpec(t *testing.T) *openapi3.T {
	t.Helper()
	specOnce.Do(func() {
		specDoc, specErr = openapi3.NewLoader().LoadFromFile("../../app-protocol/openapi.yaml")
		if specErr == nil {
			specErr = specDoc.Validate(context.Background())
		}
	})
	if specErr != nil {
		t.Fatalf("openapi.yaml: %v", specErr)
	}
	return specDoc
}

func newSpecChecker(t *testing.T) *specChecker {
	doc := loadSpec(t)
	c := &specChecker{t: t, next: http.DefaultTransport}
	param := regexp.MustCompile(`\{[^}]+\}`)
	for path, item := range doc.Paths.Map() {
		re := regexp.MustCompile("^" + param.ReplaceAllString(path, "[^/]+") + "$")
		for method, op := range item.Operations() {
			c.ops = append(c.ops, specOp{method: method, re: re, path: path, op: op})
		}
	}
	return c
}

// find returns the operation of method and path; of several that match
// (/sessions/unreported and /sessions/{session}), the one with the fewest
// parameters.
func (c *specChecker) find(method, path string) *specOp {
	var best *specOp
	for i := range c.ops {
		if c.ops[i].method == method && c.ops[i].re.MatchString(path) &&
			(best == nil || strings.Count(c.ops[i].path, "{") < strings.Count(best.path, "{")) {
			best = &c.ops[i]
		}
	}
	return best
}

// answered holds the operationId of every operation a specChecker saw
// answered with a 2xx status, across the package's tests.
var answered sync.Map

// TestMain runs the package's tests, then, when all of them ran (no -run
// filter), fails if an operation of the operator API (tag operator) was
// never answered with a 2xx through a specChecker: every route the spec
// documents is exercised and its answer checked against it.
func TestMain(m *testing.M) {
	code := m.Run()
	if f := flag.Lookup("test.run"); code == 0 && f != nil && f.Value.String() == "" && !testing.Short() {
		doc, err := openapi3.NewLoader().LoadFromFile("../../app-protocol/openapi.yaml")
		if err != nil {
			fmt.Fprintln(os.Stderr, "openapi.yaml:", err)
			os.Exit(1)
		}
		var missing []string
		for path, item := range doc.Paths.Map() {
			for method, op := range item.Operations() {
				if !slices.Contains(op.Tags, "operator") {
					continue
				}
				if _, ok := answered.Load(op.OperationID); !ok {
					missing = append(missing, fmt.Sprintf("%s (%s %s)", op.OperationID, method, path))
				}
			}
		}
		if len(missing) > 0 {
			sort.Strings(missing)
			fmt.Fprintf(os.Stderr, "FAIL: operator operations never answered 2xx through the spec checker:\n  %s\n", strings.Join(missing, "\n  "))
			code = 1
		}
	}
	os.Exit(code)
}

func (c *specChecker) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := c.next.RoundTrip(req)
	if err != nil {
		return resp, err
	}
	o := c.find(req.Method, req.URL.Path)
	if o == nil {
		return resp, nil
	}
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		answered.Store(o.op.OperationID, true)
	}
	where := fmt.Sprintf("%s %s (%s) answered %d", req.Method, req.URL.Path, o.op.OperationID, resp.StatusCode)
	ref := o.op.Responses.Value(strconv.Itoa(resp.StatusCode))
	if ref == nil {
		c.t.Errorf("spec: %s: status not declared", where)
		return resp, nil
	}
	for name, h := range ref.Value.Headers {
		if h.Value != nil && h.Value.Required && resp.Header.Get(name) == "" {
			c.t.Errorf("spec: %s: required header %s missing", where, name)
		}
	}
	if !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		return resp, nil
	}
	mt := ref.Value.Content.Get("application/json")
	if mt == nil {
		c.t.Errorf("spec: %s: JSON body not declared", where)
		return resp, nil
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	resp.Body = io.NopCloser(bytes.NewReader(b))
	if err != nil {
		return resp, nil
	}
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		c.t.Errorf("spec: %s: body is not JSON: %v", where, err)
		return resp, nil
	}
	if err := mt.Schema.Value.VisitJSON(v, openapi3.EnableJSONSchema2020()); err != nil {
		c.t.Errorf("spec: %s: body %s fails the schema: %v", where, b, err)
	}
	return resp, nil
}
