package broker_test

import (
	"context"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"beaconvend/app-protocol/mqttapi"
	"beaconvend/app-protocol/vend"
	"beaconvend/cloud/broker"
	"beaconvend/cloud/broker/brokertest"
)

// operators is a hand-written broker.OperatorAccounts: op_1 owns dev-a,
// op_2 owns dev-b; only op_1 has an account.
type operators struct {
	hash string
}

var _ broker.OperatorAccounts = (*operators)(nil)

var owners = map[string]string{devA: "op_1", devB: "op_2", "dev-off": "op_1"}

func (o *operators) BrokerAccountHash(_ context.Context, op string) (string, error) {
	if op != "op_1" {
		return "", vend.Errorf(broker.ErrUnknown, "%s", op)
	}
	return o.hash, nil
}

func (o *operators) DeviceOperator(_ context.Context, dev string) (string, error) {
	if op, ok := owners[dev]; ok {
		return op, nil
	}
	return "", vend.Errorf(broker.ErrUnknown, "%s", dev)
}

const opPassword = "operator-broker-password"

func newOperators(t *testing.T) *operators {
	h, err := broker.HashPassword(opPassword)
	if err != nil {
		t.Fatal(err)
	}
	return &operators{hash: h}
}

// operatorSuite: an operator's read-only account reads its own devices'
// state, telemetry and events, through a wildcard or by name, and nothing
// of another operator's devices; it cannot publish anything, read
// commands or usage, nor connect with a device's client id or a wrong
// password.
func operatorSuite(t *testing.T, srv brokertest.Server, acc *brokertest.Accounts) {
	user := broker.OperatorUser("op_1")
	url := srv.URL()
	for name, o := range map[string]*paho.ClientOptions{
		"wrong password":           brokertest.ClientOptions(url, "_op_1-x", user, "wrong", nil),
		"operator without account": brokertest.ClientOptions(url, "_op_2-x", broker.OperatorUser("op_2"), opPassword, nil),
	} {
		if _, err := brokertest.Connect(t, o); err == nil {
			t.Errorf("%s: connected", name)
		}
	}
	if srv.Name() == "embedded" {
		// Mosquitto 2.0 does not tie client ids to usernames (doc.go).
		if _, err := brokertest.Connect(t, brokertest.ClientOptions(url, devA, user, opPassword, nil)); err == nil {
			t.Error("operator connected with a device's client id")
		}
	}
	rec := newRecorder()
	op := brokertest.MustConnect(t, brokertest.ClientOptions(url, "_op_1-sub", user, opPassword, nil))
	for _, f := range []string{"bv/v1/dev/+/telemetry", topic(devA, mqttapi.LeafState), topic(devA, mqttapi.LeafEvt),
		topic(devB, mqttapi.LeafTelemetry), topic(devB, mqttapi.LeafEvt), topic(devA, mqttapi.LeafCmd), topic(devA, mqttapi.LeafUsage),
		"bv/v1/dev/#", "#"} {
		_ = brokertest.Done(op.Subscribe(f, 1, rec.handle)) // refusals show in what is delivered
	}
	a := brokertest.MustConnect(t, deviceOpts(srv, acc, devA))
	b := brokertest.MustConnect(t, deviceOpts(srv, acc, devB))
	cloud := brokertest.MustConnect(t, cloudOpts(url, acc, "_cloud-op"))
	cloudRec := newRecorder()
	if err := brokertest.Done(cloud.Subscribe("bv/v1/dev/+/evt", 1, cloudRec.handle)); err != nil {
		t.Fatal(err)
	}
	aCmd := newRecorder()
	if err := brokertest.Done(a.Subscribe(topic(devA, mqttapi.LeafCmd), 1, aCmd.handle)); err != nil {
		t.Fatal(err)
	}
	pub := func(c paho.Client, dev string, l mqttapi.Leaf, p string) {
		t.Helper()
		if err := brokertest.Done(c.Publish(topic(dev, l), 1, false, p)); err != nil {
			t.Fatalf("publish %s: %v", p, err)
		}
	}
	pub(b, devB, mqttapi.LeafTelemetry, "b-telemetry")
	pub(b, devB, mqttapi.LeafEvt, "b-evt")
	pub(a, devA, mqttapi.LeafUsage, "a-usage")
	pub(cloud, devA, mqttapi.LeafCmd, "cloud-cmd")
	pub(a, devA, mqttapi.LeafTelemetry, "a-telemetry")
	pub(a, devA, mqttapi.LeafEvt, "a-evt")
	rec.waitFor(t, "operator", "a-telemetry")
	rec.waitFor(t, "operator", "a-evt")
	aCmd.waitFor(t, "device A", "cloud-cmd")

	// The operator publishes: its own device's cmd and evt, another's
	// evt, its own username's subtree. Mosquitto drops them; the
	// embedded broker disconnects the client at the first.
	for _, tp := range []string{topic(devA, mqttapi.LeafCmd), topic(devA, mqttapi.LeafEvt), topic(devB, mqttapi.LeafEvt), "bv/v1/dev/" + user + "/evt"} {
		_ = brokertest.Done(op.Publish(tp, 1, false, "forged-by-operator"))
	}
	pub(a, devA, mqttapi.LeafEvt, "a-evt-2")
	cloudRec.waitFor(t, "cloud", "a-evt-2")
	time.Sleep(200 * time.Millisecond)
	for _, m := range append(append(rec.all(), cloudRec.all()...), aCmd.all()...) {
		if strings.Contains(m, "forged-by-operator") {
			t.Errorf("a publish of the operator account was delivered: %s", m)
		}
	}
	for _, m := range rec.all() {
		if strings.Contains(m, "b-") || strings.Contains(m, "usage") || strings.Contains(m, "cmd") {
			t.Errorf("the operator account read %q", m)
		}
	}
}

func TestEmbeddedOperatorAccount(t *testing.T) {
	acc := newAccounts(t)
	srv := brokertest.NewEmbedded(t, acc, broker.Options{Operators: newOperators(t)})
	operatorSuite(t, srv, acc)
}

func TestMosquittoOperatorAccount(t *testing.T) {
	acc := newAccounts(t)
	ops := newOperators(t)
	srv := brokertest.NewMosquitto(t, acc, brokertest.MosquittoOptions{Operators: []brokertest.MosquittoOperator{
		{ACL: broker.OperatorACL{User: broker.OperatorUser("op_1"), Devices: []string{devA, "dev-off"}}, Hash: ops.hash},
	}})
	operatorSuite(t, srv, acc)
}

// Without Operators the embedded broker refuses operator usernames.
func TestEmbeddedOperatorAccountsOff(t *testing.T) {
	acc := newAccounts(t)
	srv := brokertest.NewEmbedded(t, acc, broker.Options{})
	if _, err := brokertest.Connect(t, brokertest.ClientOptions(srv.URL(), "_op_1-x", broker.OperatorUser("op_1"), opPassword, nil)); err == nil {
		t.Error("operator account admitted by a broker without Options.Operators")
	}
}
