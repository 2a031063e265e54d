package modem

import "beaconvend/app-protocol/vend"

// Errors. Parsers return the Invalid ones wrapped with the offending line
// ("modem: bad +CSQ line: \"+CSQ: 40,0\": rssi 40 out of range"); the
// monitor records the Transient ones in [Status.Err] and retries.
var (
	// ErrSyntax: a line is not the information response it should be.
	ErrSyntax = vend.E(vend.Invalid, "modem.syntax", "modem: malformed response line")
	// ErrRange: a field is outside the range TS 27.007 allows.
	ErrRange = vend.E(vend.Invalid, "modem.range", "modem: value out of range")
	// ErrMissing: the response ended (final result code) without the expected information line.
	ErrMissing = vend.E(vend.Invalid, "modem.missing", "modem: expected information response missing")
	// ErrIMEI: the serial number is not 15 digits with a valid Luhn check digit.
	ErrIMEI = vend.E(vend.Invalid, "modem.imei", "modem: invalid imei")
	// ErrICCID: the SIM serial is not 19-20 digits starting with 89 (optionally padded with F).
	ErrICCID = vend.E(vend.Invalid, "modem.iccid", "modem: invalid iccid")
	// ErrTooLarge: a response exceeded MaxResponseLines or MaxResponseBytes.
	ErrTooLarge = vend.E(vend.Invalid, "modem.too_large", "modem: response too large")
	// ErrCommand: the command is empty, too long or contains CR/LF.
	ErrCommand = vend.E(vend.Invalid, "modem.command", "modem: invalid command")

	// ErrError: the modem answered ERROR, +CME ERROR or +CMS ERROR (see [ResultError]).
	ErrError = vend.E(vend.Transient, "modem.error", "modem: command failed")
	// ErrTimeout: no final result code within the per-command timeout.
	ErrTimeout = vend.E(vend.Transient, "modem.timeout", "modem: no response")
	// ErrIncomplete: the input ended before a final result code.
	ErrIncomplete = vend.E(vend.Transient, "modem.incomplete", "modem: response incomplete")
	// ErrClosed: the port is closed or failed (unplugged USB modem, closed pty).
	ErrClosed = vend.E(vend.Transient, "modem.closed", "modem: port closed")
)
