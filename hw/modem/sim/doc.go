// Package sim emulates a cellular modem's AT command port on a kernel
// pseudo-terminal (hw/pty), so the modem monitor (hw/modem) and the board
// emulator's tools run against real serial code without hardware.
//
// [New] allocates the pty and answers on its master end; a driver opens
// [Modem.Path] (/dev/pts/N) as it would /dev/ttyUSB2. Commands end with CR
// (LF is ignored); replies are framed as a real modem in verbose mode frames
// them ("\r\n+CSQ: 20,0\r\n\r\nOK\r\n"); the command is echoed while echo is on
// (the default, as after a modem's power-up). Answered commands:
//
//	AT, ATE0, ATE1, ATI
//	AT+CSQ, AT+CESQ                  signal (TS 27.007 §8.5, §8.69); +CESQ derived from the rssi
//	AT+CREG?, AT+CEREG?              registration (§7.2, §10.1.22)
//	AT+CREG=n, AT+CEREG=n (n 0-2)    enable URCs, with location when n=2
//	AT+COPS?                         operator, long alphanumeric format, with AcT (§7.3)
//	AT+CGSN, AT+GSN                  IMEI
//	AT+CCID, AT+ICCID, AT+QCCID      ICCID in the three vendors' formats
//	AT+CPIN?                         +CPIN: READY
//
// Anything else answers ERROR. Registration changes made through the
// runtime controls send +CREG/+CEREG URCs when the driver enabled them.
//
// The runtime controls ([Modem.SetSignal], [Modem.LoseSignal],
// [Modem.Register], [Modem.Deny], [Modem.Garbage], [Modem.URC],
// [Modem.Silent], [Modem.SlowReply]) are Go methods, safe to call from any
// goroutine, meant for tests and for the board emulator's control socket.
// [Modem.Close] stops the emulator and closes the pty.
package sim
