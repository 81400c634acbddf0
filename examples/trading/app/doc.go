// Package app is the trading order book of Python NecroStack (examples/trading_orderbook)
// ported to necro: five organs that validate orders, match them in a price-time order
// book per symbol, settle the trades through a simulated clearing house, watch the
// traders' risk limits and keep an audit trail.
//
// An [App] holds the organs' shared state (the order books, the counters, the risk
// positions and alerts), so that [App.Report] and [App.Results] can read it once the
// Spine's run has returned. The organs are mounted in the seed's order under the seed's
// class names: ValidateOrder, MatchingEngine, SettlementOrgan, RiskManager, AuditTrail.
//
// Matching follows the input's order: every order is submitted before the run starts,
// the queue is FIFO, the Spine commits deliveries in queue order whatever its window,
// and MatchingEngine is one actor that handles one order at a time. The random failures
// of the clearing house draw from a source seeded by [Options.Seed] inside
// SettlementOrgan, one actor too, so on the in-memory backend a seed gives the same run
// every time.
package app
