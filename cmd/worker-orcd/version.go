package main

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
)

// versionString is the version set at link time, else the module's.
func versionString() string {
	if version != "dev" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return version
}

// printVersion prints what --version says: the version, the module and its
// version, the VCS revision and date, the Go version and platform, and with
// verbose the GPU libraries found.
func printVersion(w io.Writer, verbose bool) error {
	fmt.Fprintf(w, "worker-orcd %s\n", versionString())
	bi, ok := debug.ReadBuildInfo()
	if ok {
		mod := bi.Main.Version
		if mod == "" {
			mod = "(devel)"
		}
		fmt.Fprintf(w, "module %s %s\n", bi.Main.Path, mod)
		settings := map[string]string{}
		for _, s := range bi.Settings {
			settings[s.Key] = s.Value
		}
		if rev := settings["vcs.revision"]; rev != "" {
			line := "revision " + rev
			if t := settings["vcs.time"]; t != "" {
				line += " " + t
			}
			if settings["vcs.modified"] == "true" {
				line += " (modified)"
			}
			fmt.Fprintln(w, line)
		} else {
			fmt.Fprintln(w, "revision unknown (built without VCS information: outside a git checkout, or with -buildvcs=false)")
		}
	}
	fmt.Fprintf(w, "%s %s/%s\n", runtime.Version(), runtime.GOOS, runtime.GOARCH)
	if !verbose {
		return nil
	}
	if gpuProbe == nil {
		fmt.Fprintln(w, "gpu: this build has no CUDA backend")
		return nil
	}
	rep, err := gpuProbe("")
	if rep != nil {
		for _, l := range rep.Libraries {
			if l.Err != "" {
				fmt.Fprintf(w, "gpu library %s: not loaded: %s\n", l.Name, l.Err)
			} else {
				fmt.Fprintf(w, "gpu library %s: %s\n", l.Name, l.Path)
			}
		}
		if rep.DriverVersion != 0 {
			fmt.Fprintf(w, "cuda driver %d.%d\n", rep.DriverVersion/1000, rep.DriverVersion%1000/10)
		}
		if rep.NVRTCVersion != "" {
			fmt.Fprintf(w, "nvrtc %s\n", rep.NVRTCVersion)
		}
		for _, d := range rep.Devices {
			fmt.Fprintf(w, "gpu %d: %s (sm_%d%d, %s)\n", d.Index, d.Name, d.Major, d.Minor, humanBytes(d.TotalBytes))
		}
	}
	if err != nil {
		fmt.Fprintf(w, "gpu: %v\n", err)
	}
	return nil
}
