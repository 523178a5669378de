package smtpd

import "bytes"

// sequenceReplies maps go-smtp's replies to commands out of sequence onto
// RFC 5321's: 503 is "bad sequence of commands" (§4.1.1.4: DATA without a
// valid recipient gets 503, or 554 "no valid recipients"; §4.3.2), 502 is
// "command not implemented", which tells a client the server will never
// take it. go-smtp answers these itself, before the session is asked, with
// 502 5.5.1; BDAT without a recipient gets the same reply as DATA.
var sequenceReplies = []struct{ from, to []byte }{
	{[]byte("502 5.5.1 Missing RCPT TO command.\r\n"), []byte("503 5.5.1 Bad sequence of commands: no valid recipients\r\n")},
	{[]byte("502 5.5.1 Missing MAIL FROM command.\r\n"), []byte("503 5.5.1 Bad sequence of commands: MAIL FROM first\r\n")},
	{[]byte("502 5.5.1 Please introduce yourself first.\r\n"), []byte("503 5.5.1 Bad sequence of commands: HELO or EHLO first\r\n")},
}

// sequenceReply returns p with a 502 of go-smtp's for a command out of
// sequence replaced by its 503; p itself otherwise. go-smtp writes each
// reply line by line, so a reply is one whole write.
func sequenceReply(p []byte) []byte {
	if !bytes.HasPrefix(p, []byte("502 5.5.1 ")) {
		return p
	}
	for _, r := range sequenceReplies {
		if bytes.Equal(p, r.from) {
			return r.to
		}
	}
	return p
}
