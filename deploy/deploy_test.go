// Package deploy holds the deployment files of worker-orcd (Dockerfile,
// systemd unit, Kubernetes manifests); its test checks that they agree with
// each other and with the worker: probes on /health, the port, one GPU per
// pod, and the build command of README.md.
package deploy

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

const port = 8080

// Just the fields the test reads.
type probe struct {
	HTTPGet *struct {
		Path string `yaml:"path"`
		Port any    `yaml:"port"` // a name or a number
	} `yaml:"httpGet"`
	PeriodSeconds    int `yaml:"periodSeconds"`
	FailureThreshold int `yaml:"failureThreshold"`
}

type container struct {
	Name  string   `yaml:"name"`
	Image string   `yaml:"image"`
	Args  []string `yaml:"args"`
	Ports []struct {
		Name          string `yaml:"name"`
		ContainerPort int    `yaml:"containerPort"`
	} `yaml:"ports"`
	Resources struct {
		Requests map[string]any `yaml:"requests"`
		Limits   map[string]any `yaml:"limits"`
	} `yaml:"resources"`
	StartupProbe   *probe `yaml:"startupProbe"`
	ReadinessProbe *probe `yaml:"readinessProbe"`
	LivenessProbe  *probe `yaml:"livenessProbe"`
}

type manifest struct {
	APIVersion string `yaml:"apiVersion"`
	Kind       string `yaml:"kind"`
	Metadata   struct {
		Name        string            `yaml:"name"`
		Annotations map[string]string `yaml:"annotations"`
	} `yaml:"metadata"`
	Spec yaml.Node `yaml:"spec"` // decoded by kind: deploymentSpec, serviceSpec
}

type deploymentSpec struct {
	Selector struct {
		MatchLabels map[string]string `yaml:"matchLabels"`
	} `yaml:"selector"`
	Template struct {
		Metadata struct {
			Labels      map[string]string `yaml:"labels"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"metadata"`
		Spec struct {
			TerminationGracePeriodSeconds int         `yaml:"terminationGracePeriodSeconds"`
			InitContainers                []container `yaml:"initContainers"`
			Containers                    []container `yaml:"containers"`
		} `yaml:"spec"`
	} `yaml:"template"`
}

type serviceSpec struct {
	Type     string            `yaml:"type"`
	Selector map[string]string `yaml:"selector"`
	Ports    []struct {
		Name       string `yaml:"name"`
		Port       int    `yaml:"port"`
		TargetPort any    `yaml:"targetPort"`
	} `yaml:"ports"`
}

func deployment(t *testing.T, ms map[string]manifest) deploymentSpec {
	t.Helper()
	m, ok := ms["Deployment"]
	if !ok || m.APIVersion != "apps/v1" {
		t.Fatalf("no apps/v1 Deployment")
	}
	var d deploymentSpec
	if err := m.Spec.Decode(&d); err != nil {
		t.Fatalf("Deployment spec: %v", err)
	}
	return d
}

// loadManifests parses every YAML document under kubernetes/, by kind.
func loadManifests(t *testing.T) map[string]manifest {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("kubernetes", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests in kubernetes/: %v", err)
	}
	out := map[string]manifest{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(data))
		dec.KnownFields(false)
		for {
			// Decode twice: strictly into a generic tree (any YAML error),
			// then into the typed view.
			var node yaml.Node
			if err := dec.Decode(&node); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			var m manifest
			if err := node.Decode(&m); err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			if m.Kind == "" || m.APIVersion == "" {
				t.Fatalf("%s: a document without kind/apiVersion", f)
			}
			if _, dup := out[m.Kind]; dup {
				t.Fatalf("%s: a second %s", f, m.Kind)
			}
			out[m.Kind] = m
		}
	}
	return out
}

func workerContainer(t *testing.T, d deploymentSpec) container {
	t.Helper()
	for _, c := range d.Template.Spec.Containers {
		if c.Name == "worker-orcd" {
			return c
		}
	}
	t.Fatal("no container named worker-orcd in the Deployment")
	return container{}
}

func TestDeployment(t *testing.T) {
	d := deployment(t, loadManifests(t))
	c := workerContainer(t, d)

	// One GPU per pod, in requests and limits (extended resources need the limit).
	for what, m := range map[string]map[string]any{"requests": c.Resources.Requests, "limits": c.Resources.Limits} {
		if g := m["nvidia.com/gpu"]; g != 1 && g != "1" {
			t.Errorf("resources.%s[nvidia.com/gpu] = %v, want 1", what, g)
		}
	}
	if len(d.Template.Spec.Containers) != 1 {
		t.Errorf("%d containers: one worker per pod", len(d.Template.Spec.Containers))
	}

	// The port the worker listens on is the one named in the probes.
	if len(c.Ports) != 1 || c.Ports[0].ContainerPort != port || c.Ports[0].Name != "http" {
		t.Errorf("ports %+v, want one named http on %d", c.Ports, port)
	}
	args := strings.Join(c.Args, " ")
	for _, want := range []string{"serve", "--port=8080", "--host=0.0.0.0", "--device=cuda", "--model=/models/"} {
		if !strings.Contains(args, want) {
			t.Errorf("args %q lack %q", args, want)
		}
	}

	for name, p := range map[string]*probe{"startupProbe": c.StartupProbe, "readinessProbe": c.ReadinessProbe, "livenessProbe": c.LivenessProbe} {
		if p == nil || p.HTTPGet == nil {
			t.Errorf("%s: missing or not httpGet", name)
			continue
		}
		if p.HTTPGet.Path != "/health" {
			t.Errorf("%s: path %q, want /health", name, p.HTTPGet.Path)
		}
		if p.HTTPGet.Port != "http" && p.HTTPGet.Port != port {
			t.Errorf("%s: port %v, want http or %d", name, p.HTTPGet.Port, port)
		}
	}
	if p := c.StartupProbe; p != nil && p.PeriodSeconds*p.FailureThreshold < 120 {
		t.Errorf("startupProbe allows %d s for loading; want at least 2 minutes", p.PeriodSeconds*p.FailureThreshold)
	}
	if r, l := c.ReadinessProbe, c.LivenessProbe; r != nil && l != nil && r.PeriodSeconds*r.FailureThreshold >= l.PeriodSeconds*l.FailureThreshold {
		t.Errorf("readiness must fail before liveness: %d s vs %d s", r.PeriodSeconds*r.FailureThreshold, l.PeriodSeconds*l.FailureThreshold)
	}

	ann := d.Template.Metadata.Annotations
	if ann["prometheus.io/scrape"] != "true" || ann["prometheus.io/port"] != "8080" || ann["prometheus.io/path"] != "/metrics" {
		t.Errorf("pod annotations %v: want prometheus.io/scrape true, port 8080, path /metrics", ann)
	}
	for k, v := range d.Selector.MatchLabels {
		if d.Template.Metadata.Labels[k] != v {
			t.Errorf("selector %s=%s does not match the pod labels", k, v)
		}
	}
	if d.Template.Spec.TerminationGracePeriodSeconds < 30 {
		t.Errorf("terminationGracePeriodSeconds %d: give draining time", d.Template.Spec.TerminationGracePeriodSeconds)
	}
	var doctor bool
	for _, ic := range d.Template.Spec.InitContainers {
		doctor = doctor || (len(ic.Args) > 0 && ic.Args[0] == "doctor")
	}
	if !doctor {
		t.Error("no init container runs worker-orcd doctor")
	}
}

func TestService(t *testing.T) {
	ms := loadManifests(t)
	m, ok := ms["Service"]
	if !ok || m.APIVersion != "v1" {
		t.Fatal("no v1 Service")
	}
	var s serviceSpec
	if err := m.Spec.Decode(&s); err != nil {
		t.Fatalf("Service spec: %v", err)
	}
	d := deployment(t, ms)
	for k, v := range s.Selector {
		if d.Template.Metadata.Labels[k] != v {
			t.Errorf("Service selector %s=%s matches no pod label", k, v)
		}
	}
	if len(s.Selector) == 0 {
		t.Error("Service has no selector")
	}
	if len(s.Ports) != 1 || (s.Ports[0].TargetPort != "http" && s.Ports[0].TargetPort != port) {
		t.Errorf("Service ports %+v: want one targeting http (%d)", s.Ports, port)
	}
}

// readmeBuildCommand is the line of a README that builds the worker binary:
// `CGO_ENABLED=0 go build … -o worker-orcd ./cmd/worker-orcd`.
func readmeBuildCommand(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(data)) {
		if line = strings.TrimSpace(line); strings.HasPrefix(line, "CGO_ENABLED=0 go build") && strings.HasSuffix(line, "-o worker-orcd ./cmd/worker-orcd") {
			return line
		}
	}
	t.Fatalf("%s has no `CGO_ENABLED=0 go build … -o worker-orcd ./cmd/worker-orcd` line", path)
	return ""
}

func TestDockerfile(t *testing.T) {
	data, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	want := readmeBuildCommand(t, "README.md")
	if top := readmeBuildCommand(t, filepath.Join("..", "README.md")); top != want {
		t.Errorf("the project README builds with %q, deploy/README.md with %q: keep them one command", top, want)
	}
	var froms, runs []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if f, ok := strings.CutPrefix(line, "FROM "); ok {
			froms = append(froms, f)
		}
		if r, ok := strings.CutPrefix(line, "RUN "); ok {
			runs = append(runs, r)
		}
	}
	found := false
	for _, r := range runs {
		found = found || r == want
	}
	if !found {
		t.Errorf("no RUN line equals the README's build command %q", want)
	}
	if len(froms) != 2 || !strings.HasSuffix(froms[0], " AS build") {
		t.Errorf("FROM lines %q: want a build stage and a runtime stage", froms)
	}
	args := map[string]string{}
	for _, m := range regexp.MustCompile(`(?m)^ARG (\w+)=(\S+)$`).FindAllStringSubmatch(string(data), -1) {
		args[m[1]] = m[2]
	}
	if img := args["CUDA_IMAGE"]; !regexp.MustCompile(`^nvidia/cuda:\d+\.\d+\.\d+-runtime-ubuntu\d+\.\d+`).MatchString(img) {
		t.Errorf("runtime base %q: want an nvidia/cuda runtime image (libnvrtc + libcublas, no toolkit)", img)
	}
	if !strings.Contains(string(data), "EXPOSE 8080") || !strings.Contains(string(data), `"--port", "8080"`) {
		t.Error("the image must expose and serve on 8080")
	}
}

func TestSystemdUnit(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("systemd", "worker-orcd@.service"))
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string][]string{}
	section := ""
	for line := range strings.Lines(string(data)) {
		line = strings.TrimSpace(line)
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "["):
			section = strings.Trim(line, "[]")
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				t.Errorf("not key=value: %q", line)
			}
			keys[section+"."+k] = append(keys[section+"."+k], v)
		}
	}
	one := func(k string) string {
		if len(keys[k]) == 0 {
			t.Errorf("no %s", k)
			return ""
		}
		return keys[k][len(keys[k])-1]
	}
	if s := one("Service.ExecStart"); !strings.Contains(s, "worker-orcd serve") || !strings.Contains(s, "--port ${PORT}") || !strings.Contains(s, "--device cuda") {
		t.Errorf("ExecStart %q", s)
	}
	if s := one("Service.ExecStartPre"); !strings.Contains(s, "worker-orcd doctor") {
		t.Errorf("ExecStartPre %q: want worker-orcd doctor", s)
	}
	if !slices.Contains(keys["Service.Environment"], "CUDA_VISIBLE_DEVICES=%i") {
		t.Errorf("Environment %q: want CUDA_VISIBLE_DEVICES=%%i (one GPU per instance)", keys["Service.Environment"])
	}
	if one("Service.Restart") != "on-failure" || one("Install.WantedBy") != "multi-user.target" || one("Service.KillSignal") != "SIGTERM" {
		t.Error("want Restart=on-failure, KillSignal=SIGTERM, WantedBy=multi-user.target")
	}
}
