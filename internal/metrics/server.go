package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/elemta/elemta/internal/delivery"
	"github.com/elemta/elemta/internal/resolver"
	"github.com/elemta/elemta/internal/smtpd"
	"github.com/elemta/elemta/internal/spool"
)

// Sources are the server's parts whose counters are read at each scrape;
// nil ones are left out.
type Sources struct {
	SMTP     func() smtpd.Stats
	Spool    func() *spool.Spool // the spool of the server serving now (an upgrade's rollback reopens it)
	Delivery func() delivery.Stats
	Resolver func() resolver.Stats
	Now      func() time.Time
}

// Server registers the metrics of a running server's parts.
func (m *Metrics) Server(src Sources) {
	if src.Now == nil {
		src.Now = time.Now
	}
	m.register(&serverCollector{src: src})
}

type serverCollector struct{ src Sources }

type desc struct {
	d    *prometheus.Desc
	kind prometheus.ValueType
}

func counter(name, help string, labels ...string) desc {
	return desc{prometheus.NewDesc(name, help, labels, nil), prometheus.CounterValue}
}

func gauge(name, help string, labels ...string) desc {
	return desc{prometheus.NewDesc(name, help, labels, nil), prometheus.GaugeValue}
}

var (
	smtpConnections    = counter("elemta_smtp_connections_total", "SMTP connections admitted.")
	smtpOpen           = gauge("elemta_smtp_connections_current", "SMTP connections open now.")
	smtpRefused        = counter("elemta_smtp_connections_refused_total", "SMTP connections refused over max_connections, max_connections_per_client or for want of file descriptors.")
	smtpCut            = counter("elemta_smtp_sessions_cut_total", "SMTP sessions cut by a limit, by reason.", "reason")
	smtpTransactions   = counter("elemta_smtp_transactions_total", "SMTP transactions that reached the end of DATA, by outcome.", "outcome")
	smtpReplies        = counter("elemta_smtp_replies_total", "SMTP replies by class, on plaintext connections (after STARTTLS they are opaque to the connection guard).", "class")
	smtpStartTLS       = counter("elemta_smtp_starttls_total", "STARTTLS commands accepted.")
	smtpAuth           = counter("elemta_smtp_auth_total", "AUTH attempts by result.", "result")
	spoolQueued        = gauge("elemta_spool_queued", "Messages in the queue (held ones not counted).")
	spoolClaimed       = gauge("elemta_spool_in_delivery", "Queued messages a delivery attempt holds now.")
	spoolOldest        = gauge("elemta_spool_oldest_age_seconds", "Age of the oldest queued message (0 with an empty queue).")
	spoolQuarantined   = gauge("elemta_spool_quarantined", "Messages in quarantine.")
	spoolHeld          = gauge("elemta_spool_held", "Messages an operator put on hold.")
	deliveryAttempts   = counter("elemta_delivery_attempts_total", "Settled delivery attempts, by result: complete (nothing left to retry) or deferred.", "result")
	deliveryRecipients = counter("elemta_delivery_recipients_total", "Recipients of settled attempts, by outcome: delivered, failed (bounced) or deferred.", "outcome")
	deliveryDSNs       = counter("elemta_delivery_dsns_total", "Delivery status notifications (bounces) spooled.")
	deliveryAtRcpt     = counter("elemta_delivery_at_reception_total", "Messages delivered whole to the Maildirs before their 250, never spooled (deliver_at_reception).")
	resolverQueries    = counter("elemta_resolver_exchanges_total", "DNS queries sent to a server (UDP and TCP each count).")
	resolverCache      = counter("elemta_resolver_cache_total", "DNS questions by where the answer came from: hit (cache), miss, coalesced (waited for an identical one), static (the static zone).", "result")
	resolverEvictions  = counter("elemta_resolver_cache_evictions_total", "Live DNS cache entries dropped because the cache was full.")
	resolverQuestions  = counter("elemta_resolver_questions_total", "DNS lookups (one name and type) by outcome: answered, not_found (NXDOMAIN, NODATA), timeout, failure (SERVFAIL, REFUSED, unreachable, cancelled).", "outcome")
	resolverCacheSize  = gauge("elemta_resolver_cache_entries", "Entries in the DNS cache now.")
	serverDescs        = []desc{smtpConnections, smtpOpen, smtpRefused, smtpCut, smtpTransactions, smtpReplies, smtpStartTLS, smtpAuth, spoolQueued, spoolClaimed, spoolOldest, spoolQuarantined, spoolHeld, deliveryAttempts, deliveryRecipients, deliveryDSNs, deliveryAtRcpt, resolverQueries, resolverCache, resolverEvictions, resolverQuestions, resolverCacheSize}
	replyClasses       = []string{"", "1xx", "2xx", "3xx", "4xx", "5xx"}
)

func (c *serverCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range serverDescs {
		ch <- d.d
	}
}

func emit(ch chan<- prometheus.Metric, d desc, v float64, labels ...string) {
	ch <- prometheus.MustNewConstMetric(d.d, d.kind, v, labels...)
}

func (c *serverCollector) Collect(ch chan<- prometheus.Metric) {
	if f := c.src.SMTP; f != nil {
		s := f()
		emit(ch, smtpConnections, float64(s.Connections))
		emit(ch, smtpOpen, float64(s.OpenConnections))
		emit(ch, smtpRefused, float64(s.RefusedConnections))
		emit(ch, smtpCut, float64(s.Timeouts), "timeout")
		emit(ch, smtpCut, float64(s.TooManyCommandsBeforeHelo), "max_commands_before_helo")
		emit(ch, smtpCut, float64(s.TooManyErrors), "max_errors")
		for outcome, v := range map[string]int64{"accepted": s.Accepted, "quarantined": s.Quarantined, "rejected": s.Rejected,
			"tempfailed": s.TempFailed, "aborted": s.Aborted} {
			emit(ch, smtpTransactions, float64(v), outcome)
		}
		for class := 2; class < len(replyClasses); class++ {
			emit(ch, smtpReplies, float64(s.Replies[class]), replyClasses[class])
		}
		emit(ch, smtpStartTLS, float64(s.StartTLS))
		emit(ch, smtpAuth, float64(s.AuthSuccesses), "success")
		emit(ch, smtpAuth, float64(s.AuthFailures), "failure")
		emit(ch, smtpAuth, float64(s.AuthThrottled), "throttled")
	}
	if c.src.Spool != nil {
		sp := c.src.Spool()
		items := sp.List()
		claimed, oldest := 0, 0.0
		for _, it := range items {
			if it.Claimed {
				claimed++
			}
		}
		if len(items) > 0 { // List is oldest id first
			if t, ok := spool.IDTime(items[0].ID); ok {
				oldest = max(0, c.src.Now().Sub(t).Seconds())
			}
		}
		emit(ch, spoolQueued, float64(len(items)))
		emit(ch, spoolClaimed, float64(claimed))
		emit(ch, spoolOldest, oldest)
		if q, err := sp.Quarantined(); err == nil {
			emit(ch, spoolQuarantined, float64(len(q)))
		}
		if h, err := sp.Held(); err == nil {
			emit(ch, spoolHeld, float64(len(h)))
		}
	}
	if f := c.src.Delivery; f != nil {
		d := f()
		emit(ch, deliveryAttempts, float64(d.Completed), "complete")
		emit(ch, deliveryAttempts, float64(d.Deferred), "deferred")
		emit(ch, deliveryRecipients, float64(d.RcptDelivered), "delivered")
		emit(ch, deliveryRecipients, float64(d.RcptFailed), "failed")
		emit(ch, deliveryRecipients, float64(d.RcptDeferred), "deferred")
		emit(ch, deliveryDSNs, float64(d.DSNs))
		emit(ch, deliveryAtRcpt, float64(d.AtReception))
	}
	if f := c.src.Resolver; f != nil {
		r := f()
		emit(ch, resolverQueries, float64(r.Exchanges))
		emit(ch, resolverCache, float64(r.Hits), "hit")
		emit(ch, resolverCache, float64(r.Misses), "miss")
		emit(ch, resolverCache, float64(r.Coalesced), "coalesced")
		emit(ch, resolverCache, float64(r.Static), "static")
		emit(ch, resolverEvictions, float64(r.Evictions))
		emit(ch, resolverCacheSize, float64(r.Entries))
		answered := r.Questions - r.NotFound - r.Timeouts - r.Failures
		emit(ch, resolverQuestions, float64(answered), "answered")
		emit(ch, resolverQuestions, float64(r.NotFound), "not_found")
		emit(ch, resolverQuestions, float64(r.Timeouts), "timeout")
		emit(ch, resolverQuestions, float64(r.Failures), "failure")
	}
}
