package ingest

// KillNATS closes in's NATS connection abruptly, as a crashed instance's
// would be: what it pulled and did not ack is redelivered to another
// instance of the group after AckWait.
func KillNATS(in *Ingest) {
	if nc := in.nc.Load(); nc != nil {
		nc.Close()
	}
}
