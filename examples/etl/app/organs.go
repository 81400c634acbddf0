package app

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strings"

	"github.com/necrostack/necro"
)

// Event types, as the seed names them.
const (
	typeStart       = "ETL_START"
	typeRawLoaded   = "RAW_DATA_LOADED"
	typeCleaned     = "DATA_CLEANED"
	typeTransformed = "DATA_TRANSFORMED"
	typeComplete    = "ETL_COMPLETE"
)

// unknownSource is the seed's source_name when a payload has none.
const unknownSource = "unknown"

// rawLoaded is the payload of RAW_DATA_LOADED.
type rawLoaded struct {
	SourceName string              `json:"source_name"`
	Headers    []string            `json:"headers"`
	Records    []map[string]string `json:"records"`
	RowCount   int                 `json:"row_count"`
}

// cleaned is the payload of DATA_CLEANED. Record values are what the payload held:
// strings from ExtractCSV, but a producer of its own may send numbers, bools or null,
// and the seed's organs take those too.
type cleaned struct {
	SourceName   string           `json:"source_name"`
	Headers      []string         `json:"headers"`
	Records      []map[string]any `json:"records"`
	RowCount     int              `json:"row_count"`
	RemovedCount int              `json:"removed_count"`
}

// transformed is the payload of DATA_TRANSFORMED.
type transformed struct {
	SourceName   string           `json:"source_name"`
	Headers      []string         `json:"headers"`
	Records      []map[string]any `json:"records"`
	RowCount     int              `json:"row_count"`
	NumericStats orderedObject    `json:"numeric_stats"` // column → columnStats, in header order
}

// columnStats are the statistics of one numeric column, in the seed's key order.
type columnStats struct {
	Min   float64 `json:"min"`
	Max   float64 `json:"max"`
	Sum   float64 `json:"sum"`
	Avg   float64 `json:"avg"`
	Count int     `json:"count"`
}

// completion is the payload of ETL_COMPLETE. RowCount is DATA_TRANSFORMED's row_count
// as it was written.
type completion struct {
	SourceName string      `json:"source_name"`
	RowCount   json.Number `json:"row_count"`
}

// decode reads ev's payload into v with numbers as json.Number, so that a value passed
// on is passed on digit for digit. A payload the organ cannot read fails permanently:
// handling it again would fail the same way.
func decode(ev necro.Event, v any) error {
	dec := json.NewDecoder(bytes.NewReader(ev.PayloadJSON()))
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		return necro.Permanent(fmt.Errorf("read %s payload: %w", ev.Type(), err))
	}
	return nil
}

// emit returns the one event an organ emits. An event that cannot be built (a payload
// past necro.MaxPayloadBytes) fails permanently: the same input would fail again.
func emit(typ string, payload any) ([]necro.Event, error) {
	ev, err := necro.NewEvent(typ, payload)
	if err != nil {
		return nil, necro.Permanent(fmt.Errorf("emit %s: %w", typ, err))
	}
	return []necro.Event{ev}, nil
}

// or returns *s, or def when the field was missing or null (Python's
// payload.get(key, def), which differs only for null, where the seed got None).
func or(s *string, def string) string {
	if s == nil {
		return def
	}
	return *s
}

// extract turns a CSV text into the RAW_DATA_LOADED payload.
func extract(csvData, source string) (rawLoaded, table, error) {
	t, err := parseCSV(csvData)
	if err != nil {
		return rawLoaded{}, table{}, err
	}
	return rawLoaded{SourceName: source, Headers: t.headers, Records: t.records, RowCount: len(t.records)}, t, nil
}

// extractCSV is the ExtractCSV organ: ETL_START → RAW_DATA_LOADED. See [parseCSV] for
// how the text is read. A text that is not CSV fails permanently.
func (a *App) extractCSV(ctx context.Context, ev necro.Event) ([]necro.Event, error) {
	var in struct {
		CSVData    *string `json:"csv_data"`
		SourceName *string `json:"source_name"`
	}
	if err := decode(ev, &in); err != nil {
		return nil, err
	}
	source := or(in.SourceName, unknownSource)
	raw, t, err := extract(or(in.CSVData, ""), source)
	if err != nil {
		return nil, necro.Permanent(fmt.Errorf("read csv_data of %s: %w", source, err))
	}
	if len(t.long) > 0 {
		a.log.WarnContext(ctx, "rows with more values than headers; the extra values are dropped",
			slog.String("source", source), slog.Any("lines", t.long))
	}
	a.log.InfoContext(ctx, "csv extracted", slog.String("source", source),
		slog.Int("columns", len(raw.Headers)), slog.Int("rows", raw.RowCount))
	return emit(typeRawLoaded, raw)
}

// cleanData is the CleanData organ: RAW_DATA_LOADED → DATA_CLEANED. It removes every
// record with an empty or null value, or without a value for one of the headers (a
// short CSV row, which the seed let through), and counts them in removed_count. In the
// records it keeps, string values are stripped and lowercased; other values stay.
func (a *App) cleanData(ctx context.Context, ev necro.Event) ([]necro.Event, error) {
	var in struct {
		SourceName *string          `json:"source_name"`
		Headers    []string         `json:"headers"`
		Records    []map[string]any `json:"records"`
	}
	if err := decode(ev, &in); err != nil {
		return nil, err
	}
	out := cleaned{SourceName: or(in.SourceName, unknownSource), Headers: in.Headers, Records: []map[string]any{}}
	if out.Headers == nil {
		out.Headers = []string{}
	}
	for _, rec := range in.Records {
		if !filled(rec, in.Headers) {
			out.RemovedCount++
			continue
		}
		c := make(map[string]any, len(rec))
		for k, v := range rec {
			if s, ok := v.(string); ok {
				v = strings.ToLower(strings.TrimSpace(s))
			}
			c[k] = v
		}
		out.Records = append(out.Records, c)
	}
	out.RowCount = len(out.Records)
	a.log.InfoContext(ctx, "data cleaned", slog.String("source", out.SourceName),
		slog.Int("rows", out.RowCount), slog.Int("removed", out.RemovedCount))
	return emit(typeCleaned, out)
}

// filled reports whether rec has a value for every header and no empty or null
// value. The test is on the values as they came, before stripping, as in the seed.
func filled(rec map[string]any, headers []string) bool {
	for _, v := range rec {
		if v == nil || v == "" {
			return false
		}
	}
	for _, h := range headers {
		if _, ok := rec[h]; !ok {
			return false
		}
	}
	return true
}

// transformData is the TransformData organ: DATA_CLEANED → DATA_TRANSFORMED. For each
// header, in header order, the values that Python's float() reads give the column's
// min, max, sum, avg and count; a column without such a value gets no entry. Infinite
// and NaN values are left out: JSON cannot carry them.
func (a *App) transformData(ctx context.Context, ev necro.Event) ([]necro.Event, error) {
	var in struct {
		SourceName *string          `json:"source_name"`
		Headers    []string         `json:"headers"`
		Records    []map[string]any `json:"records"`
	}
	if err := decode(ev, &in); err != nil {
		return nil, err
	}
	out := transformed{SourceName: or(in.SourceName, unknownSource), Headers: in.Headers, Records: in.Records,
		RowCount: len(in.Records), NumericStats: orderedObject{}}
	if out.Headers == nil {
		out.Headers = []string{}
	}
	if out.Records == nil {
		out.Records = []map[string]any{}
	}
	for _, h := range in.Headers {
		// A repeated header gets one entry, at its first place, as in the seed's dict.
		if slices.ContainsFunc(out.NumericStats, func(m member) bool { return m.Key == h }) {
			continue
		}
		var st columnStats
		for _, rec := range in.Records {
			f, ok := numberOf(rec[h])
			if !ok || math.IsInf(f, 0) || math.IsNaN(f) {
				continue
			}
			if st.Count == 0 || f < st.Min {
				st.Min = f
			}
			if st.Count == 0 || f > st.Max {
				st.Max = f
			}
			st.Sum += f
			st.Count++
		}
		if st.Count == 0 {
			continue
		}
		st.Avg = st.Sum / float64(st.Count)
		v, err := json.Marshal(st)
		if err != nil {
			return nil, err
		}
		out.NumericStats = append(out.NumericStats, member{Key: h, Value: v})
	}
	a.log.InfoContext(ctx, "data transformed", slog.String("source", out.SourceName),
		slog.Int("rows", out.RowCount), slog.Int("numeric_columns", len(out.NumericStats)))
	return emit(typeTransformed, out)
}

// exportSummary is the ExportSummary organ: DATA_TRANSFORMED → ETL_COMPLETE. It writes
// the seed's summary text and keeps it in the App for [App.Report]; numeric_stats are
// printed in the order the payload lists them, and a statistic that is not a number
// prints as N/A, as in the seed.
func (a *App) exportSummary(ctx context.Context, ev necro.Event) ([]necro.Event, error) {
	var in struct {
		SourceName   *string       `json:"source_name"`
		RowCount     *json.Number  `json:"row_count"`
		Headers      []string      `json:"headers"`
		NumericStats orderedObject `json:"numeric_stats"`
	}
	if err := decode(ev, &in); err != nil {
		return nil, err
	}
	s := summary{SourceName: or(in.SourceName, unknownSource), RowCount: "0", Columns: in.Headers,
		NumericStats: []columnSummary{}}
	if in.RowCount != nil {
		s.RowCount = *in.RowCount
	}
	if s.Columns == nil {
		s.Columns = []string{}
	}
	lines := []string{
		fmt.Sprintf("=== ETL Summary for '%s' ===", s.SourceName),
		"Total rows processed: " + s.RowCount.String(),
		"Columns: " + strings.Join(s.Columns, ", "),
	}
	if len(in.NumericStats) > 0 {
		lines = append(lines, "\nNumeric Statistics:")
		for _, m := range in.NumericStats {
			var stats any
			if err := decodeValue(m.Value, &stats); err != nil {
				return nil, necro.Permanent(fmt.Errorf("read numeric_stats of %q: %w", m.Key, err))
			}
			obj, ok := stats.(map[string]any)
			if !ok {
				continue // the seed skips a column whose stats are not a dict
			}
			cs := columnSummary{Column: m.Key}
			var text [4]string
			for i, st := range []struct {
				key string
				dst **float64
			}{{"min", &cs.Min}, {"max", &cs.Max}, {"avg", &cs.Avg}, {"sum", &cs.Sum}} {
				f, ok := numberOf(obj[st.key])
				if !ok {
					text[i] = "N/A"
					continue
				}
				text[i] = fixed2(f)
				if !math.IsInf(f, 0) && !math.IsNaN(f) {
					*st.dst = &f
				}
			}
			lines = append(lines, fmt.Sprintf("  %s: min=%s, max=%s, avg=%s, sum=%s", m.Key, text[0], text[1], text[2], text[3]))
			s.NumericStats = append(s.NumericStats, cs)
		}
	}
	s.Text = strings.Join(lines, "\n")

	a.mu.Lock()
	a.summaries = append(a.summaries, s)
	a.mu.Unlock()
	a.log.InfoContext(ctx, "summary exported", slog.String("source", s.SourceName), slog.String("rows", s.RowCount.String()))

	return emit(typeComplete, completion{SourceName: s.SourceName, RowCount: s.RowCount})
}

// decodeValue reads one JSON value with numbers as json.Number.
func decodeValue(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	return dec.Decode(v)
}
