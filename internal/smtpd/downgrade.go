// 8-bit content for the smarthost, made 7-bit before the plugins sign it.

package smtpd

import (
	"github.com/elemta/elemta/internal/mime7bit"
	"github.com/elemta/elemta/registry"
)

// downgrade returns raw converted to 7-bit (internal/mime7bit) when
// Config.Downgrade8Bit is on, some recipient goes to the smarthost and raw
// has 8-bit content; nil to keep raw. Converting here, before the
// post-reception and pre-queue stages, means a DKIM signature or ARC seal
// of ours covers the bytes the smarthost gets, whether it offers 8BITMIME
// or not (the relay would otherwise convert after signing, breaking the
// signature). A message that cannot be converted (8-bit header fields of
// SMTPUTF8, a broken MIME structure) is kept: the relay sends it as it is
// to a smarthost with 8BITMIME, or bounces it with 5.6.3.
func (s *session) downgrade(raw []byte, env registry.Envelope) []byte {
	if !s.be.cfg.Downgrade8Bit || !s.be.cfg.RelayAuthenticated || !mime7bit.Needs(raw) {
		return nil
	}
	relayed := false
	for _, r := range env.RcptTo {
		relayed = relayed || !s.toMaildir(r)
	}
	if !relayed {
		return nil
	}
	conv, err := mime7bit.Convert(raw)
	if err != nil {
		s.log.Info("8-bit message for the smarthost kept as it is", "err", err)
		return nil
	}
	return conv
}
