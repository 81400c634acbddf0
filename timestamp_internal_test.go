package necro

import "testing"

func FuzzParseTimestamp(f *testing.F) {
	for _, s := range []string{"2025-01-15T10:30:45.123456+00:00", "0001-01-01T00:00:00.000000+00:00", "9999-12-31T23:59:59.999999+00:00",
		"2024-02-29T00:00:00.000000+00:00", "2023-02-29T00:00:00.000000+00:00", "2025-01-15T24:00:00.000000+00:00",
		"2025-01-15T10:30:60.000000+00:00", "2025-01-15T10:30:45.123456-00:00", "2025-01-15T10:30:45.123456Z",
		"2025-01-15t10:30:45.123456+00:00", "2025-01-15T10:30:45,123456+00:00", "+025-01-15T10:30:45.123456+00:00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want, wantErr := parseTimestampGeneral(s)
		if got, ok := parseLayoutTimestamp(s); ok && (wantErr != nil || got != want) {
			t.Fatalf("parseLayoutTimestamp(%q) = %v; time.Parse gives %v, %v", s, got, want, wantErr)
		}
		if got, ok := parseLayoutTimestamp([]byte(s)); ok && (wantErr != nil || got != want) {
			t.Fatalf("parseLayoutTimestamp([]byte(%q)) = %v; time.Parse gives %v, %v", s, got, want, wantErr)
		}
		got, err := ParseTimestamp(s)
		if got != want || (err == nil) != (wantErr == nil) || err != nil && err.Error() != wantErr.Error() {
			t.Fatalf("ParseTimestamp(%q) = %v, %v; want %v, %v", s, got, err, want, wantErr)
		}
		// Whatever TimestampLayout writes, the fast parser reads.
		if wantErr == nil && checkTime(want) == nil {
			out := want.Format(TimestampLayout)
			if back, ok := parseLayoutTimestamp(out); !ok || back != want {
				t.Fatalf("parseLayoutTimestamp(%q) = %v, %v; want %v", out, back, ok, want)
			}
		}
	})
}
