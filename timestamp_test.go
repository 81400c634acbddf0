package necro_test

import (
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/necrostack/necro"
)

func TestDraftTimestampRoundTripProperty(t *testing.T) {
	// Keep a day away from the ends of years 1..9999 so any zone offset stays inside.
	lo := time.Date(1, 1, 2, 0, 0, 0, 0, time.UTC).Unix()
	hi := time.Date(9999, 12, 30, 0, 0, 0, 0, time.UTC).Unix()
	rapid.Check(t, func(rt *rapid.T) {
		offset := rapid.IntRange(-14*60, 14*60).Draw(rt, "offset minutes")
		zone := time.FixedZone("z", offset*60)
		ts := time.Unix(rapid.Int64Range(lo, hi).Draw(rt, "unix"), rapid.Int64Range(0, 999_999_999).Draw(rt, "nanos")).In(zone)
		ev := build(t, necro.Draft{Type: "T", Timestamp: ts})
		want := ts.UTC().Truncate(time.Microsecond)
		if got := ev.Timestamp(); !got.Equal(want) || got.Location() != time.UTC {
			rt.Fatalf("Draft{Timestamp: %v}.Build().Timestamp() = %v, want %v in UTC", ts, got, want)
		}
		data, err := ev.MarshalJSON()
		if err != nil {
			rt.Fatal(err)
		}
		got, err := necro.DecodeEvent(data)
		if err != nil || !got.Equal(ev) {
			rt.Fatalf("DecodeEvent(%s) = %v, %v; want %v", data, got, err, ev)
		}
	})
}

func TestDraftTimestampOutsidePythonRangeRejected(t *testing.T) {
	for _, ts := range []time.Time{
		time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(0, 12, 31, 0, 0, 0, 0, time.UTC),
		time.Date(-5, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(1, 1, 1, 0, 30, 0, 0, time.FixedZone("", 3600)),
	} {
		_, err := necro.Draft{Type: "T", Timestamp: ts}.Build()
		checkInvalid(t, err, "timestamp", "timestamp")
	}
}

func TestNewEventTimestampIsNowInUTCMicroseconds(t *testing.T) {
	before := time.Now().Truncate(time.Microsecond)
	ts := newEvent(t, "T", nil).Timestamp()
	after := time.Now()
	if ts.Before(before) || ts.After(after) || ts.Location() != time.UTC || ts.Nanosecond()%1000 != 0 {
		t.Errorf("Timestamp() = %v, want UTC µs between %v and %v", ts, before, after)
	}
}

func TestParseTimestamp(t *testing.T) {
	want := time.Date(2025, 1, 15, 10, 30, 45, 123456000, time.UTC)
	for _, s := range []string{
		"2025-01-15T10:30:45.123456+00:00", "2025-01-15T10:30:45.123456Z", "2025-01-15T10:30:45.123456",
		"2025-01-15T10:30:45.1234569Z", "2025-01-15T05:30:45.123456-05:00",
	} {
		if got, err := necro.ParseTimestamp(s); err != nil || !got.Equal(want) || got.Location() != time.UTC {
			t.Errorf("ParseTimestamp(%q) = %v, %v; want %v", s, got, err, want)
		}
	}
	for _, s := range []string{"", "2025-01-15", "10:30:45", "2025-01-15 10:30:45+00:00x", "now"} {
		if _, err := necro.ParseTimestamp(s); err == nil {
			t.Errorf("ParseTimestamp(%q) = nil error, want one", s)
		}
	}
}

func BenchmarkParseTimestamp(b *testing.B) {
	for _, bm := range []struct{ name, s string }{
		{"layout", "2025-01-15T10:30:45.123456+00:00"}, // as TimestampLayout writes it
		{"other", "2025-01-15T10:30:45Z"},
	} {
		b.Run(bm.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := necro.ParseTimestamp(bm.s); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
