package registry

// Metrics lets a plugin publish metrics of its own (clamav: infections by
// signature; rspamd: actions) without importing the host or a metrics
// library. Host.Metrics is already scoped to the plugin instance: the host
// names a metric elemta_plugin_<plugin>_<name> and adds the label
// plugin="<instance ID>", so two instances of one plugin share a metric
// and differ by that label.
//
// Constructors are called from New or Start. A name is lowercase letters,
// digits and underscores, starting with a letter; a counter's ends in
// "_total", a histogram's in its unit ("_seconds", "_bytes"). Asking twice
// for the same name with the same labels returns the same metric; a name
// reused with other labels, help or kind is an error. Label values come
// from outside (a signature name, an action): the host bounds how many
// distinct value sets one metric keeps, and counts the rest under the
// value "other".
type Metrics interface {
	Counter(name, help string, labels ...string) (Counter, error)
	Histogram(name, help string, buckets []float64, labels ...string) (Histogram, error)
}

// Counter is a monotonic counter with labels. The label values are given
// in the order of the labels the counter was made with; a call with the
// wrong number of them is ignored.
type Counter interface {
	Add(v float64, labelValues ...string)
}

// Histogram observes values (durations in seconds, sizes in bytes) into
// buckets.
type Histogram interface {
	Observe(v float64, labelValues ...string)
}

// NopMetrics is the Metrics of a host that collects none (tests, the
// `elemta scan` command): every metric it returns does nothing.
type NopMetrics struct{}

// Counter returns a counter that counts nothing.
func (NopMetrics) Counter(string, string, ...string) (Counter, error) { return nop{}, nil }

// Histogram returns a histogram that observes nothing.
func (NopMetrics) Histogram(string, string, []float64, ...string) (Histogram, error) {
	return nop{}, nil
}

type nop struct{}

func (nop) Add(float64, ...string)     {}
func (nop) Observe(float64, ...string) {}

var (
	_ Metrics   = NopMetrics{}
	_ Counter   = nop{}
	_ Histogram = nop{}
)
