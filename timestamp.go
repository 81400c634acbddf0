package necro

import (
	"fmt"
	"time"
)

// TimestampLayout is how an event's timestamp travels on the wire: UTC, microseconds,
// and a "+00:00" offset, which Python's datetime.fromisoformat reads back unchanged.
const TimestampLayout = "2006-01-02T15:04:05.000000-07:00"

// ParseTimestamp reads an ISO 8601 time as the wire allows it and returns it in UTC,
// truncated to microseconds. A time without an offset is read as UTC.
func ParseTimestamp(s string) (time.Time, error) {
	if t, ok := parseLayoutTimestamp(s); ok {
		return t, nil
	}
	return parseTimestampGeneral(s)
}

// parseTimestampGeneral is ParseTimestamp for any layout it allows.
func parseTimestampGeneral(s string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		var err2 error
		if t, err2 = time.Parse("2006-01-02T15:04:05.999999999", s); err2 != nil {
			return time.Time{}, err
		}
	}
	return t.UTC().Truncate(time.Microsecond), nil
}

// checkTime rejects a UTC time outside years 1 to 9999: [TimestampLayout] cannot write
// it so that it reads back, and Python's datetime cannot hold it.
func checkTime(t time.Time) error {
	if y := t.Year(); y < 1 || y > 9999 {
		return invalid("timestamp", fmt.Sprintf("year %d in UTC is outside 1 to 9999", y))
	}
	return nil
}

// parseLayoutTimestamp reads s when it is a UTC time written exactly as
// [TimestampLayout] writes it, "2006-01-02T15:04:05.000000+00:00", and reports false
// for anything else. What it accepts, time.Parse accepts too, as the same time.
func parseLayoutTimestamp[S string | []byte](s S) (time.Time, bool) {
	if !inLayoutShape(s) {
		return time.Time{}, false
	}
	year, ok1 := fixedDigits(s, 0, 4)
	month, ok2 := fixedDigits(s, 5, 2)
	day, ok3 := fixedDigits(s, 8, 2)
	hour, ok4 := fixedDigits(s, 11, 2)
	minute, ok5 := fixedDigits(s, 14, 2)
	second, ok6 := fixedDigits(s, 17, 2)
	micros, ok7 := fixedDigits(s, 20, 6)
	if !(ok1 && ok2 && ok3 && ok4 && ok5 && ok6 && ok7) ||
		month < 1 || month > 12 || day < 1 || day > daysIn(time.Month(month), year) ||
		hour > 23 || minute > 59 || second > 59 {
		return time.Time{}, false
	}
	return time.Date(year, time.Month(month), day, hour, minute, second, micros*1000, time.UTC), true
}

// inLayoutShape reports whether s is as long as [TimestampLayout] and holds its
// punctuation between the digits, with the offset "+00:00".
func inLayoutShape[S string | []byte](s S) bool {
	return len(s) == len(TimestampLayout) && s[4] == '-' && s[7] == '-' && s[10] == 'T' && s[13] == ':' &&
		s[16] == ':' && s[19] == '.' && s[26] == '+' && s[27] == '0' && s[28] == '0' && s[29] == ':' &&
		s[30] == '0' && s[31] == '0'
}

// fixedDigits reads the n decimal digits at s[i:], reporting false if any is not one.
func fixedDigits[S string | []byte](s S, i, n int) (int, bool) {
	v := 0
	for k := i; k < i+n; k++ {
		c := s[k]
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + int(c-'0')
	}
	return v, true
}

// daysIn returns the number of days in month m of year, by the proleptic Gregorian
// calendar time.Parse checks days against.
func daysIn(m time.Month, year int) int {
	switch m {
	case time.February:
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			return 29
		}
		return 28
	case time.April, time.June, time.September, time.November:
		return 30
	}
	return 31
}
