// Package natsauth is the cloud's NATS auth callout responder: the
// component that admits devices, the cloud and operators' read-only
// accounts to a NATS cluster (cloud/broker/natscluster, the files of
// [broker.NATSFiles]) against the store's credentials.
//
// Every node of the cluster sends each CONNECT it has no local user for
// to $SYS.REQ.USER.AUTH; responders subscribe there in one queue group,
// so any one of them answers and the loss of a node or of a responder
// does not block connects while another runs. A response is a user JWT,
// signed with the issuer account key the nodes trust, that places the
// client in the fleet account with only its own subjects:
//
//   - a device (username = MQTT client id = device id, MQTT connections
//     only): publish on <prefix>.<id>.{state,telemetry,evt,usage,reply},
//     subscribe on <prefix>.<id>.cmd (nats-server grants the internal
//     $MQTT.sub.<nuid> deliver subjects of its QoS 1 subscriptions itself,
//     and refuses MQTT subscriptions on $MQTT/…);
//   - the cloud user: subscribe on every device's uplink leaves and
//     publish on every device's cmd, plus what a JetStream client needs
//     ($JS.API.>, $JS.ACK.>, $JS.FC.>, _INBOX.>), never a
//     device's uplink;
//   - an operator account ([broker.OperatorUser]): subscribe on its own
//     devices' [broker.OperatorLeaves], publish nothing.
//
// The subject of an MQTT topic is the topic with '/' read as '.' (NATS's
// own mapping), so a device id must hold no '.' on a NATS broker
// (cloud/provision refuses such ids when broker.kind is nats).
//
// Findings the tests keep (cloud/broker/natscluster): an MQTT
// subscription on $MQTT/… is refused by the server itself; in the moment
// after a responder is lost, a node may still route one request to it
// and that connect times out (the device retries).
package natsauth
