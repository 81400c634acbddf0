package app

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
)

// A table is a CSV text read the way the seed's ExtractCSV reads it: the first line
// holds the headers, each later line one record.
type table struct {
	headers []string
	records []map[string]string
	// long lists the lines of the records that had more values than there are headers;
	// the extra values are dropped, as the seed's zip drops them.
	long []int
}

// parseCSV reads text as the seed's ExtractCSV does, except that quoted fields are read
// as CSV quotes them (encoding/csv), so a quoted value may hold commas, quotes ("") and
// line breaks. What stays as in the seed:
//   - every header and value is stripped of surrounding white space;
//   - blank lines (white space only) are skipped, and a text with no line left gives no
//     headers and no records;
//   - each record pairs its values with the headers by position: values beyond the last
//     header are dropped, and a short row simply lacks its missing trailing columns (it
//     has no key for them, not an empty value). CleanData then removes such a record;
//   - a repeated header keeps the last of its values.
//
// Quoting is strict, as RFC 4180 has it: a quote inside an unquoted value, or anything
// but a comma or a line end after a closing quote, is an error, where the seed took the
// quote as a character; guessing there would silently merge or split values. The
// error, a *csv.ParseError, gives the line and column.
func parseCSV(text string) (table, error) {
	t := table{headers: []string{}, records: []map[string]string{}}
	r := csv.NewReader(strings.NewReader(text))
	r.FieldsPerRecord = -1    // rows may be short or long, as in the seed
	r.TrimLeadingSpace = true // so that a quote after ", " opens a quoted value
	first := true
	for {
		fields, err := r.Read()
		if errors.Is(err, io.EOF) {
			return t, nil
		}
		if err != nil {
			return table{}, err
		}
		// encoding/csv skips empty lines but not lines of spaces, which the seed skipped.
		if len(fields) == 1 && strings.TrimSpace(fields[0]) == "" {
			continue
		}
		if first {
			first = false
			for _, h := range fields {
				t.headers = append(t.headers, strings.TrimSpace(h))
			}
			continue
		}
		rec := make(map[string]string, min(len(fields), len(t.headers)))
		for i, h := range t.headers {
			if i == len(fields) {
				break
			}
			rec[h] = strings.TrimSpace(fields[i])
		}
		if len(fields) > len(t.headers) {
			line, _ := r.FieldPos(0)
			t.long = append(t.long, line)
		}
		t.records = append(t.records, rec)
	}
}

// pyFloat converts s as Python's float(s) does: surrounding white space is ignored,
// digits may be grouped with single underscores, and "inf", "infinity" and "nan" are
// read in any case, with a sign or none. Hexadecimal forms, which strconv accepts and
// Python does not, are refused. ok is false when Python would raise ValueError.
func pyFloat(s string) (f float64, ok bool) {
	s = strings.TrimSpace(s)
	digits := strings.TrimLeft(s, "+-")
	if len(digits) > 1 && digits[0] == '0' && (digits[1] == 'x' || digits[1] == 'X') {
		return 0, false
	}
	f, err := strconv.ParseFloat(s, 64)
	var ne *strconv.NumError
	if errors.As(err, &ne) && errors.Is(ne.Err, strconv.ErrRange) {
		return f, true // Python gives inf for 1e400 and 0.0 for 1e-400 too
	}
	return f, err == nil
}

// numberOf returns what Python's float(v) gives for a JSON value decoded with numbers
// as json.Number: a number, a numeric string, or a bool (1 or 0). ok is false where
// Python would raise ValueError or TypeError (null, objects, lists, other strings).
func numberOf(v any) (f float64, ok bool) {
	switch v := v.(type) {
	case string:
		return pyFloat(v)
	case json.Number:
		return pyFloat(string(v))
	case bool:
		if v {
			return 1, true
		}
		return 0, true
	}
	return 0, false
}

// fixed2 formats f as Python's f"{f:.2f}" does, "inf", "-inf" and "nan" included.
func fixed2(f float64) string {
	switch {
	case math.IsNaN(f):
		return "nan"
	case math.IsInf(f, 1):
		return "inf"
	case math.IsInf(f, -1):
		return "-inf"
	}
	return strconv.FormatFloat(f, 'f', 2, 64)
}

// orderedObject is a JSON object whose members keep their order, as a Python dict
// does. numeric_stats is one: the seed builds it in header order and ExportSummary
// prints it in that order, so it must come out of the wire in the order it went in.
type orderedObject []member

// A member is one key of an [orderedObject] with its value as JSON text.
type member struct {
	Key   string
	Value json.RawMessage
}

// MarshalJSON writes the members in order.
func (o orderedObject) MarshalJSON() ([]byte, error) {
	b := []byte{'{'}
	for i, m := range o {
		if i > 0 {
			b = append(b, ',')
		}
		key, err := json.Marshal(m.Key)
		if err != nil {
			return nil, err
		}
		b = append(b, key...)
		b = append(b, ':')
		b = append(b, m.Value...)
	}
	return append(b, '}'), nil
}

// UnmarshalJSON reads an object keeping its members' order; null gives no members. A
// repeated key keeps its first place and its last value, as Python's json.loads does.
func (o *orderedObject) UnmarshalJSON(data []byte) error {
	if string(bytes.TrimSpace(data)) == "null" {
		*o = nil
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return errors.New("must be a JSON object")
	}
	out := orderedObject{}
	at := map[string]int{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		key, _ := tok.(string) // inside an object a key is always a string
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return fmt.Errorf("value of %q: %w", key, err)
		}
		if i, seen := at[key]; seen {
			out[i].Value = v
			continue
		}
		at[key] = len(out)
		out = append(out, member{Key: key, Value: v})
	}
	*o = out
	return nil
}
