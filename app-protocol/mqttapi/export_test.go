package mqttapi

// The strict decoders, without the fast path, as the reference for the
// differential tests.
var (
	DecodeStrict   = decodeStrict
	DecodeAsStrict = decodeAsStrict
)
