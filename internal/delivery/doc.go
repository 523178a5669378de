// Package delivery takes messages from the spool, runs the pre-delivery
// stage, delivers each recipient's copy into a local Maildir under a
// configured root (<root>/<domain>/<local-part>/{tmp,new,cur}) or relays
// the message to a smarthost over SMTP, runs the post-delivery stage and
// settles the spool entry: complete, deferred with backoff, quarantined,
// or bounced with an RFC 3464 DSN to the sender.
//
// Delivery is idempotent: a copy's Maildir file name is derived from the
// queue id and the recipient's position, so after a crash between writing
// the copy and updating the spool, the retry finds the copy and does not
// write it again. Every message acknowledged with 250 reaches each
// recipient exactly once. (Relaying is at least once: a smarthost's 250
// lost to a crash or a cancellation sends the message again.)
//
// # At reception
//
// Worker.DeliverNow writes a message that was never spooled into its
// recipients' Maildirs, as an attempt would (same code, same names), for
// the receiver to acknowledge it without a spool entry; DeliversNow says
// when that is allowed (no recipient for the smarthost, no pre-delivery or
// post-delivery plugin). A copy that fails spools the message for the
// recipients not yet delivered.
//
// # Workers
//
// Two pools share the work, so that a slow or silent smarthost never
// delays local delivery. Config.Concurrency local workers run the
// pre-delivery stage and write the Maildir copies; entries are claimed
// from the spool only as they free up. An attempt with recipients for the
// smarthost then goes into a queue of Config.RelayQueue places served by
// Config.RelayConcurrency relay workers; when the queue is full the entry
// is put back unrecorded and claimed again when there is room (after
// RetryBase at the latest). A stuck smarthost holds the relay workers and
// the queued attempts, nothing else.
//
// # Timeouts
//
// Each wait for the smarthost is bounded by its own timeout (Timeouts):
// the TCP connect, then RFC 5321 §4.5.3.2's initial 220 (also EHLO and
// STARTTLS), MAIL (also QUIT), RCPT, DATA initiation, each data block
// (64 KiB) and DATA termination. An expired timeout defers the relayed
// recipients with 451 4.4.2 (4.4.1 for the connect) naming the phase.
//
// # SMTPUTF8 and 8BITMIME
//
// The relay fits each message to the smarthost's EHLO (Worker.prepare):
// a message received with SMTPUTF8 that needs it (a UTF-8 address or
// header field) goes with MAIL FROM ... SMTPUTF8, or bounces with 5.6.7
// when it is not offered (RFC 6531 §3.2); 8-bit content for a smarthost
// without 8BITMIME is converted to 7-bit (internal/mime7bit), or bounced
// with 5.6.3 where it cannot be (RFC 6152 §3). Bounces about UTF-8
// addresses are RFC 6533 DSNs (BuildDSN). Local Maildirs are named by
// internal/mailbox, whose rules the receiver applies at RCPT.
//
// # Shutdown
//
// Worker.Shutdown stops claiming and lets the attempts in flight finish
// until its context ends; then it cancels them, which closes their
// smarthost connections at once. A cancelled attempt is not recorded:
// the entry is released as it was (no attempt counted, no DSN), its
// Maildir copies are found by the retry, and after a restart it is due at
// once.
package delivery
