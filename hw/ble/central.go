package ble

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"

	"beaconvend/app-protocol/gattapi"
	"beaconvend/app-protocol/vend"
	goble "beaconvend/hw/ble/goble"
)

// The phone's side of the board's GATT service (app-protocol/GATT.md): a
// central connected to one board. GATTLink is the radio part, by
// characteristic UUID; Board puts the service's messages on it (chunking
// to the link's MTU, strict decoding, ATT application errors turned back
// into the gattapi code names). The Linux HCI central is HCI.DialGATT
// (central_linux.go); tests give Board a stand-in link.

// GATTLink is a central's connection to a peripheral's beaconvend service,
// addressed by characteristic UUID (gattapi.*UUID). Every call is bounded
// by its ctx and by the link: a disconnection ends it with
// ErrDisconnected. Implementations are safe for concurrent use.
type GATTLink interface {
	// MTU is the ATT_MTU of the link, bytes (23 until exchanged).
	MTU() int
	// Read reads the whole value (with Read Blob requests past ATT_MTU−1).
	Read(ctx context.Context, uuid string) ([]byte, error)
	// Write writes one value with a Write Request (a long write, Prepare
	// and Execute Write, when it is longer than ATT_MTU−3), and returns
	// when the peripheral has answered it. A refusal is a goble.ATTError.
	Write(ctx context.Context, uuid string, v []byte) error
	// Subscribe enables notifications of the characteristic; fn gets each
	// value, on the link's reader goroutine: it must not block.
	Subscribe(ctx context.Context, uuid string, fn func([]byte)) error
	// Done is closed when the link is gone (either side disconnected).
	Done() <-chan struct{}
	// Close disconnects.
	Close() error
}

// Central errors.
var (
	// ErrDisconnected: the link went down before the operation finished.
	ErrDisconnected = vend.E(vend.Transient, "ble.disconnected", "ble: the board disconnected")
	// ErrLinkTimeout: the board did not answer within the operation's bound.
	ErrLinkTimeout = vend.E(vend.Transient, "ble.timeout", "ble: the board did not answer in time")
	// ErrNoService: the peripheral has no beaconvend service, or it lacks
	// one of the characteristics.
	ErrNoService = vend.E(vend.NotFound, "ble.no_service", "ble: no beaconvend service on the peripheral")
)

// RefusedError is a write or read the board answered with an ATT
// application error (0x80–0x9F): Code is the gattapi code name of ATT
// (gattapi.ATTCodes), e.g. "grant.replayed". vend.CodeOf gives Code and
// vend.KindOf Conflict.
type RefusedError struct {
	Op   string // what was refused: "grant", "bundle chunk 2/5", "ack"
	ATT  byte   // the ATT error code
	Code string // its gattapi name; "att.0xNN" for a code not in the table
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("ble: the board refused the %s: %s (ATT 0x%02X)", e.Op, e.Code, e.ATT)
}

// Unwrap gives the code to vend.CodeOf and vend.KindOf.
func (e *RefusedError) Unwrap() error {
	return &vend.Error{Kind: vend.Conflict, Code: e.Code, Msg: e.Error()}
}

// ATTCodeName is the gattapi code name of an ATT application error code
// ("att.0xNN" for one the table does not name).
func ATTCodeName(c byte) string {
	for name, v := range gattapi.ATTCodes {
		if v == c {
			return name
		}
	}
	return fmt.Sprintf("att.0x%02x", c)
}

// boardErr turns an ATT application error into a *RefusedError naming op;
// other errors are wrapped with op.
func boardErr(op string, err error) error {
	if err == nil {
		return nil
	}
	var ae goble.ATTError
	if errors.As(err, &ae) && ae >= 0x80 && ae <= 0x9F {
		return &RefusedError{Op: op, ATT: byte(ae), Code: ATTCodeName(byte(ae))}
	}
	return fmt.Errorf("ble: %s: %w", op, err)
}

// Board speaks the beaconvend GATT service over a link. It is safe for
// concurrent use as far as the link is.
type Board struct {
	l         GATTLink
	malformed atomic.Uint64
}

// NewBoard returns a Board on l.
func NewBoard(l GATTLink) *Board { return &Board{l: l} }

// Done is closed when the link is gone.
func (b *Board) Done() <-chan struct{} { return b.l.Done() }

// Close disconnects.
func (b *Board) Close() error { return b.l.Close() }

// Malformed counts Progress notifications that did not decode (dropped).
func (b *Board) Malformed() uint64 { return b.malformed.Load() }

// chunkSize is the chunk length for a message of n bytes on a link of
// mtu: one Write Request each (ATT_MTU−3) when that takes at most
// gattapi.MaxChunks chunks, else full 512-byte values by long writes.
func chunkSize(n, mtu int) int {
	size := min(mtu-3, gattapi.MaxValue)
	if size <= gattapi.ChunkHeader {
		return gattapi.MaxValue
	}
	per := size - gattapi.ChunkHeader
	if (n+per-1)/per > gattapi.MaxChunks {
		return gattapi.MaxValue
	}
	return size
}

// writeChunks writes msg to uuid in chunks, in order, each answered before
// the next; the board answers the last with the message's verdict.
func (b *Board) writeChunks(ctx context.Context, what, uuid string, msg []byte, max int) error {
	chunks, err := gattapi.Chunk(msg, chunkSize(len(msg), b.l.MTU()), max)
	if err != nil {
		return fmt.Errorf("ble: %s: %w", what, err)
	}
	for i, c := range chunks {
		op := what
		if len(chunks) > 1 {
			op = fmt.Sprintf("%s (chunk %d of %d)", what, i+1, len(chunks))
		}
		if err := b.l.Write(ctx, uuid, c); err != nil {
			return boardErr(op, err)
		}
	}
	return nil
}

// WriteGrant writes a relayed grant to GrantUUID. The board's verdict on
// the grant (gattapi.CheckRelay) is the answer to the last chunk: a
// *RefusedError with e.g. grant.replayed, relay.nonce_reused,
// grant.expired, grant.device.
func (b *Board) WriteGrant(ctx context.Context, g gattapi.RelayGrant) error {
	msg, err := g.MarshalBinary()
	if err != nil {
		return fmt.Errorf("ble: grant: %w", err)
	}
	return b.writeChunks(ctx, "grant", gattapi.GrantUUID, msg, gattapi.MaxRelayGrant)
}

// WriteBundle writes a sealed provisioning bundle to BundleUUID. Refusals:
// claim.open (not sealed to this board), claim.not_registration.
func (b *Board) WriteBundle(ctx context.Context, sealed []byte) error {
	return b.writeChunks(ctx, "bundle", gattapi.BundleUUID, sealed, gattapi.MaxBundle)
}

// ReadProgress reads the Progress value.
func (b *Board) ReadProgress(ctx context.Context) (gattapi.Progress, error) {
	v, err := b.l.Read(ctx, gattapi.ProgressUUID)
	if err != nil {
		return gattapi.Progress{}, boardErr("progress read", err)
	}
	var p gattapi.Progress
	if err := p.UnmarshalBinary(v); err != nil {
		return gattapi.Progress{}, fmt.Errorf("ble: progress: %w", err)
	}
	return p, nil
}

// SubscribeProgress enables Progress notifications; fn gets each one that
// decodes (others are counted by Malformed), on the link's reader: it must
// not block.
func (b *Board) SubscribeProgress(ctx context.Context, fn func(gattapi.Progress)) error {
	err := b.l.Subscribe(ctx, gattapi.ProgressUUID, func(v []byte) {
		var p gattapi.Progress
		if p.UnmarshalBinary(v) != nil {
			b.malformed.Add(1)
			return
		}
		fn(p)
	})
	return boardErr("progress subscription", err)
}

// ReadReceipt reads the whole Receipt value (Read Blob past ATT_MTU−1).
func (b *Board) ReadReceipt(ctx context.Context) (gattapi.Receipt, error) {
	v, err := b.l.Read(ctx, gattapi.ReceiptUUID)
	if err != nil {
		return gattapi.Receipt{}, boardErr("receipt read", err)
	}
	var r gattapi.Receipt
	if err := r.UnmarshalBinary(v); err != nil {
		return gattapi.Receipt{}, fmt.Errorf("ble: receipt: %w", err)
	}
	return r, nil
}

// WriteAck writes an acknowledgement of the receipt to AckUUID. Refusals:
// relay.ack_mismatch, and the cloud ack's signature errors.
func (b *Board) WriteAck(ctx context.Context, a gattapi.Ack) error {
	v, err := a.MarshalBinary()
	if err != nil {
		return fmt.Errorf("ble: ack: %w", err)
	}
	return boardErr("ack", b.l.Write(ctx, gattapi.AckUUID, v))
}

// ReadClaimInfo reads the ClaimInfo value.
func (b *Board) ReadClaimInfo(ctx context.Context) (gattapi.ClaimInfo, error) {
	v, err := b.l.Read(ctx, gattapi.ClaimInfoUUID)
	if err != nil {
		return gattapi.ClaimInfo{}, boardErr("claim info read", err)
	}
	var c gattapi.ClaimInfo
	if err := c.UnmarshalBinary(v); err != nil {
		return gattapi.ClaimInfo{}, fmt.Errorf("ble: claim info: %w", err)
	}
	return c, nil
}
