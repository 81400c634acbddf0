package app

import (
	"encoding/json"
	"math/rand/v2"
	"strconv"
)

// stressOrders returns n random orders as the seed's create_stress_orders makes them;
// the same seed gives the same orders.
func stressOrders(n int, seed int64) []order {
	symbols := []string{"AAPL", "GOOGL", "MSFT", "AMZN", "TSLA", "NVDA", "META"}
	basePrice := map[string]float64{"AAPL": 150, "GOOGL": 140, "MSFT": 380, "AMZN": 180, "TSLA": 250,
		"NVDA": 480, "META": 500}
	traders := make([]string, 0, 52)
	for i := range 50 {
		traders = append(traders, "trader_"+strconv.Itoa(i))
	}
	traders = append(traders, "trader_bad_1", "trader_bad_2")

	rng := rand.New(rand.NewPCG(uint64(seed), stressStream))
	orders := make([]order, n)
	for i := range orders {
		sym := symbols[rng.IntN(len(symbols))]
		trader := traders[rng.IntN(len(traders))]
		side := []string{buySide, sellSide}[rng.IntN(2)]
		orderType := limitOrder
		if rng.Float64() >= 0.8 {
			orderType = marketOrder
		}
		quantity := 10 + rng.IntN(491)
		price := roundCents(basePrice[sym] * (0.98 + 0.04*rng.Float64()))
		if orderType == marketOrder {
			price = 0
		}
		orders[i] = order{"trader_id": trader, "symbol": sym, "side": side, "order_type": orderType,
			"quantity": json.Number(strconv.Itoa(quantity)), "price": json.Number(strconv.FormatFloat(price, 'f', -1, 64))}
	}
	return orders
}
