package zoom

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// benchPayload reads one of Zoom's example deliveries from payloadDir.
func benchPayload(b *testing.B, name string) []byte {
	b.Helper()
	body, err := os.ReadFile(filepath.Join(payloadDir, name))
	if err != nil {
		b.Fatal(err)
	}
	return body
}

func BenchmarkVerify(b *testing.B) {
	body := benchPayload(b, "meeting.started.json")
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	a, s2, s3 := []byte("bench-secret-a"), []byte("bench-secret-b"), []byte("bench-secret-c")
	for _, bc := range []struct {
		name    string
		secrets [][]byte
		signer  []byte
	}{
		{"secrets=1", [][]byte{a}, a},
		{"secrets=3", [][]byte{a, s2, s3}, s3}, // the match is last
	} {
		b.Run(bc.name, func(b *testing.B) {
			sig := Sign(bc.signer, ts, body)
			v := NewSignatures(bc.secrets)
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				got, err := v.Verify(ts, body, sig)
				if err != nil || &got[0] != &bc.signer[0] {
					b.Fatalf("Verify: %v", err)
				}
			}
		})
	}
}

func BenchmarkCheckTimestamp(b *testing.B) {
	now := time.Now()
	ts := strconv.FormatInt(now.Unix()-30, 10)
	b.ReportAllocs()
	for b.Loop() {
		if err := CheckTimestamp(ts, now, 5*time.Minute); err != nil {
			b.Fatal(err)
		}
	}
}
