package pluginhost

import (
	"encoding/binary"
	"net"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/elemta/elemta/registry"
)

func connPair(t *testing.T) (*conn, net.Conn) {
	a, b := net.Pipe()
	t.Cleanup(func() { _ = a.Close(); _ = b.Close() })
	return newConn(a), b
}

// A frame crosses with its Result, Data included, as it was.
func TestWireRoundTrip(t *testing.T) {
	registerWireTypes()
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	ka, kb := newConn(a), newConn(b)
	res := wireResult{Verdict: registry.RejectVerdict(550, "5.7.1", "no"), Score: 2.5,
		AddHeaders:    []registry.Field{{Name: "X-A", Value: "1"}},
		RemoveHeaders: []registry.Removal{{Name: "X-B", Index: -1}},
		Data:          &registry.SPFResult{Result: registry.AuthPass, Domain: "example.org", HELO: &registry.SPFResult{Result: registry.AuthNone}},
		Details:       "d", Plugin: "spf", Order: 3}
	env := registry.Envelope{ClientIP: netip.MustParseAddr("2001:db8::1"), RcptTo: []string{"a@b"}}
	for i := range 3 { // the encoder sends type descriptions once; later frames still decode
		go func() {
			assert.NoError(t, ka.send(&frame{ID: uint64(i), Kind: kindReply, Reply: &replyFrame{Result: &res},
				Call: &callFrame{Message: &wireMessage{Raw: []byte("Subject: x\r\n\r\n"), Envelope: env}}}))
		}()
		f, err := kb.recv()
		require.NoError(t, err)
		assert.Equal(t, uint64(i), f.ID)
		assert.Equal(t, res, *f.Reply.Result)
		assert.Equal(t, env, f.Call.Message.Envelope)
	}
}

func TestWireRefusesBadFrames(t *testing.T) {
	for _, tc := range []struct {
		name string
		raw  []byte
		err  string
	}{
		{"empty frame", []byte{0, 0, 0, 0}, "frame length 0 out of range"},
		{"frame above the limit", binary.BigEndian.AppendUint32(nil, maxFrame+1), "out of range"},
		{"gob running past the frame", append([]byte{0, 0, 0, 4}, "this is not gob"...), "past the end of its frame"},
		{"not gob", append([]byte{0, 0, 0, 2}, 0x01, 0xff), "plugin worker connection"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k, peer := connPair(t)
			go func() { _, _ = peer.Write(tc.raw); _ = peer.Close() }()
			_, err := k.recv()
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.err)
		})
	}
}

// Data of a type no plugin declares does not cross.
func TestCrossable(t *testing.T) {
	registerWireTypes()
	type private struct{ X int }
	assert.True(t, crossable(nil))
	assert.True(t, crossable(&registry.DKIMResult{}))
	assert.False(t, crossable(&private{}))
}
