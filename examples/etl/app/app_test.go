package app

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/necrostack/necro"
	"github.com/necrostack/necro/backend"
	"github.com/necrostack/necro/backend/memory"
	"github.com/necrostack/necro/spine"
)

// threeRows is the seed tests' SAMPLE_CSV (tests/test_etl_flow.py).
const threeRows = "name,age,salary\nAlice,30,75000\nBob,25,55000\nCharlie,35,85000\n"

// wantSample is what a run over the bundled employees.csv prints, worked out by hand:
// Frank has no age, so CleanData removes him and 9 rows remain; age and salary are the
// numeric columns (25..40, sum 279; 55000..95000, sum 647000, avg 71888.89). The Spine
// processes 5 events: the 4 of the chain and ETL_COMPLETE, which no organ listens to.
const wantSample = `📊 Starting ETL Pipeline... 📊

=== ETL Summary for 'employees.csv' ===
Total rows processed: 9
Columns: name, age, salary, department

Numeric Statistics:
  age: min=25.00, max=40.00, avg=31.00, sum=279.00
  salary: min=55000.00, max=95000.00, avg=71888.89, sum=647000.00

✅ ETL complete: 5 events processed
`

func TestSampleRun(t *testing.T) {
	a := newApp(t, Options{})
	out, st, dead := runApp(t, a, nil)
	if out != wantSample {
		t.Errorf("the sample run printed:\n%s\nwant:\n%s", out, wantSample)
	}
	if st.Processed != 5 || st.Emitted != 4 || st.Unrouted != 1 || st.DeadLettered != 0 || len(st.HandlerErrors) != 0 {
		t.Errorf("stats = %+v; want processed 5, emitted 4, unrouted 1 (ETL_COMPLETE), no failure", st)
	}
	if len(dead) != 0 {
		t.Errorf("dead letters = %v, want none", dead)
	}

	f := func(v float64) *float64 { return &v }
	want := []summary{{
		SourceName: "employees.csv",
		RowCount:   "9",
		Columns:    []string{"name", "age", "salary", "department"},
		NumericStats: []columnSummary{
			{Column: "age", Min: f(25), Max: f(40), Avg: f(31), Sum: f(279)},
			{Column: "salary", Min: f(55000), Max: f(95000), Avg: f(647000.0 / 9), Sum: f(647000)},
		},
		Text: strings.TrimSuffix(strings.TrimPrefix(wantSample, "📊 Starting ETL Pipeline... 📊\n\n"),
			"\n\n✅ ETL complete: 5 events processed\n"),
	}}
	res := a.Results()
	if got := res.(struct {
		Summaries []summary `json:"summaries"`
	}).Summaries; !reflect.DeepEqual(got, want) {
		t.Errorf("Results() = %s\nwant %s", show(got), show(want))
	}
	data, err := json.Marshal(res)
	if err != nil {
		t.Fatalf("json.Marshal(Results()) = %v", err)
	}
	for _, part := range []string{`"source_name":"employees.csv"`, `"row_count":9`, `"column":"age","min":25,"max":40,"avg":31,"sum":279`} {
		if !bytes.Contains(data, []byte(part)) {
			t.Errorf("Results() as JSON = %s\nwant it to hold %s", data, part)
		}
	}
}

// TestRandomFailuresHaveNoEffect: the seed's ETL has no random failures, so turning
// them on changes nothing, whatever the seed, and a run is the same every time.
func TestRandomFailuresHaveNoEffect(t *testing.T) {
	for _, seed := range []int64{1, 42} {
		for range 2 {
			out, st, dead := runApp(t, newApp(t, Options{RandomFailures: true, Seed: seed}), nil)
			if out != wantSample || st.Processed != 5 || len(dead) != 0 {
				t.Errorf("with random failures on, seed %d: printed\n%s\nprocessed %d, %d dead letters; want the sample run", seed, out, st.Processed, len(dead))
			}
		}
	}
}

func TestQuietLeavesOutTheBanner(t *testing.T) {
	out, _, _ := runApp(t, newApp(t, Options{Quiet: true}), nil)
	if want := strings.TrimPrefix(wantSample, "📊 Starting ETL Pipeline... 📊\n\n"); out != want {
		t.Errorf("a quiet run printed:\n%s\nwant:\n%s", out, want)
	}
}

func TestMountsInSeedOrder(t *testing.T) {
	var got []string
	for _, m := range newApp(t, Options{}).Mounts() {
		types, err := m.Validate()
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, m.Name+" "+strings.Join(types, ","))
	}
	want := []string{"ExtractCSV ETL_START", "CleanData RAW_DATA_LOADED", "TransformData DATA_CLEANED", "ExportSummary DATA_TRANSFORMED"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Mounts() = %q, want %q", got, want)
	}
}

// J1: tests/test_etl_flow.py::test_extract_csv_organ.
func TestExtractCSV(t *testing.T) {
	a := newApp(t, Options{})
	out := handle(t, a, "ExtractCSV", newEvent(t, "ETL_START", map[string]any{"csv_data": threeRows, "source_name": "test.csv"}))
	var p rawLoaded
	decodeInto(t, out, "RAW_DATA_LOADED", &p)
	if p.SourceName != "test.csv" || p.RowCount != 3 || !reflect.DeepEqual(p.Headers, []string{"name", "age", "salary"}) ||
		len(p.Records) != 3 || p.Records[0]["name"] != "Alice" {
		t.Errorf("RAW_DATA_LOADED = %+v; want test.csv, 3 rows, headers [name age salary], first name Alice", p)
	}
}

// J2: tests/test_etl_flow.py::test_clean_data_organ.
func TestCleanData(t *testing.T) {
	a := newApp(t, Options{})
	out := handle(t, a, "CleanData", newEvent(t, "RAW_DATA_LOADED", map[string]any{
		"source_name": "test.csv",
		"headers":     []string{"name", "age"},
		"records": []map[string]string{
			{"name": "Alice", "age": "30"},
			{"name": "Bob", "age": ""},
			{"name": "Charlie", "age": "35"},
		},
	}))
	var p cleaned
	decodeInto(t, out, "DATA_CLEANED", &p)
	var names []any
	for _, r := range p.Records {
		names = append(names, r["name"])
	}
	if p.RowCount != 2 || p.RemovedCount != 1 || !reflect.DeepEqual(names, []any{"alice", "charlie"}) {
		t.Errorf("DATA_CLEANED = %+v; want 2 rows (alice, charlie), 1 removed", p)
	}
}

// J3: tests/test_etl_flow.py::test_transform_data_organ.
func TestTransformData(t *testing.T) {
	a := newApp(t, Options{})
	out := handle(t, a, "TransformData", newEvent(t, "DATA_CLEANED", map[string]any{
		"source_name": "test.csv",
		"headers":     []string{"name", "value"},
		"records":     []map[string]string{{"name": "A", "value": "10"}, {"name": "B", "value": "20"}, {"name": "C", "value": "30"}},
	}))
	var p transformed
	decodeInto(t, out, "DATA_TRANSFORMED", &p)
	if len(p.NumericStats) != 1 || p.NumericStats[0].Key != "value" {
		t.Fatalf("numeric_stats = %s; want an entry for value only", show(p.NumericStats))
	}
	var st columnStats
	if err := json.Unmarshal(p.NumericStats[0].Value, &st); err != nil {
		t.Fatal(err)
	}
	if want := (columnStats{Min: 10, Max: 30, Sum: 60, Avg: 20, Count: 3}); st != want {
		t.Errorf("stats of value = %+v, want %+v", st, want)
	}
	if p.RowCount != 3 || p.SourceName != "test.csv" {
		t.Errorf("DATA_TRANSFORMED = %+v; want test.csv with 3 rows", p)
	}
}

// J4: tests/test_etl_flow.py::test_export_summary_organ.
func TestExportSummary(t *testing.T) {
	a := newApp(t, Options{})
	out := handle(t, a, "ExportSummary", newEvent(t, "DATA_TRANSFORMED", map[string]any{
		"source_name":   "test.csv",
		"headers":       []string{"name", "value"},
		"records":       []map[string]string{{"name": "A", "value": "10"}},
		"row_count":     1,
		"numeric_stats": map[string]any{"value": map[string]float64{"min": 10, "max": 10, "sum": 10, "avg": 10}},
	}))
	var p map[string]any
	decodeInto(t, out, "ETL_COMPLETE", &p)
	if want := map[string]any{"source_name": "test.csv", "row_count": float64(1)}; !reflect.DeepEqual(p, want) {
		t.Errorf("ETL_COMPLETE payload = %v, want %v", p, want)
	}
	sums := a.summariesCopy()
	if len(sums) != 1 {
		t.Fatalf("ExportSummary wrote %d summaries, want 1", len(sums))
	}
	want := "=== ETL Summary for 'test.csv' ===\nTotal rows processed: 1\nColumns: name, value\n\n" +
		"Numeric Statistics:\n  value: min=10.00, max=10.00, avg=10.00, sum=10.00"
	if sums[0].Text != want {
		t.Errorf("summary:\n%s\nwant:\n%s", sums[0].Text, want)
	}
}

// J5-J7: tests/test_etl_flow.py::test_etl_complete_chain, test_etl_chain_with_dirty_data
// and test_etl_empty_csv, handing each event to the next organ by hand.
func TestChain(t *testing.T) {
	tests := []struct {
		name, csv, source, want string
	}{
		{"complete chain", threeRows, "test.csv", "=== ETL Summary for 'test.csv' ===\nTotal rows processed: 3\nColumns: name, age, salary\n\n" +
			"Numeric Statistics:\n  age: min=25.00, max=35.00, avg=30.00, sum=90.00\n  salary: min=55000.00, max=85000.00, avg=71666.67, sum=215000.00"},
		{"dirty data", "name,age,salary\nAlice,30,75000\nBob,,55000\nCharlie,35,85000\n", "dirty.csv",
			"=== ETL Summary for 'dirty.csv' ===\nTotal rows processed: 2\nColumns: name, age, salary\n\n" +
				"Numeric Statistics:\n  age: min=30.00, max=35.00, avg=32.50, sum=65.00\n  salary: min=75000.00, max=85000.00, avg=80000.00, sum=160000.00"},
		{"empty csv", "", "empty.csv", "=== ETL Summary for 'empty.csv' ===\nTotal rows processed: 0\nColumns: "},
		// A fix: the seed let a short row through CleanData, as it lacks the key rather
		// than holding an empty value.
		{"short row removed", "name,age\nAlice,30\nBob\n", "short.csv",
			"=== ETL Summary for 'short.csv' ===\nTotal rows processed: 1\nColumns: name, age\n\nNumeric Statistics:\n  age: min=30.00, max=30.00, avg=30.00, sum=30.00"},
		// A fix: the seed split "Smith, J" in two.
		{"quoted values", "name,age\n\"Smith, J\",30\n\"O'Brien \"\"Pat\"\"\",40\n", "quoted.csv",
			"=== ETL Summary for 'quoted.csv' ===\nTotal rows processed: 2\nColumns: name, age\n\nNumeric Statistics:\n  age: min=30.00, max=40.00, avg=35.00, sum=70.00"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := newApp(t, Options{})
			ev := newEvent(t, "ETL_START", map[string]any{"csv_data": tt.csv, "source_name": tt.source})
			for _, organ := range []string{"ExtractCSV", "CleanData", "TransformData", "ExportSummary"} {
				out := handle(t, a, organ, ev)
				if len(out) != 1 {
					t.Fatalf("%s emitted %d events, want 1", organ, len(out))
				}
				ev = out[0]
			}
			if ev.Type() != "ETL_COMPLETE" {
				t.Errorf("the chain ended with %s, want ETL_COMPLETE", ev.Type())
			}
			sums := a.summariesCopy()
			if len(sums) != 1 || sums[0].Text != tt.want {
				t.Errorf("summaries for %q: %s\nwant one:\n%s", tt.csv, show(sums), tt.want)
			}
		})
	}
}

func TestParseCSV(t *testing.T) {
	type rec = map[string]string
	tests := []struct {
		name    string
		text    string
		headers []string
		records []rec
		long    []int
	}{
		{"empty", "", []string{}, []rec{}, nil},
		{"white space only", " \n\t\n  ", []string{}, []rec{}, nil},
		{"headers only", "a,b\n", []string{"a", "b"}, []rec{}, nil},
		{"values stripped", " a , b \n 1 , 2 \n", []string{"a", "b"}, []rec{{"a": "1", "b": "2"}}, nil},
		{"blank lines skipped", "\n  \na,b\n\n   \n1,2\n\n", []string{"a", "b"}, []rec{{"a": "1", "b": "2"}}, nil},
		{"CRLF", "a,b\r\n1,2\r\n", []string{"a", "b"}, []rec{{"a": "1", "b": "2"}}, nil},
		{"short row lacks the key", "a,b,c\n1,2\n", []string{"a", "b", "c"}, []rec{{"a": "1", "b": "2"}}, nil},
		{"long row drops extras", "a,b\n1,2\n3,4,5,6\n", []string{"a", "b"}, []rec{{"a": "1", "b": "2"}, {"a": "3", "b": "4"}}, []int{3}},
		{"empty values kept", "a,b\n,\n", []string{"a", "b"}, []rec{{"a": "", "b": ""}}, nil},
		{"repeated header keeps the last value", "a,a\n1,2\n", []string{"a", "a"}, []rec{{"a": "2"}}, nil},
		{"quoted comma", "name,city\n\"Smith, J\",Paris\n", []string{"name", "city"}, []rec{{"name": "Smith, J", "city": "Paris"}}, nil},
		{"quote after a space", "name,city\nx, \"Paris, TX\"\n", []string{"name", "city"}, []rec{{"name": "x", "city": "Paris, TX"}}, nil},
		{"doubled quotes", "a,b\n\"say \"\"hi\"\"\",2\n", []string{"a", "b"}, []rec{{"a": `say "hi"`, "b": "2"}}, nil},
		{"quoted line break", "a,b\n\"two\nlines\",2\n3,4\n", []string{"a", "b"}, []rec{{"a": "two\nlines", "b": "2"}, {"a": "3", "b": "4"}}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseCSV(tt.text)
			if err != nil {
				t.Fatalf("parseCSV(%q) = %v", tt.text, err)
			}
			want := table{headers: tt.headers, records: tt.records, long: tt.long}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("parseCSV(%q) = %+v, want %+v", tt.text, got, want)
			}
		})
	}
}

func TestParseCSVErrors(t *testing.T) {
	for _, text := range []string{
		"a,b\nO\"Brien,2\n", // a quote in an unquoted value
		"a,b\n\"x\" ,y\n",   // text after a closing quote
		"a,b\n1,\"open end", // a quote never closed
	} {
		_, err := parseCSV(text)
		var pe *csv.ParseError
		if !errors.As(err, &pe) || pe.Line != 2 {
			t.Errorf("parseCSV(%q) = %v, want a *csv.ParseError on line 2", text, err)
		}
	}
}

func TestPyFloat(t *testing.T) {
	tests := []struct {
		in   string
		want float64
		ok   bool
	}{
		{"10", 10, true}, {" 2.5 ", 2.5, true}, {"1e3", 1000, true}, {".5", 0.5, true}, {"5.", 5, true},
		{"+5", 5, true}, {"-0", 0, true}, {"1_000", 1000, true}, {"1e400", math.Inf(1), true},
		{"", 0, false}, {"abc", 0, false}, {"1__0", 0, false}, {"_1", 0, false}, {"1_", 0, false},
		{"0x10", 0, false}, {"-0x1p3", 0, false}, {"1,5", 0, false}, {"engineering", 0, false},
	}
	for _, tt := range tests {
		if got, ok := pyFloat(tt.in); ok != tt.ok || (ok && got != tt.want) {
			t.Errorf("pyFloat(%q) = %v, %v; want %v, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
	for _, s := range []string{"inf", "-Infinity", "nan", "NaN"} {
		if _, ok := pyFloat(s); !ok {
			t.Errorf("pyFloat(%q) is not a number; Python's float() reads it", s)
		}
	}
}

// TestTransformDataReadsValuesAsPythonFloat: values other producers send (numbers,
// bools) count as the seed's float() counts them; infinities and NaN are left out, as
// JSON cannot carry them; hexadecimal is not a number.
func TestTransformDataReadsValuesAsPythonFloat(t *testing.T) {
	a := newApp(t, Options{})
	in := json.RawMessage(`{"source_name": "mixed", "headers": ["v", "v", "w"], "records": [
		{"v": "1_000"}, {"v": "0x10"}, {"v": "inf"}, {"v": "nan"}, {"v": "1e3"}, {"v": true},
		{"v": 2.5}, {"v": null}, {"v": ""}, {"v": [1]}, {"w": "x"}]}`)
	out := handle(t, a, "TransformData", newEvent(t, "DATA_CLEANED", in))
	var p transformed
	decodeInto(t, out, "DATA_TRANSFORMED", &p)
	if len(p.NumericStats) != 1 || p.NumericStats[0].Key != "v" {
		t.Fatalf("numeric_stats = %s; want one entry, for v", show(p.NumericStats))
	}
	var st columnStats
	if err := json.Unmarshal(p.NumericStats[0].Value, &st); err != nil {
		t.Fatal(err)
	}
	if want := (columnStats{Min: 1, Max: 1000, Sum: 2003.5, Avg: 500.875, Count: 4}); st != want {
		t.Errorf("stats of v = %+v, want %+v", st, want)
	}
}

// TestCleanDataValues: null and empty values remove a record, as does a missing
// column; other values pass, strings stripped and lowercased.
func TestCleanDataValues(t *testing.T) {
	a := newApp(t, Options{})
	in := json.RawMessage(`{"headers": ["a", "b"], "records": [
		{"a": null, "b": "x"}, {"a": "1"}, {"a": 5, "b": " MiXeD "}, {"a": true, "b": "  "}, {"a": "", "b": "y"}]}`)
	out := handle(t, a, "CleanData", newEvent(t, "RAW_DATA_LOADED", in))
	if got, want := string(out[0].PayloadJSON()),
		`{"source_name":"unknown","headers":["a","b"],"records":[{"a":5,"b":"mixed"},{"a":true,"b":""}],"row_count":2,"removed_count":3}`; got != want {
		t.Errorf("DATA_CLEANED payload = %s\nwant %s", got, want)
	}
}

// TestExportSummaryStats: statistics print in the payload's order (not sorted, not
// the headers'), a value that is not a number prints N/A, a column whose stats are not
// an object is skipped, and row_count prints as it was written.
func TestExportSummaryStats(t *testing.T) {
	a := newApp(t, Options{})
	in := json.RawMessage(`{"source_name": "s", "row_count": 3.0, "headers": ["a", "b", "c"], "numeric_stats": {
		"c": {"min": "3", "max": true, "avg": null, "sum": "x"},
		"a": 5,
		"b": {"min": 1, "max": 2, "avg": 1.5, "sum": 3, "count": 2}}}`)
	out := handle(t, a, "ExportSummary", newEvent(t, "DATA_TRANSFORMED", in))
	want := "=== ETL Summary for 's' ===\nTotal rows processed: 3.0\nColumns: a, b, c\n\nNumeric Statistics:\n" +
		"  c: min=3.00, max=1.00, avg=N/A, sum=N/A\n  b: min=1.00, max=2.00, avg=1.50, sum=3.00"
	if sums := a.summariesCopy(); len(sums) != 1 || sums[0].Text != want {
		t.Errorf("summaries = %s\nwant one:\n%s", show(sums), want)
	}
	if got := string(out[0].PayloadJSON()); got != `{"source_name":"s","row_count":3.0}` {
		t.Errorf("ETL_COMPLETE payload = %s, want row_count as written", got)
	}
}

func TestOrderedObject(t *testing.T) {
	var o orderedObject
	if err := json.Unmarshal([]byte(`{"z": 1, "a": {"k": [1, 2]}, "z": 3}`), &o); err != nil {
		t.Fatal(err)
	}
	got, err := json.Marshal(o)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"z":3,"a":{"k":[1,2]}}`; string(got) != want {
		t.Errorf("round trip = %s, want %s (first place, last value)", got, want)
	}
	if err := json.Unmarshal([]byte(`null`), &o); err != nil || o != nil {
		t.Errorf("Unmarshal(null) = %v, %v; want no members", o, err)
	}
	if err := json.Unmarshal([]byte(`[1]`), &o); err == nil {
		t.Errorf("Unmarshal([1]) = %v, want an error", o)
	}
}

func TestOrganFailsPermanentlyOnBadInput(t *testing.T) {
	a := newApp(t, Options{})
	for _, tt := range []struct{ organ, typ, payload string }{
		{"ExtractCSV", "ETL_START", `{"csv_data": "a,b\nO\"Brien,2"}`},
		{"ExtractCSV", "ETL_START", `{"csv_data": 5}`},
		{"CleanData", "RAW_DATA_LOADED", `{"records": "none"}`},
		{"TransformData", "DATA_CLEANED", `{"headers": [1]}`},
		{"ExportSummary", "DATA_TRANSFORMED", `{"numeric_stats": [1]}`},
	} {
		ev := newEvent(t, tt.typ, json.RawMessage(tt.payload))
		if _, err := organ(t, a, tt.organ).Handle(t.Context(), ev); !necro.IsPermanent(err) {
			t.Errorf("%s on %s = %v, want a permanent error", tt.organ, tt.payload, err)
		}
	}
	// 150,000 one-letter rows: 300 kB of CSV, 1.5 MB of records.
	big := newEvent(t, "ETL_START", map[string]any{"csv_data": "a\n" + strings.Repeat("x\n", 150_000)})
	if _, err := organ(t, a, "ExtractCSV").Handle(t.Context(), big); !necro.IsPermanent(err) || !errors.Is(err, necro.ErrInvalidEvent) {
		t.Errorf("ExtractCSV on records past 1 MB = %v, want a permanent invalid-event error", err)
	}
}

// TestDeadLetterReported: an ETL_START whose CSV cannot be read is dead-lettered at
// the first attempt, and the report says so.
func TestDeadLetterReported(t *testing.T) {
	a := newApp(t, Options{Quiet: true})
	bad := newEvent(t, "ETL_START", map[string]any{"csv_data": "a,b\nO\"Brien,2\n", "source_name": "bad.csv"})
	out, st, dead := runApp(t, a, []necro.Event{bad})
	want := "No summary: no data reached ExportSummary.\n\nDead letters: 1\n" +
		"  ETL_START in ExtractCSV after 1 attempt(s): read csv_data of bad.csv: parse error on line 2, column 2: bare \" in non-quoted-field (permanent error)\n" +
		"\n✅ ETL complete: 1 events processed\n"
	if out != want {
		t.Errorf("printed:\n%s\nwant:\n%s", out, want)
	}
	if st.DeadLettered != 1 || len(dead) != 1 || st.HandlerErrors["ExtractCSV"] != 1 {
		t.Errorf("stats %+v, dead letters %v; want one dead letter from ExtractCSV", st, dead)
	}
}

func TestNewWithInput(t *testing.T) {
	path := filepath.Join(t.TempDir(), "staff.csv")
	writeFile(t, path, "name,team\n\"Lovelace, Ada\",Engines\nBabbage,\n")
	a := newApp(t, Options{Input: path, Quiet: true})
	out, _, _ := runApp(t, a, nil)
	want := "=== ETL Summary for 'staff.csv' ===\nTotal rows processed: 1\nColumns: name, team\n\n✅ ETL complete: 5 events processed\n"
	if out != want {
		t.Errorf("printed:\n%s\nwant:\n%s", out, want)
	}
}

func TestNewErrors(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing.csv")
	if _, err := New(Options{Input: missing}); !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), missing) {
		t.Errorf("New(missing file) = %v, want a not-exist error naming %s", err, missing)
	}

	bad := filepath.Join(dir, "bad.csv")
	writeFile(t, bad, "a,b\n1,2\nO\"Brien,3\n")
	_, err := New(Options{Input: bad})
	var pe *csv.ParseError
	if !errors.As(err, &pe) || pe.Line != 3 || !strings.HasPrefix(err.Error(), bad+": ") {
		t.Errorf("New(bad CSV) = %v, want a *csv.ParseError on line 3 naming %s", err, bad)
	}

	huge := filepath.Join(dir, "huge.csv")
	writeFile(t, huge, "a\n"+strings.Repeat(strings.Repeat("x", 60)+"\n", 20_000))
	if _, err := New(Options{Input: huge}); !errors.Is(err, necro.ErrInvalidEvent) || !strings.Contains(err.Error(), huge) {
		t.Errorf("New(1.2 MB of records) = %v, want an invalid-event error naming %s", err, huge)
	}
}

// runApp runs a on a fresh in-memory backend as main does, with roots (a.Roots() when
// nil), and returns what Begin and Report printed, the stats and the dead letters.
func runApp(t *testing.T, a *App, roots []necro.Event) (string, spine.Stats, []backend.DeadLetter) {
	t.Helper()
	ctx, cancel := context.WithTimeoutCause(t.Context(), 10*time.Second, errors.New("the Spine did not finish within 10s"))
	t.Cleanup(cancel)
	q, err := memory.New(memory.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = q.Close() }) // nothing left to lose: the test has read the store
	sp, err := spine.New(q, a.Mounts(), a.Config(spine.Config{}))
	if err != nil {
		t.Fatal(err)
	}
	if roots == nil {
		if roots, err = a.Roots(); err != nil {
			t.Fatal(err)
		}
	}
	var out bytes.Buffer
	a.Begin(&out)
	if err := sp.Emit(ctx, roots...); err != nil {
		t.Fatal(err)
	}
	if err := sp.Run(ctx); err != nil {
		t.Fatalf("Run() = %v", err)
	}
	if err := context.Cause(ctx); err != nil {
		t.Fatal(err)
	}
	dead, err := q.DeadLetters(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	st := sp.Stats()
	if err := a.Report(&out, st, dead, time.Second); err != nil {
		t.Fatal(err)
	}
	return out.String(), st, dead
}

func newApp(t *testing.T, opts Options) *App {
	t.Helper()
	a, err := New(opts)
	if err != nil {
		t.Fatalf("New(%+v) = %v", opts, err)
	}
	return a
}

func newEvent(t *testing.T, typ string, payload any) necro.Event {
	t.Helper()
	ev, err := necro.NewEvent(typ, payload)
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

func organ(t *testing.T, a *App, name string) necro.Organ {
	t.Helper()
	for _, m := range a.Mounts() {
		if m.Name == name {
			return m.Organ
		}
	}
	t.Fatalf("no organ %s", name)
	return nil
}

// handle calls the named organ's Handle directly, without a Spine, as the seed's tests
// call handle().
func handle(t *testing.T, a *App, name string, ev necro.Event) []necro.Event {
	t.Helper()
	out, err := organ(t, a, name).Handle(t.Context(), ev)
	if err != nil {
		t.Fatalf("%s.Handle(%s) = %v", name, ev.PayloadJSON(), err)
	}
	return out
}

// decodeInto checks that out is one event of type typ and decodes its payload into v.
func decodeInto(t *testing.T, out []necro.Event, typ string, v any) {
	t.Helper()
	if len(out) != 1 || out[0].Type() != typ {
		t.Fatalf("emitted %v, want one %s", out, typ)
	}
	if err := out[0].DecodePayload(v); err != nil {
		t.Fatal(err)
	}
}

func writeFile(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
}

func show(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return err.Error()
	}
	return string(b)
}
