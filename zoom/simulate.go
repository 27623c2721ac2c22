package zoom

import (
	"crypto/rand"
	"encoding/base64"
	"math/big"
	"strconv"
)

// NewMeetingUUID makes a meeting uuid shaped like Zoom's, for simulated
// meetings: base64 of 16 bytes, so '/', '+' and '=' occur as in real ones.
func NewMeetingUUID() string {
	b := make([]byte, 16)
	rand.Read(b)
	return base64.StdEncoding.EncodeToString(b)
}

// NewMeetingNumber makes an 11-digit meeting number, for simulated meetings.
func NewMeetingNumber() string {
	n, _ := rand.Int(rand.Reader, big.NewInt(9e10))
	return strconv.FormatInt(n.Int64()+1e10, 10)
}
