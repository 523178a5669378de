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

// TestFindIsFindAllsFirst holds Find (which builds no list) to FindAll's
// first element over every sequence of up to four records drawn from three
// plugins, two orders (one of them AddResult's) and two data types.
func TestFindIsFindAllsFirst(t *testing.T) {
	type rec struct {
		plugin string
		order  int
		spf    bool
	}
	var choices []rec
	for _, p := range []string{"a", "b", "c"} {
		for _, o := range []int{0, notOrdered} {
			for _, spf := range []bool{true, false} {
				choices = append(choices, rec{p, o, spf})
			}
		}
	}
	var walk func(seq []rec)
	walk = func(seq []rec) {
		pc := NewProcessingContext(&Message{}, nil)
		for i, r := range seq {
			var data any = &SPFResult{Domain: string(rune('0' + i))}
			if !r.spf {
				data = "other"
			}
			pc.record(&Result{Plugin: r.plugin, Data: data}, r.order)
		}
		all := FindAll[*SPFResult](pc)
		got, ok := Find[*SPFResult](pc)
		if len(all) == 0 {
			assert.False(t, ok, "%v", seq)
		} else if !assert.True(t, ok, "%v", seq) || !assert.Same(t, all[0], got, "%v", seq) {
			t.FailNow()
		}
		if len(seq) == 4 {
			return
		}
		for _, c := range choices {
			walk(append(seq[:len(seq):len(seq)], c))
		}
	}
	walk(nil)
}

func TestFindFrom(t *testing.T) {
	pc := NewProcessingContext(&Message{}, nil)
	first, strict, later := &SPFResult{Domain: "first"}, &SPFResult{Domain: "strict"}, &SPFResult{Domain: "strict later"}
	pc.record(&Result{Plugin: "spf", Data: first}, 0)
	pc.record(&Result{Plugin: "spf/strict", Data: strict}, 1)
	pc.record(&Result{Plugin: "spf/strict", Data: later}, 1)
	pc.record(&Result{Plugin: "spf/strict", Details: "no data: skipped"}, 1)
	got, ok := FindFrom[*SPFResult](pc, "spf/strict")
	assert.True(t, ok)
	assert.Same(t, later, got, "the instance's latest")
	got, _ = FindFrom[*SPFResult](pc, "spf")
	assert.Same(t, first, got)
	_, ok = FindFrom[*SPFResult](pc, "spf/other")
	assert.False(t, ok)
	_, ok = FindFrom[*DKIMResult](pc, "spf")
	assert.False(t, ok, "another type")
}
