// Package modem monitors a cellular modem over its AT command port, for
// telemetry: signal, registration, operator, access technology and the
// modem's and SIM's identities. It never dials and never touches the data
// path, which runs through the operating system (PPP or QMI/MBIM on another
// interface of the modem); the controller publishes [Status] with its
// periodic MQTT telemetry so an operator can tell "no coverage" from "board
// down".
//
// # What it sends
//
// On start, after a reopen and after recovering from failures (the modem
// may have rebooted), unless Opts.NoSetup:
//
//	ATE0          echo off (echo is still tolerated: a modem that rebooted has it on)
//	AT+CREG=2     registration URCs with location (TS 27.007 §7.2); ERROR ignored
//	AT+CEREG=2    EPS registration URCs with location (TS 27.007 §10.1.22); ERROR ignored
//
// Every Opts.Interval (default 30 s):
//
//	AT+CSQ        signal quality (§8.5): rssi 0-31 → -113+2n dBm, 99 unknown; ber 0-7
//	AT+CESQ       extended signal quality (§8.69): rxlev, ber, rscp, ecno, rsrq, rsrp;
//	              a modem that answers ERROR is not asked again
//	AT+CREG?      CS registration (§7.2)
//	AT+CEREG?     EPS (LTE, Cat-M, NB-IoT) registration (§10.1.22); not asked again after ERROR
//	AT+COPS?      operator and access technology (§7.3)
//
// Until known (and again after a reopen or a recovery):
//
//	AT+CGSN                        IMEI (§5.4; 15 digits, Luhn check per TS 23.003 §6.2.1)
//	AT+CCID / AT+ICCID / AT+QCCID  SIM ICCID (vendor commands, tried in that order;
//	                               19-20 digits beginning 89, an F filler is removed)
//
// Each command waits up to Opts.Timeout (default 2 s) for its final result
// code. A poll succeeds when AT+CSQ is answered; failures of the other
// queries are logged and keep the previous values.
//
// # Parsing
//
// [Splitter] cuts the byte stream into lines at CR or LF in any mix, drops
// empty lines and bytes outside printable ASCII (line noise), and discards
// lines longer than [MaxLineLen] without buffering them. [Collector] sorts
// the lines after a command: its echo (ATE1) is skipped; a final result
// code (OK, ERROR, +CME ERROR: n, +CMS ERROR: n, and the V.250 call results)
// ends the response; lines with the command's own prefix ("+CSQ:" for
// AT+CSQ) are information; other lines are unsolicited (for commands
// without a prefix, such as AT+CGSN, only lines that look unsolicited:
// +XXX:, ^XXX:, RING, RDY...). A response keeps at most [MaxResponseLines]
// lines and [MaxResponseBytes] bytes. [ParseResponse] and [ReadResponse] do
// all this over a []byte or an io.Reader, so replies are tested anywhere.
//
// The value parsers ([ParseCSQ], [ParseCESQ], [ParseRegistration],
// [ParseCOPS], [ParseIMEI], [ParseICCID]) take one line and return ErrSyntax,
// ErrRange, ErrIMEI or ErrICCID (all vend.Invalid) for anything the
// standard does not allow; they never panic.
//
// # Unsolicited result codes
//
// URCs can arrive at any time: between polls (a reader goroutine hands
// every line to Run, which applies it at once) and in the middle of another
// command's response (the collector sets them aside and they are applied
// when the command ends). +CREG, +CGREG, +CEREG and +C5GREG lines, query
// or URC form, update the registration; all others (RING, +CMTI, ^SYSINFO,
// RDY, +CPIN: READY...) are logged at debug level and ignored. Lines that
// arrive before a command is sent (a late reply to a command that timed
// out) are treated as URCs, so a late reply is never taken for the answer
// to the next command.
//
// # Status
//
// Registration is the best of the last +CREG and +CEREG reports (an LTE-only
// or NB-IoT modem may be registered in EPS but not in CS): home or roaming,
// then searching, denied, not_registered, unknown. Tech comes from the
// registration's <AcT> or +COPS?, and is empty unless registered. OK is true
// when the last poll was answered; when the modem stops answering, OK turns
// false, Failures counts consecutive failed polls, Err says why, and the
// values (with Updated, the time of the last good poll) go stale rather
// than being cleared.
//
// # Failures and reopening
//
// A Monitor made by [Open] owns the device path: after Opts.ReopenAfter
// (default 3) failed polls in a row, and whenever a read fails (a USB modem
// that re-enumerated, a closed pty), it closes the port and opens the path
// again at the next poll, counting Status.Reopens. A Monitor made by [New]
// cannot reopen its port; it keeps polling and counting failures until
// Close. Neither ever panics on modem input or gives up while running.
//
// # Limits
//
// One command is in flight at a time; commands that expect a prompt (SMS)
// or a data mode (ATD) are not supported. Operator names are reduced to
// printable ASCII (set the modem's character set to IRA or GSM). The
// monitor shares the AT port with nobody: if ModemManager or a chat script
// uses the same port, give the monitor another of the modem's AT ports.
//
// References: 3GPP TS 27.007 (AT command set for User Equipment), ITU-T
// V.250 (result codes, echo, S3/S4 line endings), 3GPP TS 23.003 (IMEI),
// ITU-T E.118 (ICCID).
package modem
