package zoom

import (
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Vectors computed independently with openssl (`openssl dgst -sha256 -hmac KEY`).
func TestSignKnownVector(t *testing.T) {
	body := []byte(`{"event":"meeting.started"}`)
	got := Sign([]byte("webhook-secret"), "1764856000", body)
	want := "v0=4f09830bca8aca6b7c904e8654582e223c9f38c3768f736d9aa88485c9a919f2"
	if got != want {
		t.Fatalf("Sign: got %s, want %s", got, want)
	}
}

func TestEncryptTokenKnownVector(t *testing.T) {
	for _, tc := range []struct {
		name, secret, plain, want string
	}{
		// RFC 4231, test case 2.
		{"rfc4231-case2", "Jefe", "what do ya want for nothing?", "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"},
		// The plainToken of shared/zoom/payloads/endpoint.url_validation.json.
		{"zoom-payload", "webhook-secret", "qgg8vlvZRS6UYooatFL8Aw", "6888178e55e7626f94e88a56224baefbb707ceaa8ec37ce09efc6bbf66b89ea8"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got, want := EncryptToken([]byte(tc.secret), tc.plain), tc.want; got != want {
				t.Fatalf("EncryptToken: got %s, want %s", got, want)
			}
		})
	}
}

func TestVerify(t *testing.T) {
	a, b, c := []byte("secret-a"), []byte("secret-b"), []byte("secret-c")
	ts := "1764856000"
	body := []byte(`{"event":"meeting.started","payload":{}}`)
	for _, tc := range []struct {
		name    string
		secrets [][]byte
		sig     string
		want    []byte // nil: ErrBadSignature
	}{
		{"single secret", [][]byte{a}, Sign(a, ts, body), a},
		{"first of several", [][]byte{a, b, c}, Sign(a, ts, body), a},
		{"second of several", [][]byte{a, b, c}, Sign(b, ts, body), b},
		{"last of several", [][]byte{a, b, c}, Sign(c, ts, body), c},
		{"unknown secret", [][]byte{a, b}, Sign(c, ts, body), nil},
		{"no secrets", nil, Sign(a, ts, body), nil},
		{"missing", [][]byte{a}, "", nil},
		{"prefix only", [][]byte{a}, "v0=", nil},
		{"wrong scheme", [][]byte{a}, "v1=" + strings.TrimPrefix(Sign(a, ts, body), "v0="), nil},
		{"no prefix", [][]byte{a}, strings.TrimPrefix(Sign(a, ts, body), "v0="), nil},
		{"truncated", [][]byte{a}, Sign(a, ts, body)[:40], nil},
		{"extra byte", [][]byte{a}, Sign(a, ts, body) + "0", nil},
		{"not hex", [][]byte{a}, "v0=" + strings.Repeat("zz", 32), nil},
		{"uppercase hex", [][]byte{a}, "v0=" + strings.ToUpper(strings.TrimPrefix(Sign(a, ts, body), "v0=")), nil},
		{"uppercase scheme", [][]byte{a}, "V0=" + strings.TrimPrefix(Sign(a, ts, body), "v0="), nil},
		{"one bit off", [][]byte{a}, flipLastHex(Sign(a, ts, body)), nil},
		{"other timestamp", [][]byte{a}, Sign(a, "1764856001", body), nil},
		{"other body", [][]byte{a}, Sign(a, ts, append(append([]byte{}, body...), ' ')), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := NewSignatures(tc.secrets).Verify(ts, body, tc.sig)
			if tc.want == nil {
				if !errors.Is(err, ErrBadSignature) || got != nil {
					t.Fatalf("Verify: got (%q, %v), want ErrBadSignature", got, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if got, want := string(got), string(tc.want); got != want {
				t.Fatalf("Verify returned secret %q, want %q", got, want)
			}
		})
	}
}

func flipLastHex(sig string) string {
	last := sig[len(sig)-1]
	if last == '0' {
		last = '1'
	} else {
		last = '0'
	}
	return sig[:len(sig)-1] + string(last)
}

func TestCheckTimestamp(t *testing.T) {
	now := time.Unix(1764856000, 0)
	skew := 5 * time.Minute
	at := func(d time.Duration) string { return strconv.FormatInt(now.Add(d).Unix(), 10) }
	for _, tc := range []struct {
		name string
		ts   string
		want error
	}{
		{"now", at(0), nil},
		{"a minute old", at(-time.Minute), nil},
		{"a minute ahead", at(time.Minute), nil},
		{"exactly max skew old", at(-skew), nil},
		{"exactly max skew ahead", at(skew), nil},
		{"missing", "", ErrBadTimestamp},
		{"letters", "abc", ErrBadTimestamp},
		{"fraction", "1764856000.5", ErrBadTimestamp},
		{"milliseconds", strconv.FormatInt(now.UnixMilli(), 10), ErrBadTimestamp},
		{"negative", "-1764856000", ErrBadTimestamp},
		{"zero", "0", ErrBadTimestamp},
		{"spaces", " 1764856000", ErrBadTimestamp},
		{"trailing space", "1764856000 ", ErrBadTimestamp},
		{"plus sign", "+1764856000", ErrBadTimestamp},
		{"underscores", "1_764_856_000", ErrBadTimestamp},
		{"huge", "99999999999999999999999", ErrBadTimestamp},
		{"date", "2026-12-04T14:00:00Z", ErrBadTimestamp},
		{"too old", at(-skew - time.Second), ErrStale},
		{"an hour old", at(-time.Hour), ErrStale},
		{"too far ahead", at(skew + time.Second), ErrStale},
		{"a day ahead", at(24 * time.Hour), ErrStale},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got, want := CheckTimestamp(tc.ts, now, skew), tc.want; !errors.Is(got, want) {
				t.Fatalf("CheckTimestamp(%q): got %v, want %v", tc.ts, got, want)
			}
		})
	}
	t.Run("other max skew", func(t *testing.T) {
		if err := CheckTimestamp(at(-20*time.Second), now, 10*time.Second); !errors.Is(err, ErrStale) {
			t.Fatalf("20 s old with a 10 s window: got %v, want ErrStale", err)
		}
		if err := CheckTimestamp(at(-20*time.Second), now, time.Minute); err != nil {
			t.Fatalf("20 s old with a 1 min window: %v", err)
		}
	})
}
