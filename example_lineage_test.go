package necro_test

import (
	"fmt"

	"github.com/necrostack/necro"
)

// EmittedBy is what the Spine does to every event an organ emits: it stamps the lineage
// and, for an id the event generated itself, derives the id from the parent, the organ
// and the index, so that a handling that is repeated emits the same ids.
func ExampleEvent_EmittedBy() {
	order, err := necro.Draft{ID: "550e8400-e29b-41d4-a716-446655440000", Type: "order.placed"}.Build()
	if err != nil {
		fmt.Println(err)
		return
	}
	reserved, err := necro.NewEvent("stock.reserved", map[string]any{"sku": "kbd-01"})
	if err != nil {
		fmt.Println(err)
		return
	}

	first := reserved.EmittedBy(order, "inventory", 0, necro.TraceContext{})
	again := reserved.EmittedBy(order, "inventory", 0, necro.TraceContext{}) // the same handling, repeated
	fmt.Println(first.ID())
	fmt.Println(again.ID() == first.ID(), first.ID() == necro.DeriveID(order.ID(), "inventory", 0))
	m := first.Meta()
	fmt.Println(m.CorrelationID, m.CausationID == order.ID(), m.Depth)

	// Down the chain the correlation id stays the root's.
	paid, err := necro.NewEvent("payment.captured", nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	paid = paid.EmittedBy(first, "billing", 0, necro.TraceContext{})
	fmt.Println(paid.Correlation(), paid.Depth())

	// An id the organ chose is kept.
	chosen, err := necro.Draft{ID: "6ba7b810-9dad-41d1-80b4-00c04fd430c8", Type: "audit.logged"}.Build()
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(chosen.EmittedBy(order, "audit", 0, necro.TraceContext{}).ID())
	// Output:
	// 13b4963e-bd94-47b9-b5bb-a481c0a44d5a
	// true true
	// 550e8400-e29b-41d4-a716-446655440000 true 1
	// 550e8400-e29b-41d4-a716-446655440000 2
	// 6ba7b810-9dad-41d1-80b4-00c04fd430c8
}
