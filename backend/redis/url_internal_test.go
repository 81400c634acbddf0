package redis

import (
	"errors"
	"strings"
	"testing"
)

// URLs without a host, or with a port or database that cannot be, are refused by the
// config check, before any dial. These never reach Open in a test: were the check
// missing, go-redis would connect to localhost:6379, a server no test may touch.
func TestOptionsRefuseIncompleteAddress(t *testing.T) {
	tests := []struct {
		url  string
		says string
	}{
		{"redis://", "host"},
		{"rediss://", "host"},
		{"redis:///0", "host"},
		{"redis://@/", "host"},
		{"redis://@", "host"},
		{"redis://:s3cr3t@/0", "host"},
		{"redis://user:s3cr3t@", "host"},
		{"redis://?db=1", "host"},
		{"redis://:6390/0", "host"},
		{"rediss://:s3cr3t@:6390", "host"},
		{"redis://:/0", "host"},
		{"redis://[]/0", "host"},
		{"redis://host:/0", "port"},
		{"redis://[::1]:/0", "port"},
		{"redis://host:0/0", "port"},
		{"redis://host:65536/0", "port"},
		{"redis://host/-1", "database -1"},
		{"redis://host:6379/?db=-3", "database -3"},
		{"unix:///tmp/redis.sock", "scheme"},
		{"unix://", "scheme"},
		{" ", "blank"},
		{"\t\n", "blank"},
		{"redis://host:6379/0 ", "space"},
	}
	for _, tt := range tests {
		t.Run(tt.url, func(t *testing.T) {
			cfg, err := Config{URL: tt.url}.withDefaults()
			if err == nil {
				_, err = cfg.options()
			}
			if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), tt.says) {
				t.Errorf("options(%q) = %v, want ErrInvalidConfig naming the %s", MaskURL(tt.url), err, tt.says)
			}
			if err != nil && strings.Contains(err.Error(), "s3cr3t") {
				t.Errorf("options(...) = %q, which shows the password", err)
			}
		})
	}
}

// The address checks leave good URLs alone.
func TestOptionsKeepGoodAddress(t *testing.T) {
	tests := []struct{ url, addr string }{
		{"redis://host/0", "host:6379"},
		{"redis://host:1/0", "host:1"},
		{"redis://host:65535/15", "host:65535"},
		{"rediss://u:pw@[::1]:6380", "[::1]:6380"},
		{"redis://h:6379/?db=2", "h:6379"},
	}
	for _, tt := range tests {
		cfg, err := Config{URL: tt.url}.withDefaults()
		if err != nil {
			t.Fatal(err)
		}
		opt, err := cfg.options()
		if err != nil || opt.Addr != tt.addr {
			t.Errorf("options(%q) = %v, %v; want address %s", MaskURL(tt.url), opt, err, tt.addr)
		}
	}
}
