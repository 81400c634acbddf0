package main

import (
	"context"
	"fmt"
	"runtime"
	"runtime/debug"
)

// version is set at build time with -ldflags "-X main.version=v1.2.3"; otherwise the
// module version or the VCS revision the binary was built from is shown.
var version = ""

func cmdVersion(_ context.Context, args []string, e *env) error {
	fs := newFlags(e, "version", "[--json]")
	asJSON := fs.Bool("json", false, "print JSON")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	v, rev := version, ""
	if info, ok := debug.ReadBuildInfo(); ok {
		if v == "" {
			v = info.Main.Version
		}
		for _, s := range info.Settings {
			if s.Key == "vcs.revision" {
				rev = s.Value
			}
		}
	}
	if v == "" {
		v = "(devel)"
	}
	if *asJSON {
		return printJSON(e.stdout, map[string]string{"version": v, "revision": rev, "go": runtime.Version()})
	}
	fmt.Fprintf(e.stdout, "necro-actors %s", v)
	if rev != "" {
		fmt.Fprintf(e.stdout, " (%s)", rev)
	}
	fmt.Fprintf(e.stdout, " %s\n", runtime.Version())
	return nil
}
