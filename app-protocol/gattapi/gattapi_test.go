package gattapi_test

import (
	"bytes"
	"testing"

	"beaconvend/app-protocol/gattapi"
	"beaconvend/app-protocol/vend"
)

// Every ATT code is an application error (0x80-0x9F) and names one error.
func TestATTCodes(t *testing.T) {
	seen := map[byte]string{}
	for code, b := range gattapi.ATTCodes {
		if b < 0x80 || b > 0x9F {
			t.Errorf("%s: ATT code 0x%02X outside the application range", code, b)
		}
		if o, ok := seen[b]; ok {
			t.Errorf("ATT code 0x%02X for both %s and %s", b, o, code)
		}
		seen[b] = code
	}
	if c := gattapi.ATTCode(vend.Errorf(gattapi.ErrNonceReused, "x")); c != 0x8E {
		t.Errorf("ATTCode(nonce reused) = 0x%02X", c)
	}
	if c := gattapi.ATTCode(bytes.ErrTooLarge); c != 0x9F {
		t.Errorf("ATTCode(uncoded) = 0x%02X, want 0x9F", c)
	}
}

// Limits: a message over its characteristic's limit is refused by Chunk
// and by the Reassembler, which then holds nothing; a full-size bundle
// goes through in 512-byte chunks.
func TestChunkLimits(t *testing.T) {
	big := bytes.Repeat([]byte{7}, gattapi.MaxBundle)
	cs, err := gattapi.Chunk(big, gattapi.MaxValue, gattapi.MaxBundle)
	if err != nil || len(cs) > gattapi.MaxChunks {
		t.Fatalf("Chunk(MaxBundle) = %d chunks, %v", len(cs), err)
	}
	r := gattapi.Reassembler{Max: gattapi.MaxBundle}
	for i, c := range cs {
		if len(c) > gattapi.MaxValue {
			t.Fatalf("chunk %d of %d bytes", i, len(c))
		}
		msg, done, err := r.Add(c)
		if err != nil || done != (i == len(cs)-1) || (done && !bytes.Equal(msg, big)) {
			t.Fatalf("Add(%d) = %d bytes, %v, %v", i, len(msg), done, err)
		}
	}
	if _, err := gattapi.Chunk(append(big, 1), gattapi.MaxValue, gattapi.MaxBundle); vend.CodeOf(err) != gattapi.ErrTooLong.Code {
		t.Fatalf("Chunk over the limit: %v", err)
	}
	for _, size := range []int{0, 4, 513} {
		if _, err := gattapi.Chunk([]byte{1}, size, 10); vend.CodeOf(err) != gattapi.ErrField.Code {
			t.Errorf("Chunk size %d: %v", size, err)
		}
	}
	small := gattapi.Reassembler{Max: 10}
	cs, _ = gattapi.Chunk(bytes.Repeat([]byte{1}, 20), 9, 100)
	var last error
	for _, c := range cs {
		if _, _, last = small.Add(c); last != nil {
			break
		}
	}
	if vend.CodeOf(last) != gattapi.ErrTooLong.Code {
		t.Fatalf("message over Max: %v", last)
	}
	if _, _, err := small.Add(cs[1]); vend.CodeOf(err) != gattapi.ErrChunk.Code {
		t.Fatalf("continuing a dropped message: %v, want %s", err, gattapi.ErrChunk.Code)
	}
}
