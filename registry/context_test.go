package registry

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestFindAllOrder(t *testing.T) {
	pc := NewProcessingContext(&Message{}, nil)
	a1, a2, b, c, d := &SPFResult{Domain: "a1"}, &SPFResult{Domain: "a2"}, &SPFResult{Domain: "b"}, &SPFResult{Domain: "c"}, &SPFResult{Domain: "d"}
	pc.record(&Result{Plugin: "b", Data: b}, 1)
	pc.record(&Result{Plugin: "a", Data: a1}, 0)
	pc.AddResult(&Result{Plugin: "d", Data: d})
	pc.record(&Result{Plugin: "a", Data: a2}, 0) // a later phase: replaces a's earlier result
	pc.AddResult(&Result{Plugin: "c", Data: c})
	pc.record(&Result{Plugin: "x", Data: "not an SPF result"}, 2)
	assert.Equal(t, []*SPFResult{a2, b, d, c}, FindAll[*SPFResult](pc))
	got, ok := Find[*SPFResult](pc)
	assert.True(t, ok)
	assert.Same(t, a2, got)
	_, ok = Find[*DKIMResult](pc)
	assert.False(t, ok)
	assert.Empty(t, FindAll[*DKIMResult](pc))
}
