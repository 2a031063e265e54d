package httpapi_test

import (
	"context"
	"encoding/json"
	"os"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"

	"beaconvend/app-protocol/phoneapi"
	pb "beaconvend/app-protocol/provision"
	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/httpapi"
	"beaconvend/cloud/service"
)

// operatorSchemas maps each Operator… schema of openapi.yaml to its Go type.
var operatorSchemas = map[string]any{
	"OperatorLogInRequest": httpapi.OperatorLogInRequest{}, "OperatorToken": httpapi.OperatorToken{},
	"OperatorPasswordRequest": httpapi.OperatorPasswordRequest{}, "OperatorPasswordChanged": httpapi.OperatorPasswordChanged{},
	"OperatorSlot": httpapi.OperatorSlot{}, "OperatorMachine": httpapi.OperatorMachine{}, "OperatorDevice": httpapi.OperatorDevice{},
	"OperatorDeviceList": httpapi.OperatorDeviceList{}, "OperatorPriceRequest": httpapi.OperatorPriceRequest{},
	"OperatorWebCheckoutRequest": httpapi.OperatorWebCheckoutRequest{}, "OperatorWebCheckout": httpapi.OperatorWebCheckout{},
	"OperatorClaimRequest": httpapi.OperatorClaimRequest{}, "OperatorClaimed": httpapi.OperatorClaimed{},
	"OperatorRelayAlwaysRequest": httpapi.OperatorRelayAlwaysRequest{}, "OperatorRelayAlways": httpapi.OperatorRelayAlways{},
	"OperatorSession": httpapi.OperatorSession{}, "OperatorSessionPage": httpapi.OperatorSessionPage{},
	"OperatorSessionList": httpapi.OperatorSessionList{}, "OperatorSettleRequest": httpapi.OperatorSettleRequest{},
	"OperatorVoidRequest": httpapi.OperatorVoidRequest{}, "OperatorGrant": httpapi.OperatorGrant{},
	"OperatorUsageReport": httpapi.OperatorUsageReport{}, "OperatorSessionEvent": httpapi.OperatorSessionEvent{},
	"OperatorCheckoutRef": httpapi.OperatorCheckoutRef{}, "OperatorRefund": httpapi.OperatorRefund{},
	"OperatorApproval": httpapi.OperatorApproval{}, "OperatorApprovalList": httpapi.OperatorApprovalList{},
	"OperatorSessionDetail": httpapi.OperatorSessionDetail{}, "OperatorRefundRequest": httpapi.OperatorRefundRequest{},
	"OperatorSessionRefund": service.SessionRefund{}, "OperatorRefundReviewRequest": httpapi.OperatorRefundReviewRequest{},
	"OperatorRefundPlannedPart": httpapi.OperatorRefundPlannedPart{}, "OperatorRefundReview": httpapi.OperatorRefundReview{},
	"OperatorDecision": httpapi.OperatorDecision{}, "OperatorRefundThreshold": httpapi.OperatorRefundThreshold{},
	"OperatorRevenue": httpapi.OperatorRevenue{}, "OperatorRevenueList": httpapi.OperatorRevenueList{},
	"OperatorRevenueLine": httpapi.OperatorRevenueLine{}, "OperatorRevenueReport": httpapi.OperatorRevenueReport{},
	"OperatorAlert": httpapi.OperatorAlert{}, "OperatorAlertDelivery": httpapi.OperatorAlertDelivery{},
	"OperatorAlertPage": httpapi.OperatorAlertPage{}, "OperatorAlertSettings": httpapi.OperatorAlertSettings{},
	"OperatorCommandReply": httpapi.OperatorCommandReply{}, "OperatorTestOutputRequest": httpapi.OperatorTestOutputRequest{},
	"OperatorRebootRequest": httpapi.OperatorRebootRequest{}, "OperatorAddDeviceRequest": httpapi.OperatorAddDeviceRequest{},
	"OperatorProvisionSlot": pb.Slot{}, "OperatorProvisioned": httpapi.OperatorProvisioned{},
	"OperatorRestockRequest": httpapi.OperatorRestockRequest{}, "OperatorSlotStock": httpapi.OperatorSlotStock{},
	"OperatorInventory": httpapi.OperatorInventory{},
}

// sharedSchemas are the phone API's schemas the operator API uses, with
// their Go types.
var sharedSchemas = map[string]reflect.Type{
	"Amount": reflect.TypeFor[vend.Amount](), "Price": reflect.TypeFor[vend.Price](), "Currency": reflect.TypeFor[vend.Currency](),
	"Unit": reflect.TypeFor[vend.Unit](), "Outcome": reflect.TypeFor[vend.Outcome](), "SessionID": reflect.TypeFor[vend.SessionID](),
	"RefundPart": reflect.TypeFor[phoneapi.RefundPart](),
}

// TestOperatorRoutesAreInTheSpec reads every operator route the server
// registers (the HandleFunc patterns of this package's sources) and
// requires each in openapi.yaml with the tag operator, and each operator
// path of the spec to be a route.
func TestOperatorRoutesAreInTheSpec(t *testing.T) {
	doc := loadSpec(t)
	pat := regexp.MustCompile(`HandleFunc\("([A-Z]+) (/v1/operator/[^"]*)"`)
	files, _ := os.ReadDir(".")
	routes := map[string]bool{}
	for _, f := range files {
		if !strings.HasSuffix(f.Name(), ".go") || strings.HasSuffix(f.Name(), "_test.go") {
			continue
		}
		b, err := os.ReadFile(f.Name())
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range pat.FindAllStringSubmatch(string(b), -1) {
			routes[m[1]+" "+m[2]] = true
		}
	}
	if len(routes) < 20 {
		t.Fatalf("found %d operator routes in the sources; the pattern no longer matches how routes are registered", len(routes))
	}
	spec := map[string]bool{}
	for path, item := range doc.Paths.Map() {
		if !strings.HasPrefix(path, "/v1/operator/") {
			continue
		}
		for method, op := range item.Operations() {
			spec[method+" "+path] = true
			if !slices.Contains(op.Tags, "operator") {
				t.Errorf("%s %s: not tagged operator", method, path)
			}
			if !strings.HasPrefix(op.OperationID, "Operator") {
				t.Errorf("%s %s: operationId %q does not start with Operator", method, path, op.OperationID)
			}
		}
	}
	for _, r := range sortedSet(routes) {
		if !spec[r] {
			t.Errorf("route %s is not in openapi.yaml", r)
		}
	}
	for _, r := range sortedSet(spec) {
		if !routes[r] {
			t.Errorf("openapi.yaml has %s, which the server does not route", r)
		}
	}
}

func sortedSet(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// TestOperatorSchemasMatchGoTypes compares each Operator… schema's
// properties and required list with its Go type's JSON fields, both ways,
// and each property's type with the field's.
func TestOperatorSchemasMatchGoTypes(t *testing.T) {
	doc := loadSpec(t)
	for name, sr := range doc.Components.Schemas {
		if !strings.HasPrefix(name, "Operator") {
			continue
		}
		gv, ok := operatorSchemas[name]
		if !ok {
			t.Errorf("schema %s has no Go type in operatorSchemas", name)
			continue
		}
		gt := reflect.TypeOf(gv)
		s := sr.Value
		fields := map[string]reflect.StructField{}
		optional := map[string]bool{}
		for f := range gt.Fields() {
			tag := f.Tag.Get("json")
			n, opts, _ := strings.Cut(tag, ",")
			if n == "" || n == "-" {
				continue
			}
			fields[n] = f
			optional[n] = strings.Contains(opts, "omitempty") || strings.Contains(opts, "omitzero")
		}
		for p, ps := range s.Properties {
			f, ok := fields[p]
			if !ok {
				t.Errorf("%s.%s: in the spec, not in %s", name, p, gt)
				continue
			}
			if why := goTypeFits(ps, f.Type); why != "" {
				t.Errorf("%s.%s: %s", name, p, why)
			}
		}
		for n := range fields {
			if _, ok := s.Properties[n]; !ok {
				t.Errorf("%s: Go field %s is not in the spec", name, n)
			}
			if req := slices.Contains(s.Required, n); req == optional[n] {
				t.Errorf("%s.%s: required in the spec %v, omitted when empty in Go %v", name, n, req, optional[n])
			}
		}
	}
	for name := range operatorSchemas {
		if _, ok := doc.Components.Schemas[name]; !ok {
			t.Errorf("operatorSchemas[%s] is not in openapi.yaml", name)
		}
	}
}

func goTypeFits(sr *openapi3.SchemaRef, gt reflect.Type) string {
	if gt.Kind() == reflect.Pointer {
		gt = gt.Elem()
	}
	if i := strings.LastIndex(sr.Ref, "/"); i >= 0 {
		n := sr.Ref[i+1:]
		if want, ok := sharedSchemas[n]; ok {
			if gt != want {
				return "Go " + gt.String() + ", spec " + n
			}
			return ""
		}
		if want, ok := operatorSchemas[n]; ok && reflect.TypeOf(want) != gt {
			return "Go " + gt.String() + ", spec " + n
		}
		return ""
	}
	s := sr.Value
	switch {
	case s.Type.Is("array"):
		if gt.Kind() != reflect.Slice {
			return "array in the spec, " + gt.String() + " in Go"
		}
		return goTypeFits(s.Items, gt.Elem())
	case s.Type.Is("string") && s.Format == "date-time":
		if gt != reflect.TypeFor[time.Time]() {
			return "date-time in the spec, " + gt.String() + " in Go"
		}
	case s.Type.Is("string"):
		if gt.Kind() != reflect.String && !(gt.Kind() == reflect.Slice && gt.Elem().Kind() == reflect.Uint8) {
			return "string in the spec, " + gt.String() + " in Go"
		}
	case s.Type.Is("integer"):
		switch gt.Kind() {
		case reflect.Int, reflect.Int64, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		default:
			return "integer in the spec, " + gt.String() + " in Go"
		}
	case s.Type.Is("boolean"):
		if gt.Kind() != reflect.Bool {
			return "boolean in the spec, " + gt.String() + " in Go"
		}
	case s.Type.Is("object"):
		if gt.Kind() != reflect.Map && gt != reflect.TypeFor[json.RawMessage]() {
			return "object in the spec, " + gt.String() + " in Go"
		}
	}
	return ""
}

// TestOperatorExamples decodes each JSON example of an operator operation
// into its schema's Go type and validates it against the schema.
func TestOperatorExamples(t *testing.T) {
	doc := loadSpec(t)
	for path, item := range doc.Paths.Map() {
		if !strings.HasPrefix(path, "/v1/operator/") {
			continue
		}
		for method, op := range item.Operations() {
			var mts []*openapi3.MediaType
			if op.RequestBody != nil {
				mts = append(mts, op.RequestBody.Value.Content.Get("application/json"))
			}
			for _, r := range op.Responses.Map() {
				mts = append(mts, r.Value.Content.Get("application/json"))
			}
			for _, mt := range mts {
				if mt == nil || mt.Example == nil {
					continue
				}
				where := method + " " + path
				if err := mt.Schema.Value.VisitJSON(mt.Example, openapi3.EnableJSONSchema2020()); err != nil {
					t.Errorf("%s: example fails its schema: %v", where, err)
				}
				name := mt.Schema.Ref[strings.LastIndex(mt.Schema.Ref, "/")+1:]
				gv, ok := operatorSchemas[name]
				if !ok {
					continue
				}
				b, _ := json.Marshal(mt.Example)
				ptr := reflect.New(reflect.TypeOf(gv))
				dec := json.NewDecoder(strings.NewReader(string(b)))
				dec.DisallowUnknownFields()
				if err := dec.Decode(ptr.Interface()); err != nil {
					t.Errorf("%s: example does not decode into %s: %v", where, reflect.TypeOf(gv), err)
				}
			}
		}
	}
	_ = context.Background
}
