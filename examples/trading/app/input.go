package app

import (
	"bytes"
	"embed"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// samples holds the bundled input: sample_orders.json is what a run without an input
// file submits; sample_orders.csv holds the same ten orders in the seed's CSV layout.
//
//go:embed sample_orders.json sample_orders.csv
var samples embed.FS

const sampleName = "sample_orders.json"

// An order is one submitted order as the input gave it: field name to value, with JSON
// numbers kept as json.Number so that 100 and 100.0 stay apart, as they do in Python.
// ValidateOrder judges the fields; reading the input only checks the shape.
type order = map[string]any

// readOrders reads the orders of the input file at path, or of the bundled sample when
// path is "". It returns the orders in input order and, for a CSV file, the rows it
// skipped, each with why. The format follows the file's extension, .json or .csv.
func readOrders(path string) ([]order, []string, error) {
	if path == "" {
		data, err := samples.ReadFile(sampleName)
		if err != nil {
			return nil, nil, err // cannot happen: the file is embedded
		}
		orders, err := parseJSON(data)
		return orders, nil, err
	}
	ext := strings.ToLower(filepath.Ext(path))
	if ext != ".json" && ext != ".csv" {
		return nil, nil, fmt.Errorf("%s: unsupported file format %q: want .json or .csv", path, filepath.Ext(path))
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err // the *PathError names the file
	}
	var (
		orders  []order
		skipped []string
	)
	if ext == ".json" {
		orders, err = parseJSON(data)
	} else {
		orders, skipped, err = parseCSV(data)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	return orders, skipped, nil
}

// parseJSON reads a list of orders, or an object whose "orders" field is that list, as
// the seed's load_orders_from_file does. Every order must be a JSON object.
func parseJSON(data []byte) ([]order, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var doc any
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("read JSON: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("read JSON: data after the first JSON value")
	}
	list, ok := doc.([]any)
	if obj, isObj := doc.(map[string]any); isObj {
		list, ok = obj["orders"].([]any)
	}
	if !ok {
		return nil, errors.New(`want a list of orders or an object with an "orders" list`)
	}
	orders := make([]order, len(list))
	for i, v := range list {
		o, ok := v.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("order %d is not a JSON object", i+1)
		}
		orders[i] = o
	}
	return orders, nil
}

// parseCSV reads rows under a header line, as the seed's csv.DictReader loop does: the
// columns trader_id, symbol, side, order_type (LIMIT when the column is missing),
// quantity (an integer) and price (a number); a missing quantity or price column reads
// as 0. A row whose quantity or price does not convert is skipped, and the returned
// list says which and why.
func parseCSV(data []byte) ([]order, []string, error) {
	r := csv.NewReader(bytes.NewReader(bytes.TrimPrefix(data, []byte("\uFEFF"))))
	r.FieldsPerRecord = -1 // short and long rows are the loader's business, as in DictReader
	r.LazyQuotes = true    // a stray quote inside a field is kept, as Python's csv does
	header, err := r.Read()
	if errors.Is(err, io.EOF) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("read CSV header: %w", err)
	}
	column := make(map[string]int, len(header))
	for i, name := range header {
		column[name] = i // a repeated name takes the later column, as DictReader does
	}
	var (
		orders  []order
		skipped []string
	)
	for {
		rec, err := r.Read()
		if errors.Is(err, io.EOF) {
			return orders, skipped, nil
		}
		if err != nil {
			return nil, nil, fmt.Errorf("read CSV: %w", err)
		}
		field := func(name, missing string) (string, bool) {
			i, ok := column[name]
			if !ok || i >= len(rec) {
				return missing, false
			}
			return rec[i], true
		}
		o := order{}
		for _, name := range []string{"trader_id", "symbol", "side"} {
			o[name], _ = field(name, "")
		}
		o["order_type"], _ = field("order_type", limitOrder)
		q, problem := 0, ""
		if s, ok := field("quantity", ""); ok {
			if q, err = strconv.Atoi(strings.TrimSpace(s)); err != nil {
				problem = fmt.Sprintf("quantity %q is not an integer", s)
			}
		}
		price := 0.0
		if s, ok := field("price", ""); ok && problem == "" {
			price, err = strconv.ParseFloat(strings.TrimSpace(s), 64)
			if err != nil || math.IsInf(price, 0) || math.IsNaN(price) {
				problem = fmt.Sprintf("price %q is not a finite number", s)
			}
		}
		if problem != "" {
			line, _ := r.FieldPos(0)
			skipped = append(skipped, fmt.Sprintf("line %d: %s", line, problem))
			continue
		}
		o["quantity"] = json.Number(strconv.Itoa(q))
		o["price"] = json.Number(strconv.FormatFloat(price, 'f', -1, 64))
		orders = append(orders, o)
	}
}
