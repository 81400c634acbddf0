package redis

import (
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
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
	// larger entry cannot hold a valid event, so Redis dead-letters it inside the read
	// (and the claim), keeping PoisonKeepBytes of its text and its size, and never sends
	// it here; the one exception is the entry that wakes a Pull waiting on an empty
	// stream (a script cannot wait), which comes whole and is dead-lettered from here.
	// Zero means 2 MiB, room for the largest valid event. Measuring in Lua costs Redis
	// about 4µs of CPU an entry more than a plain read (BENCHMARKS.md); [Off] reads
	// new entries with a plain XREADGROUP, for producers that are trusted: every entry
	// then comes whole, and a read of new entries is bounded by count only.
	MaxEntryBytes int
	// MaxPullBytes bounds the entries one Pull hands out, by the same measure; a Pull
	// stops before the entry that would pass it, and that entry waits for the next.
	// It may not be below MaxEntryBytes. Zero means 8 MiB, or MaxEntryBytes if larger.
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
			return c, fmt.Errorf("%w: %s is negative (%v)", ErrInvalidConfig, d.name, *d.d)
		}
	}
	if c.MemberTimeout <= c.Heartbeat {
		return c, fmt.Errorf("%w: MemberTimeout %v must exceed Heartbeat %v, or live workers drop off the roster between heartbeats",
			ErrInvalidConfig, c.MemberTimeout, c.Heartbeat)
	}
	if c.Block < time.Millisecond {
		return c, fmt.Errorf("%w: Block %v is below Redis's 1ms resolution", ErrInvalidConfig, c.Block)
	}
	for _, n := range []struct {
		name string
		v    int
	}{{"Capacity", c.Capacity}, {"MaxDeliveries", c.MaxDeliveries}, {"DeadLetterMaxLen", c.DeadLetterMaxLen}, {"PoolSize", c.PoolSize},
		{"MaxPullBytes", c.MaxPullBytes}, {"PoisonKeepBytes", c.PoisonKeepBytes}} {
		if n.v < 0 {
			return c, fmt.Errorf("%w: %s is negative (%d)", ErrInvalidConfig, n.name, n.v)
		}
	}
	switch {
	case c.MaxEntryBytes == 0:
		c.MaxEntryBytes = defaultMaxEntryBytes
	case c.MaxEntryBytes < 0 && c.MaxEntryBytes != Off:
		return c, fmt.Errorf("%w: MaxEntryBytes is negative (%d)", ErrInvalidConfig, c.MaxEntryBytes)
	}
	if c.MaxPullBytes == 0 {
		c.MaxPullBytes = max(defaultMaxPullBytes, c.MaxEntryBytes)
	}
	if c.MaxEntryBytes != Off && c.MaxPullBytes < c.MaxEntryBytes {
		// A Pull could then never hand out an entry that is valid by MaxEntryBytes.
		return c, fmt.Errorf("%w: MaxPullBytes %d is below MaxEntryBytes %d", ErrInvalidConfig, c.MaxPullBytes, c.MaxEntryBytes)
	}
	if c.PoisonKeepBytes == 0 {
		c.PoisonKeepBytes = defaultPoisonKeepBytes
	}
	if c.PoolSize == 0 {
		c.PoolSize = defaultPoolSize
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

// options turns the config's URL into go-redis options. Errors carry the URL with its
// password masked, never the password.
func (c Config) options() (*goredis.Options, error) {
	masked := MaskURL(c.URL)
	if !strings.HasPrefix(c.URL, "redis://") && !strings.HasPrefix(c.URL, "rediss://") {
		return nil, fmt.Errorf("%w: URL %q: the scheme must be redis:// or rediss://", ErrInvalidConfig, masked)
	}
	if _, err := url.Parse(c.URL); err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // url.Error repeats the whole URL, password included
		}
		var ee url.EscapeError
		if errors.As(err, &ee) {
			err = errors.New("invalid %-escape (write a % in a password as %25)") // ee quotes the password
		}
		return nil, fmt.Errorf("%w: URL %q: %v", ErrInvalidConfig, masked, err)
	}
	opt, err := goredis.ParseURL(c.URL)
	if err != nil {
		msg := err.Error()
		if p := password(c.URL); p != "" {
			msg = strings.ReplaceAll(msg, p, "xxxxx")
		}
		return nil, fmt.Errorf("%w: URL %q: %s", ErrInvalidConfig, masked, msg)
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
	opt.PoolSize = c.PoolSize
	opt.DialerRetries = 2 // a refused password or certificate does not get better in 500ms
	return opt, nil
}

// MaskURL returns u with the password of its user information replaced by "xxxxx", so
// that it can be printed. It works on text that does not parse as a URL, too.
func MaskURL(u string) string {
	prefix, rest := splitScheme(u)
	// The last @ ends the user information. A path never holds one in a Redis URL; if
	// it did, more would be masked than needed, never less.
	at := strings.LastIndex(rest, "@")
	if at < 0 {
		return u
	}
	user, _, hasPass := strings.Cut(rest[:at], ":")
	if !hasPass {
		return u
	}
	return prefix + user + ":xxxxx" + rest[at:]
}

// password returns the password in u's user information, or "".
func password(u string) string {
	_, rest := splitScheme(u)
	at := strings.LastIndex(rest, "@")
	if at < 0 {
		return ""
	}
	_, p, _ := strings.Cut(rest[:at], ":")
	return p
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
