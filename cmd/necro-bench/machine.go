package main

import (
	"bufio"
	"debug/buildinfo"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
)

// A machine is what the report says of the computer the figures come from.
type machine struct {
	CPU       string // the model, from /proc/cpuinfo; "unknown" elsewhere
	Cores     int    // logical CPUs the runtime may use
	RAMBytes  int64  // from /proc/meminfo; 0 when unknown
	OS        string // GOOS/GOARCH and, on Linux, the kernel release
	GoVersion string // the toolchain that built the measured binary
	Redis     string // redis-server's version
}

// readMachine describes this computer and the toolchain that built bin.
func readMachine(bin string) (machine, error) {
	m := machine{CPU: "unknown", Cores: runtime.NumCPU(), OS: runtime.GOOS + "/" + runtime.GOARCH}
	bi, err := buildinfo.ReadFile(bin)
	if err != nil {
		return m, fmt.Errorf("read the build information of %s: %w", bin, err)
	}
	m.GoVersion = bi.GoVersion
	// Outside Linux these files do not exist and the fields stay unknown.
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		if model := cpuModel(string(b)); model != "" {
			m.CPU = model
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		m.RAMBytes = memTotal(string(b))
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.OS += ", Linux " + strings.TrimSpace(string(b))
	}
	return m, nil
}

// cpuModel returns the first "model name" of /proc/cpuinfo, or "" when it has none (as
// on some ARM kernels).
func cpuModel(cpuinfo string) string {
	sc := bufio.NewScanner(strings.NewReader(cpuinfo))
	for sc.Scan() {
		key, value, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(key) == "model name" {
			return strings.TrimSpace(value)
		}
	}
	return ""
}

// memTotal returns MemTotal of /proc/meminfo in bytes, or 0.
func memTotal(meminfo string) int64 {
	sc := bufio.NewScanner(strings.NewReader(meminfo))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 3 && f[0] == "MemTotal:" && f[2] == "kB" {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			if err == nil {
				return kb * 1024
			}
		}
	}
	return 0
}

// loadAverage returns the 1-minute load average, or -1 where /proc/loadavg is missing.
func loadAverage() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return -1
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return -1
	}
	v, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return -1
	}
	return v
}
