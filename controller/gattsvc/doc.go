// Package gattsvc is the board's GATT service of app-protocol/GATT.md: the
// relay a phone uses when the board has no link to the cloud (Grant,
// Progress, Receipt, Ack) and, on a claimed board, ClaimInfo. It builds a
// *goble.Service (hw/ble/goble) that ble.GATTHost serves beside the
// beacon, over a small Relay interface the controller daemon implements;
// it knows nothing of machines, outputs or the journal.
//
// What it owns:
//
//   - Chunk reassembly (gattapi.Reassembler) of the Grant characteristic,
//     for the one central the host serves at a time. A chunk with index 0
//     starts over; a disconnect, or a write from another connection,
//     drops an unfinished message. Each chunk's write is answered; the
//     last one with the message's verdict (Relay.Grant).
//   - ATT answers: every refusal is the ATT application error of
//     gattapi.ATTCode (0x80-0x9F), so a phone shows why without another
//     round trip; nil, short or oversized values get the decoding error's
//     code (gatt.empty, gatt.truncated, gatt.too_long…), never a panic.
//   - Progress: read, and notified to a subscribed central at every state
//     change and, while the session runs, when its units change, at most
//     once a second (Opts.Poll is how often Relay.Progress is looked at).
//     The value is 19 bytes: it fits a notification at the default MTU.
//   - Receipt: read, with Read Blob for a value longer than ATT_MTU − 1.
//     The fork's ATT server passes a Read Blob's offset to the read handler
//     (goble.Request.Offset); the handler takes a snapshot of the value at
//     offset 0 and serves later offsets from it, so a long read is
//     consistent even if the receipt changes (ready → acknowledged) in the
//     middle of it.
//   - Ack: decoded (gattapi.Ack) and handed to Relay.Ack.
//   - ClaimInfo: read, when Opts.ClaimInfo is set (a claimed board; the
//     registration-mode service is controller/claim's).
//
// Nothing here touches an output: a connection or a disconnect changes
// only the reassembly state; a relayed session runs on as the daemon
// drives it.
package gattsvc
