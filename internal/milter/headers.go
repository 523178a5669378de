package milter

import (
	"fmt"
	"strings"

	"github.com/d--j/go-milter"

	"github.com/elemta/elemta/registry"
)

// applyHeaders hands the MTA a message's header changes as milter actions,
// so the message it queues is the one `elemta serve` would have written
// (registry.Message.WriteRewritten): the removed fields deleted, then the
// added fields (those recorded with Message.AddHeader first, then add) on
// top, in order.
//
// A deletion is SMFIR_CHGHEADER with an empty value and the field's index
// among the fields of its name (1-based, as the MTA sent them), issued from
// the last to the first so an MTA that renumbers after a deletion removes
// the same fields. An addition is SMFIR_INSHEADER at index 0, issued from
// the last to the first, so the first added field ends on top, above the
// MTA's own Received (as serve's fields are above its Received).
func applyHeaders(m milter.Modifier, msg *registry.Message, add []registry.Field, remove []registry.Removal) error {
	type deletion struct {
		name  string
		index int
	}
	var dels []deletion
	seen := make([]int, len(remove))
	count := map[string]int{}
	for _, f := range msg.Header {
		key := strings.ToLower(f.Name)
		count[key]++
		if removedAt(remove, seen, f.Name) {
			dels = append(dels, deletion{f.Name, count[key]})
		}
	}
	for i := len(dels) - 1; i >= 0; i-- {
		if err := m.ChangeHeader(dels[i].index, dels[i].name, ""); err != nil {
			return fmt.Errorf("delete header %s #%d: %w", dels[i].name, dels[i].index, err)
		}
	}
	lead := ""
	if m.Protocol()&milter.OptHeaderLeadingSpace != 0 {
		lead = " " // the MTA takes the value as is: the space after the colon is ours to give
	}
	all := append(msg.AddedHeaders(), add...)
	for i := len(all) - 1; i >= 0; i-- {
		if err := m.InsertHeader(0, all[i].Name, lead+all[i].Value); err != nil {
			return fmt.Errorf("insert header %s: %w", all[i].Name, err)
		}
	}
	return nil
}

// removedAt reports whether the field called name, the next of its name,
// is removed, and counts it in seen: registry.Message.WriteRewritten's
// rule, so the same fields go.
func removedAt(remove []registry.Removal, seen []int, name string) bool {
	out := false
	for i, r := range remove {
		if strings.EqualFold(r.Name, name) {
			if r.Index < 0 || r.Index == seen[i] {
				out = true
			}
			seen[i]++
		}
	}
	return out
}
