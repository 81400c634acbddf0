package redis

import (
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// Defaults shared with Python NecroStack, so both can work on one stream.
const (
	DefaultURL    = "redis://127.0.0.1:6379/0"
	DefaultStream = "necrostack:events"
	DefaultGroup  = "necrostack"
)

// Off turns off a bound or a feature that is otherwise on by default.
const Off = -1

const (
	defaultNackDelay      = time.Second
	defaultClaimAfter     = 30 * time.Second
	defaultTrimInterval   = time.Second
	defaultForgetAfter    = time.Hour
	defaultBlock          = 100 * time.Millisecond
	defaultSettleRetryFor = time.Minute
	defaultPoolSize       = 16
	defaultHeartbeat      = time.Second
	defaultMemberTimeout  = 5 * time.Second

	// An entry holds an event field, whose payload is at most necro.MaxPayloadBytes of
	// compact JSON (written with Python's ", " and ": " separators at most half as much
	// again), an envelope of about 150 bytes and a meta field of lineage: 2 MiB leaves
	// room for the largest valid event written by either side.
	defaultMaxEntryBytes = 2 << 20
	// Four of the largest entries: small enough to bound a worker's read, large enough
	// that events of ordinary size (hundreds of bytes) never meet the bound before the
	// count does.
	defaultMaxPullBytes = 8 << 20
	// Enough to show the start of the text and who wrote it; the dead letter's reason
	// names what is wrong, and 100,000 such dead letters stay under 1 GiB.
	defaultPoisonKeepBytes = 4 << 10
)

// ErrInvalidConfig reports a [Config] that [Open] cannot use; the wrapping error names
// the field. A malformed URL is reported with its password masked.
var ErrInvalidConfig = errors.New("redis: invalid config")

// Config tunes a [Backend]. The zero value is ready to use against a local Redis; each
// field states its default.
type Config struct {
	// URL locates the server: redis://[user:password@]host:port/db, or rediss:// for
	// TLS. Zero means DefaultURL. The password is never printed.
	URL string
	// TLS adds to the TLS settings of a rediss:// URL, for instance RootCAs for a
	// private certificate authority. Its ServerName defaults to the URL's host.
	TLS *tls.Config
	// Stream is the stream key. Zero means DefaultStream.
	Stream string
	// Group is the consumer group. Zero means DefaultGroup.
	Group string
	// Consumer names this process in the group. Zero means "consumer-" and 8 random
	// hex digits, as Python NecroStack does; a name stable across restarts lets a
	// worker take back its own pending entries at once when it starts again.
	Consumer string
	// DeadLetterStream is where dead letters go. Zero means Stream + ":dlq".
	DeadLetterStream string
	// Capacity bounds the entries the stream holds. Enqueue refuses what does not fit
	// with [backend.ErrQueueFull]; the children and retries Settle adds may use a reserve
	// of as much again. Acknowledged entries are trimmed before the check. Zero means no
	// bound of its own: Redis's maxmemory is then the bound.
	Capacity int
	// NackDelay is how long a nacked delivery waits before it is handed out again.
	// Zero means 1s.
	NackDelay time.Duration
	// ClaimAfter is how long an entry must sit idle in another consumer's pending list
	// before this consumer claims it. Live consumers refresh their own entries, so only
	// the entries of a consumer that stopped are claimed. Zero means 30s.
	ClaimAfter time.Duration
	// MaxDeliveries dead-letters an entry delivered more than this many times without
	// being settled, which happens only when the workers holding it die (a handler's
	// errors and panics are retried and counted by the Spine, not here). Zero turns it
	// off: a crash-looping worker never dead-letters healthy events.
	MaxDeliveries int
	// TrimInterval is how often acknowledged entries are trimmed from the stream. Zero
	// means 1s; [Off] keeps every entry.
	TrimInterval time.Duration
	// DeadLetterMaxLen bounds the dead-letter stream; every entry dropped to keep the
	// bound is counted and logged. Zero means no bound.
	DeadLetterMaxLen int
	// MaxEntryBytes bounds one stream entry: its field names and values together. A
	// larger entry cannot hold a valid event, so it is dead-lettered in Redis, keeping
	// PoisonKeepBytes of its text and its size, and never taken into this process. New
	// entries are read with a plain XREADGROUP whose reply passes a guard as it arrives;
	// at the length of an entry over the bound, the guard cuts the read short (this
	// process has read none of the entry, Redis has sent no more of it than the sockets
	// hold) and the read's entries are read again by a Lua script that measures each
	// ([Metrics].ReadsCut counts such reads). Claims and the entries taken back at start
	// are read by that script too. Reading every entry through the script would cost
	// Redis about 3.5µs of CPU an entry more (BENCHMARKS.md). Zero means 2 MiB, room for
	// the largest valid event. [Off] turns the bound off, for producers that are
	// trusted: every entry then comes whole, and a read of new entries is bounded by
	// count only.
	MaxEntryBytes int
	// MaxPullBytes bounds the entries one Pull hands out, by the same measure; a Pull
	// stops before the entry that would pass it, and that entry waits for the next. A
	// read of new entries asks for no more entries than three quarters of it take at
	// their recent mean size; one whose reply would pass it all the same (counting, beside
	// the entries, their ids and 32 bytes for each element of the reply) is cut short,
	// and its entries handed out from the measured read, Pull after Pull. It may not be
	// below MaxEntryBytes. Zero means 8 MiB, or MaxEntryBytes if larger.
	MaxPullBytes int
	// PoisonKeepBytes bounds the text a poison entry's dead letter keeps: the first
	// PoisonKeepBytes bytes of its event field and of its meta field, cut at a character
	// boundary; the dead letter's size field records the entry's size. Zero means 4 KiB.
	PoisonKeepBytes int
	// ForgetConsumersAfter removes from the group the consumers that have been idle this
	// long and hold no pending entry. Zero means 1h; [Off] keeps them.
	ForgetConsumersAfter time.Duration
	// Block is the longest single XREADGROUP wait; a Pull waits longer in several. It
	// bounds how late a Pull notices Close. Zero means 100ms.
	Block time.Duration
	// SettleRetryFor is how long Settle keeps retrying when Redis cannot be reached.
	// Zero means 1m.
	SettleRetryFor time.Duration
	// PoolSize is the number of connections kept to Redis. Zero means 16.
	PoolSize int
	// Logger receives warnings about unsafe Redis settings, reconnections, poison
	// entries and recovered deliveries; nil discards them.
	Logger *slog.Logger
	// Heartbeat is how often a worker that announced itself on the group's roster
	// ([Backend.Announce]) renews its entry. Zero means 1s.
	Heartbeat time.Duration
	// MemberTimeout is how long after its last heartbeat a worker still counts as live
	// on the roster; it must exceed Heartbeat. Zero means 5s. Workers of one group should
	// agree on it.
	MemberTimeout time.Duration
}

// withDefaults fills in the zero fields and checks the rest.
func (c Config) withDefaults() (Config, error) {
	c.defaultNames()
	if err := c.durationDefaults(); err != nil {
		return c, err
	}
	if err := c.sizeDefaults(); err != nil {
		return c, err
	}
	for _, k := range []struct{ name, v string }{{"Stream", c.Stream}, {"Group", c.Group}, {"Consumer", c.Consumer}, {"DeadLetterStream", c.DeadLetterStream}} {
		if strings.TrimSpace(k.v) != k.v {
			return c, fmt.Errorf("%w: %s %q has leading or trailing space", ErrInvalidConfig, k.name, k.v)
		}
	}
	if c.DeadLetterStream == c.Stream {
		return c, fmt.Errorf("%w: DeadLetterStream is the Stream %q", ErrInvalidConfig, c.Stream)
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c, nil
}

// defaultNames fills in the URL, the keys and the consumer's name.
func (c *Config) defaultNames() {
	if c.URL == "" {
		c.URL = DefaultURL
	}
	if c.Stream == "" {
		c.Stream = DefaultStream
	}
	if c.Group == "" {
		c.Group = DefaultGroup
	}
	if c.Consumer == "" {
		var b [4]byte
		_, _ = rand.Read(b[:])
		c.Consumer = "consumer-" + hex.EncodeToString(b[:])
	}
	if c.DeadLetterStream == "" {
		c.DeadLetterStream = c.Stream + ":dlq"
	}
}

// durationDefaults fills in the zero durations and checks them all.
func (c *Config) durationDefaults() error {
	durations := []struct {
		name string
		d    *time.Duration
		def  time.Duration
		off  bool
	}{
		{"NackDelay", &c.NackDelay, defaultNackDelay, false},
		{"ClaimAfter", &c.ClaimAfter, defaultClaimAfter, false},
		{"TrimInterval", &c.TrimInterval, defaultTrimInterval, true},
		{"ForgetConsumersAfter", &c.ForgetConsumersAfter, defaultForgetAfter, true},
		{"Block", &c.Block, defaultBlock, false},
		{"SettleRetryFor", &c.SettleRetryFor, defaultSettleRetryFor, false},
		{"Heartbeat", &c.Heartbeat, defaultHeartbeat, false},
		{"MemberTimeout", &c.MemberTimeout, defaultMemberTimeout, false},
	}
	for _, d := range durations {
		switch {
		case *d.d == 0:
			*d.d = d.def
		case *d.d == Off && d.off:
		case *d.d < 0:
			return fmt.Errorf("%w: %s is negative (%v)", ErrInvalidConfig, d.name, *d.d)
		}
	}
	if c.MemberTimeout <= c.Heartbeat {
		return fmt.Errorf("%w: MemberTimeout %v must exceed Heartbeat %v, or live workers drop off the roster between heartbeats",
			ErrInvalidConfig, c.MemberTimeout, c.Heartbeat)
	}
	if c.Block < time.Millisecond {
		return fmt.Errorf("%w: Block %v is below Redis's 1ms resolution", ErrInvalidConfig, c.Block)
	}
	return nil
}

// sizeDefaults fills in the zero counts and sizes and checks them all.
func (c *Config) sizeDefaults() error {
	for _, n := range []struct {
		name string
		v    int
	}{{"Capacity", c.Capacity}, {"MaxDeliveries", c.MaxDeliveries}, {"DeadLetterMaxLen", c.DeadLetterMaxLen}, {"PoolSize", c.PoolSize},
		{"MaxPullBytes", c.MaxPullBytes}, {"PoisonKeepBytes", c.PoisonKeepBytes}} {
		if n.v < 0 {
			return fmt.Errorf("%w: %s is negative (%d)", ErrInvalidConfig, n.name, n.v)
		}
	}
	switch {
	case c.MaxEntryBytes == 0:
		c.MaxEntryBytes = defaultMaxEntryBytes
	case c.MaxEntryBytes < 0 && c.MaxEntryBytes != Off:
		return fmt.Errorf("%w: MaxEntryBytes is negative (%d)", ErrInvalidConfig, c.MaxEntryBytes)
	}
	if c.MaxPullBytes == 0 {
		c.MaxPullBytes = max(defaultMaxPullBytes, c.MaxEntryBytes)
	}
	if c.MaxEntryBytes != Off && c.MaxPullBytes < c.MaxEntryBytes {
		// A Pull could then never hand out an entry that is valid by MaxEntryBytes.
		return fmt.Errorf("%w: MaxPullBytes %d is below MaxEntryBytes %d", ErrInvalidConfig, c.MaxPullBytes, c.MaxEntryBytes)
	}
	if c.PoisonKeepBytes == 0 {
		c.PoisonKeepBytes = defaultPoisonKeepBytes
	}
	if c.PoolSize == 0 {
		c.PoolSize = defaultPoolSize
	}
	return nil
}

// options turns the config's URL into go-redis options. Errors carry the URL with its
// passwords masked, never a password. A URL that names no host, a port out of range or
// a negative database is refused here: go-redis would connect to localhost:6379, or to
// database 0, instead.
func (c Config) options() (*goredis.Options, error) {
	masked := MaskURL(c.URL)
	switch {
	case strings.TrimSpace(c.URL) == "":
		return nil, fmt.Errorf("%w: URL is blank", ErrInvalidConfig)
	case strings.TrimSpace(c.URL) != c.URL:
		return nil, fmt.Errorf("%w: URL %q has leading or trailing space", ErrInvalidConfig, masked)
	case !strings.HasPrefix(c.URL, "redis://") && !strings.HasPrefix(c.URL, "rediss://"):
		return nil, fmt.Errorf("%w: URL %q: the scheme must be redis:// or rediss://", ErrInvalidConfig, masked)
	}
	u, err := url.Parse(c.URL)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // url.Error repeats the whole URL, password included
		}
		var ee url.EscapeError
		if errors.As(err, &ee) {
			err = errors.New("invalid %-escape (write a % in a password as %25)") // ee quotes the password
		}
		return nil, fmt.Errorf("%w: URL %q: %s", ErrInvalidConfig, masked, maskSecrets(err.Error(), c.URL))
	}
	if err := checkAddress(u); err != nil {
		return nil, fmt.Errorf("%w: URL %q %v", ErrInvalidConfig, masked, err)
	}
	if u.Query().Has("password") {
		return nil, fmt.Errorf("%w: URL %q has a password in its query; it goes in the user information: redis://user:password@host:port/db",
			ErrInvalidConfig, masked)
	}
	opt, err := goredis.ParseURL(c.URL)
	if err != nil {
		return nil, fmt.Errorf("%w: URL %q: %s", ErrInvalidConfig, masked, maskSecrets(err.Error(), c.URL))
	}
	if opt.DB < 0 {
		return nil, fmt.Errorf("%w: URL %q: database %d is negative", ErrInvalidConfig, masked, opt.DB)
	}
	if c.TLS != nil && opt.TLSConfig == nil {
		return nil, fmt.Errorf("%w: TLS is set but URL %q is not rediss://; the connection would not be encrypted", ErrInvalidConfig, masked)
	}
	if opt.TLSConfig != nil && c.TLS != nil {
		t := c.TLS.Clone()
		if t.ServerName == "" {
			t.ServerName = opt.TLSConfig.ServerName
		}
		opt.TLSConfig = t
	}
	if opt.TLSConfig != nil {
		opt.Dialer = tlsDialer(opt.TLSConfig)
	}
	opt.PoolSize = c.PoolSize
	opt.DialerRetries = 2 // a refused password or certificate does not get better in 500ms
	return opt, nil
}

// checkAddress checks that u names a host, and a port in range when it names one.
func checkAddress(u *url.URL) error {
	if u.Hostname() == "" {
		return errors.New("names no host: give the server, as in redis://host:6379/0")
	}
	if strings.HasSuffix(u.Host, ":") {
		return errors.New("has an empty port after the host: give one, or leave out the colon for 6379")
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("has port %s, which is not between 1 and 65535", p)
		}
	}
	return nil
}

// connectError describes a failure of Open's first command, with the URL's passwords
// masked. A database the server does not have is a mistake in the URL: the error then
// matches ErrInvalidConfig.
func connectError(cfg Config, opt *goredis.Options, err error) error {
	err = scrub(err, cfg.URL)
	if strings.Contains(err.Error(), "DB index is out of range") {
		return fmt.Errorf("%w: URL %q: database %d does not exist on the server (%v)", ErrInvalidConfig, MaskURL(cfg.URL), opt.DB, err)
	}
	return fmt.Errorf("redis: connect to %s: %w", MaskURL(cfg.URL), err)
}

// MaskURL returns u with its passwords replaced by "xxxxx", so that it can be printed:
// the password of the user information, and the values of query parameters other than
// go-redis's settings, such as password=. It works on text that does not parse as a
// URL, too, and where a part could be read two ways it masks both.
func MaskURL(u string) string {
	prefix, rest := splitScheme(u)
	spans := secretSpans(rest)
	if len(spans) == 0 {
		return u
	}
	var b strings.Builder
	b.WriteString(prefix)
	at := 0
	for _, s := range spans {
		b.WriteString(rest[at:s[0]])
		b.WriteString("xxxxx")
		at = s[1]
	}
	b.WriteString(rest[at:])
	return b.String()
}

// secretSpans returns where the secrets of rest, a URL after its scheme, are: sorted,
// merged, each [start, end). The user information ends at the last @, since an
// unescaped password may hold one, and its password starts after the first colon.
// A query may start at any ?, since an unescaped password may hold one too: the query
// read from each is masked, so that a secret is masked however the text is read.
func secretSpans(rest string) [][2]int {
	var spans [][2]int
	if at := strings.LastIndex(rest, "@"); at >= 0 {
		if colon := strings.Index(rest[:at], ":"); colon >= 0 && colon+1 < at {
			spans = append(spans, [2]int{colon + 1, at})
		}
	}
	for i, c := range rest {
		if c != '?' {
			continue
		}
		start := i + 1
		for _, param := range strings.Split(rest[start:], "&") {
			name, value, hasValue := strings.Cut(param, "=")
			if hasValue && value != "" && !settings[name] {
				from := start + len(name) + 1
				spans = append(spans, [2]int{from, from + len(value)})
			}
			start += len(param) + 1
		}
	}
	slices.SortFunc(spans, func(a, b [2]int) int { return a[0] - b[0] })
	var merged [][2]int
	for _, s := range spans {
		if n := len(merged); n > 0 && s[0] <= merged[n-1][1] {
			merged[n-1][1] = max(merged[n-1][1], s[1])
			continue
		}
		merged = append(merged, s)
	}
	return merged
}

// settings are the query parameters go-redis reads, none of them secret, and username,
// which is not secret either; MaskURL keeps their values. Any other parameter's value
// is masked: go-redis refuses the URL anyway, and it may be a password.
var settings = map[string]bool{
	"db": true, "protocol": true, "client_name": true, "max_retries": true, "min_retry_backoff": true,
	"max_retry_backoff": true, "dial_timeout": true, "read_timeout": true, "write_timeout": true,
	"pool_fifo": true, "pool_size": true, "pool_timeout": true, "min_idle_conns": true, "max_idle_conns": true,
	"max_active_conns": true, "max_concurrent_dials": true, "pipeline_pool_size": true,
	"pipeline_read_buffer_size": true, "pipeline_write_buffer_size": true, "conn_max_idle_time": true,
	"idle_timeout": true, "conn_max_lifetime": true, "max_conn_age": true, "conn_max_lifetime_jitter": true,
	"skip_verify": true, "username": true,
}

// secrets returns the texts MaskURL masks in u, as written and unescaped, longest first.
func secrets(u string) []string {
	_, rest := splitScheme(u)
	var out []string
	for _, s := range secretSpans(rest) {
		raw := rest[s[0]:s[1]]
		out = append(out, raw)
		if p, err := url.QueryUnescape(raw); err == nil && p != raw {
			out = append(out, p)
		}
	}
	slices.SortFunc(out, func(a, b string) int { return len(b) - len(a) })
	return out
}

// maskSecrets replaces the secrets of u in text by "xxxxx".
func maskSecrets(text, u string) string {
	for _, s := range secrets(u) {
		text = strings.ReplaceAll(text, s, "xxxxx")
	}
	return text
}

// splitScheme splits u after its "scheme://". Text without one, such as a mistyped
// "redis:/:pw@host", is all user information and host, so that its password is still
// found and masked.
func splitScheme(u string) (prefix, rest string) {
	if i := strings.Index(u, "://"); i >= 0 {
		return u[:i+3], u[i+3:]
	}
	return "", u
}
