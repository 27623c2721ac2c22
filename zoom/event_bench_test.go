package zoom

import "testing"

func BenchmarkParse(b *testing.B) {
	for _, name := range []string{"meeting.started", "meeting.participant_joined"} {
		b.Run(name, func(b *testing.B) {
			body := benchPayload(b, name+".json")
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				ev, err := Parse(body)
				if err != nil || ev.Object == nil || ev.Name != name {
					b.Fatalf("Parse: %v", err)
				}
			}
		})
	}
}
