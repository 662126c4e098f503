package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"
)

// The Kubernetes manifests in deploy/kubernetes are checked here, in the
// binary's package, so that every flag they pass is parsed by castbridge's
// own flag set (parseOptions), not a copy of its names.

const manifestDir = "../../deploy/kubernetes"

// manifest is one decoded YAML document.
type manifest struct {
	file string
	kind string
	obj  any
	meta *metav1.ObjectMeta
}

func (m manifest) String() string { return m.file + ": " + m.kind + " " + m.meta.Name }

// newObject is the typed object a kind decodes into, with the apiVersion
// it must carry. Anything else in the manifests is an error: the test
// knows what it checks.
func newObject(kind string) (any, *metav1.ObjectMeta, string, bool) {
	switch kind {
	case "Namespace":
		o := &corev1.Namespace{}
		return o, &o.ObjectMeta, "v1", true
	case "Secret":
		o := &corev1.Secret{}
		return o, &o.ObjectMeta, "v1", true
	case "Service":
		o := &corev1.Service{}
		return o, &o.ObjectMeta, "v1", true
	case "Deployment":
		o := &appsv1.Deployment{}
		return o, &o.ObjectMeta, "apps/v1", true
	case "PodDisruptionBudget":
		o := &policyv1.PodDisruptionBudget{}
		return o, &o.ObjectMeta, "policy/v1", true
	}
	return nil, nil, "", false
}

// splitDocuments cuts a YAML stream at its "---" lines, dropping documents
// that hold only comments.
func splitDocuments(b []byte) [][]byte {
	var docs [][]byte
	for _, d := range regexp.MustCompile(`(?m)^---\s*$`).Split(string(b), -1) {
		empty := true
		for _, line := range strings.Split(d, "\n") {
			if t := strings.TrimSpace(line); t != "" && !strings.HasPrefix(t, "#") {
				empty = false
			}
		}
		if !empty {
			docs = append(docs, []byte(d))
		}
	}
	return docs
}

// loadManifests strictly decodes every document of every .yaml file but
// kustomization.yaml into its k8s.io/api type: an unknown or misspelt field,
// a duplicate key or a value of the wrong type fails.
func loadManifests(t *testing.T) []manifest {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(manifestDir, "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests in %s: %v", manifestDir, err)
	}
	var out []manifest
	for _, f := range files {
		if filepath.Base(f) == "kustomization.yaml" {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, doc := range splitDocuments(b) {
			var tm metav1.TypeMeta
			if err := yaml.Unmarshal(doc, &tm); err != nil {
				t.Fatalf("%s document %d: %v", f, i+1, err)
			}
			obj, meta, version, ok := newObject(tm.Kind)
			if !ok {
				t.Errorf("%s document %d: kind %q is not one this test knows how to check", f, i+1, tm.Kind)
				continue
			}
			if tm.APIVersion != version {
				t.Errorf("%s document %d: %s has apiVersion %q, want %q", f, i+1, tm.Kind, tm.APIVersion, version)
			}
			if err := yaml.UnmarshalStrict(doc, obj); err != nil {
				t.Errorf("%s document %d (%s): %v", f, i+1, tm.Kind, err)
				continue
			}
			out = append(out, manifest{file: filepath.Base(f), kind: tm.Kind, obj: obj, meta: meta})
		}
	}
	return out
}

// TestKubernetesManifests decodes the manifests into the Kubernetes API
// types and checks what the API server would only find at run time: names
// and selectors that point at nothing, ports and secrets that do not exist,
// castbridge flags that do not, and the deployment rules of
// docs/operations.md (probes, drain, security context, UDP buffers).
func TestKubernetesManifests(t *testing.T) {
	ms := loadManifests(t)
	byKind := map[string][]manifest{}
	for _, m := range ms {
		byKind[m.kind] = append(byKind[m.kind], m)
	}

	// One namespace, and everything namespaced in it.
	if len(byKind["Namespace"]) != 1 {
		t.Fatalf("%d Namespaces, want 1", len(byKind["Namespace"]))
	}
	ns := byKind["Namespace"][0].meta.Name
	for _, m := range ms {
		if m.kind != "Namespace" && m.meta.Namespace != ns {
			t.Errorf("%s is in namespace %q, want %q", m, m.meta.Namespace, ns)
		}
	}
	checkKustomization(t, ms)

	secrets := map[string]*corev1.Secret{}
	for _, m := range byKind["Secret"] {
		s := m.obj.(*corev1.Secret)
		if !strings.HasSuffix(m.file, ".example.yaml") {
			t.Errorf("%s: a Secret with values belongs in a .example.yaml file, never applied as it is", m)
		}
		secrets[s.Name] = s
	}
	type podOf struct {
		m    manifest
		spec *corev1.PodTemplateSpec
	}
	var pods []podOf
	for _, m := range byKind["Deployment"] {
		d := m.obj.(*appsv1.Deployment)
		sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
		if err != nil || sel.Empty() || !sel.Matches(labels.Set(d.Spec.Template.Labels)) {
			t.Errorf("%s: selector %v does not match its pod labels %v (%v)", m, d.Spec.Selector, d.Spec.Template.Labels, err)
		}
		pods = append(pods, podOf{m, &d.Spec.Template})
		checkPod(t, m, &d.Spec.Template.Spec, secrets)
	}
	if len(pods) == 0 {
		t.Fatal("no Deployment")
	}
	// A Service's selector picks a pod template, and each of its target
	// ports is a port of that pod with the same protocol.
	for _, m := range byKind["Service"] {
		svc := m.obj.(*corev1.Service)
		sel := labels.SelectorFromSet(svc.Spec.Selector)
		var matched []podOf
		for _, p := range pods {
			if len(svc.Spec.Selector) > 0 && sel.Matches(labels.Set(p.spec.Labels)) {
				matched = append(matched, p)
			}
		}
		if len(matched) != 1 {
			t.Errorf("%s: selector %v matches %d pod templates, want 1", m, svc.Spec.Selector, len(matched))
			continue
		}
		for _, sp := range svc.Spec.Ports {
			if !hasPort(&matched[0].spec.Spec, sp.TargetPort, sp.Protocol) {
				t.Errorf("%s: port %s targets %s/%s, which %s does not expose", m, sp.Name, sp.TargetPort.String(), sp.Protocol, matched[0].m)
			}
		}
	}
	// A PodDisruptionBudget guards castbridge's pods.
	if len(byKind["PodDisruptionBudget"]) == 0 {
		t.Error("no PodDisruptionBudget")
	}
	for _, m := range byKind["PodDisruptionBudget"] {
		pdb := m.obj.(*policyv1.PodDisruptionBudget)
		sel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
		n := 0
		for _, p := range pods {
			if err == nil && !sel.Empty() && sel.Matches(labels.Set(p.spec.Labels)) {
				n++
			}
		}
		if n != 1 {
			t.Errorf("%s: selector matches %d pod templates, want 1", m, n)
		}
	}
	gw := castbridgeDeployment(t, byKind["Deployment"])
	checkCastbridgePod(t, gw)
}

// checkKustomization: kustomization.yaml (decoded strictly into the few
// fields it may use) lists every manifest but the examples, and no other.
func checkKustomization(t *testing.T, ms []manifest) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(manifestDir, "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var k struct {
		APIVersion string   `json:"apiVersion"`
		Kind       string   `json:"kind"`
		Resources  []string `json:"resources"`
	}
	if err := yaml.UnmarshalStrict(b, &k); err != nil {
		t.Fatalf("kustomization.yaml: %v", err)
	}
	if k.APIVersion != "kustomize.config.k8s.io/v1beta1" || k.Kind != "Kustomization" {
		t.Errorf("kustomization.yaml: %s %s", k.APIVersion, k.Kind)
	}
	var want []string
	for _, m := range ms {
		if !strings.HasSuffix(m.file, ".example.yaml") && !slices.Contains(want, m.file) {
			want = append(want, m.file)
		}
	}
	got := slices.Clone(k.Resources)
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("kustomization.yaml resources %v, want the manifests %v", got, want)
	}
}

// hasPort reports whether a pod's containers expose port (a name or a
// number) with protocol (empty: TCP).
func hasPort(pod *corev1.PodSpec, port intstr.IntOrString, proto corev1.Protocol) bool {
	if proto == "" {
		proto = corev1.ProtocolTCP
	}
	for _, c := range pod.Containers {
		for _, p := range c.Ports {
			pp := p.Protocol
			if pp == "" {
				pp = corev1.ProtocolTCP
			}
			if pp != proto {
				continue
			}
			if (port.Type == intstr.String && p.Name == port.StrVal) || (port.Type == intstr.Int && p.ContainerPort == port.IntVal) {
				return true
			}
		}
	}
	return false
}

// checkPod checks what any pod of the manifests must get right: probe
// ports that exist, secrets and keys that exist, no secret as a literal
// value, $(VAR) references to variables the container defines, the
// security context, resources.
func checkPod(t *testing.T, m manifest, pod *corev1.PodSpec, secrets map[string]*corev1.Secret) {
	t.Helper()
	if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
		t.Errorf("%s: mounts a service account token it does not use", m)
	}
	if pod.HostNetwork && pod.DNSPolicy != corev1.DNSClusterFirstWithHostNet {
		t.Errorf("%s: hostNetwork with dnsPolicy %q: the pods cannot resolve cluster services (want ClusterFirstWithHostNet)", m, pod.DNSPolicy)
	}
	if sc := pod.SecurityContext; sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || sc.SeccompProfile == nil {
		t.Errorf("%s: pod security context must run as non-root with a seccomp profile", m)
	}
	volumes := map[string]bool{}
	for _, v := range pod.Volumes {
		volumes[v.Name] = true
	}
	all := append(slices.Clone(pod.InitContainers), pod.Containers...)
	for i, c := range all {
		init := i < len(pod.InitContainers)
		where := fmt.Sprintf("%s container %s", m, c.Name)
		if c.Image == "" {
			t.Errorf("%s: no image", where)
		}
		if c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() || c.Resources.Requests.Cpu().IsZero() {
			t.Errorf("%s: wants CPU and memory requests and a memory limit", where)
		}
		sc := c.SecurityContext
		if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
			t.Errorf("%s: root file system is not read-only", where)
		}
		if !init && (sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
			sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") || (sc.Privileged != nil && *sc.Privileged)) {
			t.Errorf("%s: must drop ALL capabilities, allow no privilege escalation and not be privileged", where)
		}
		for _, vm := range c.VolumeMounts {
			if !volumes[vm.Name] {
				t.Errorf("%s: mounts volume %s, which the pod does not have", where, vm.Name)
			}
		}
		defined := map[string]bool{}
		for _, e := range c.Env {
			defined[e.Name] = true
			if isSecretName(e.Name) && e.Value != "" {
				t.Errorf("%s: %s is given as a literal value; take it from a Secret", where, e.Name)
			}
			if e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil {
				continue
			}
			ref := e.ValueFrom.SecretKeyRef
			s, ok := secrets[ref.Name]
			if !ok {
				t.Errorf("%s: %s reads Secret %q, which no manifest (secret.example.yaml) defines", where, e.Name, ref.Name)
				continue
			}
			if _, ok := s.StringData[ref.Key]; !ok {
				if _, ok := s.Data[ref.Key]; !ok {
					t.Errorf("%s: %s reads key %q of Secret %s, which it lacks", where, e.Name, ref.Key, ref.Name)
				}
			}
		}
		for _, a := range slices.Concat(c.Command, c.Args) {
			for _, ref := range regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`).FindAllStringSubmatch(a, -1) {
				if !defined[ref[1]] {
					t.Errorf("%s: %q refers to $(%s), which the container's env does not define (Kubernetes would pass it literally)", where, a, ref[1])
				}
			}
			if isSecretArg(a) {
				t.Errorf("%s: argument %q carries a secret on the command line; take it from a Secret through the environment", where, a)
			}
		}
		for _, p := range []*corev1.Probe{c.ReadinessProbe, c.LivenessProbe, c.StartupProbe} {
			if p == nil {
				continue
			}
			switch {
			case p.HTTPGet != nil && !hasPortIn(c, p.HTTPGet.Port):
				t.Errorf("%s: probe on port %s, which the container does not expose", where, p.HTTPGet.Port.String())
			case p.TCPSocket != nil && !hasPortIn(c, p.TCPSocket.Port):
				t.Errorf("%s: probe on port %s, which the container does not expose", where, p.TCPSocket.Port.String())
			}
		}
		if !init && (c.ReadinessProbe == nil || c.LivenessProbe == nil) {
			t.Errorf("%s: wants readiness and liveness probes", where)
		}
	}
}

func hasPortIn(c corev1.Container, port intstr.IntOrString) bool {
	return hasPort(&corev1.PodSpec{Containers: []corev1.Container{c}}, port, corev1.ProtocolTCP)
}

// isSecretName: an environment variable that holds a secret.
func isSecretName(name string) bool {
	for _, s := range []string{"KEY", "SECRET", "TOKEN", "PASSWORD", "REDIS"} {
		if strings.Contains(name, s) {
			return true
		}
	}
	return false
}

// isSecretArg: a castbridge flag (or a program's option) whose value is a
// secret, given on the command line.
func isSecretArg(a string) bool {
	for _, f := range []string{"--api-key", "--token-secret", "--cluster-secret", "--webhook-secret", "--local-ingest-key", "--redis="} {
		if strings.HasPrefix(a, f) {
			return true
		}
	}
	return strings.Contains(a, "@") && strings.Contains(a, "redis://") // a URL with a password
}

// castbridgeDeployment is the Deployment whose container runs castbridge.
func castbridgeDeployment(t *testing.T, ds []manifest) *appsv1.Deployment {
	t.Helper()
	for _, m := range ds {
		d := m.obj.(*appsv1.Deployment)
		if d.Name == "castbridge" {
			return d
		}
	}
	t.Fatal("no Deployment named castbridge")
	return nil
}

// checkCastbridgePod: castbridge's flags from args and CASTBRIDGE_*
// variables parse with its own flag set; the probes hit /readyz and
// /healthz; SIGTERM's drain fits the grace period; the pod advertises an
// ICE address and asks for the UDP buffers.
func checkCastbridgePod(t *testing.T, d *appsv1.Deployment) {
	t.Helper()
	pod := &d.Spec.Template.Spec
	if len(pod.Containers) != 1 {
		t.Fatalf("castbridge pod has %d containers, want 1", len(pod.Containers))
	}
	c := pod.Containers[0]
	known := flagNames(t)

	// Kubernetes' own substitution: $(VAR) of env; downward-API and Secret
	// values are stand-ins of the right shape.
	standIn := map[string]string{"status.podIP": "10.1.2.3", "metadata.name": "castbridge-7d9f8-abcde"}
	env := map[string]string{}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom != nil && e.ValueFrom.FieldRef != nil:
			v, ok := standIn[e.ValueFrom.FieldRef.FieldPath]
			if !ok {
				t.Errorf("castbridge env %s: field %s has no stand-in here", e.Name, e.ValueFrom.FieldRef.FieldPath)
			}
			env[e.Name] = v
		case e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil:
			env[e.Name] = secretStandIn(e.Name)
		default:
			env[e.Name] = e.Value
		}
	}
	expand := func(s string) string {
		return regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`).ReplaceAllStringFunc(s, func(ref string) string {
			return env[ref[2:len(ref)-1]]
		})
	}
	var args []string
	given := map[string]string{}
	for _, a := range c.Args {
		name, value, ok := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !strings.HasPrefix(a, "--") || !ok {
			t.Errorf("castbridge arg %q: write flags as --name=value (one argument each)", a)
			continue
		}
		if !known[name] {
			t.Errorf("castbridge arg --%s: castbridge has no such flag", name)
			continue
		}
		given[name] = expand(value)
		args = append(args, "--"+name+"="+expand(value))
	}
	getenv := func(k string) string { return env[k] }
	for name := range env {
		flagName, ok := strings.CutPrefix(name, "CASTBRIDGE_")
		if !ok {
			continue
		}
		flagName = strings.ToLower(strings.ReplaceAll(flagName, "_", "-"))
		if !known[flagName] {
			t.Errorf("castbridge env %s: castbridge has no flag --%s", name, flagName)
		}
		if _, dup := given[flagName]; dup {
			t.Errorf("castbridge env %s and arg --%s both set it", name, flagName)
		}
	}
	o, err := parseOptions(args, getenv, io.Discard)
	if err != nil {
		t.Fatalf("castbridge's flags do not parse: %v", err)
	}
	// The cluster's flags are checked together at start (a secret, an
	// advertised URL, a node id): as the binary does.
	if o.redisURL == "" {
		t.Error("castbridge is given no --redis (CASTBRIDGE_REDIS): the pods would not form a cluster")
	} else if node, err := newClusterNode(o, nil, slog.New(slog.DiscardHandler)); err != nil {
		t.Errorf("castbridge's cluster flags: %v", err)
	} else {
		_ = node.Close(context.Background())
	}
	if o.apiKey == "" {
		t.Error("castbridge runs without --api-key (CASTBRIDGE_API_KEY)")
	}
	if ips, err := parseIPs(o.iceIPs); err != nil || len(ips) != 1 {
		t.Errorf("--ice-ips %q: %v; want the pod's one address", o.iceIPs, err)
	}
	if o.localIngest != "" {
		t.Errorf("--local-ingest %q: the recording ingest is for trying castbridge out, not a cluster", o.localIngest)
	}

	// Ports: what the flags listen on is what the pod exposes.
	_, httpPort, _ := strings.Cut(o.httpAddr, ":")
	for _, want := range []struct {
		port  string
		proto corev1.Protocol
	}{{httpPort, corev1.ProtocolTCP}, {fmt.Sprint(o.iceUDPPort), corev1.ProtocolUDP}, {fmt.Sprint(o.iceTCPPort), corev1.ProtocolTCP}} {
		if want.port == "0" {
			continue
		}
		if !hasPort(pod, intstr.Parse(want.port), want.proto) {
			t.Errorf("castbridge listens on %s/%s, which the pod does not declare", want.port, want.proto)
		}
	}
	if rp := c.ReadinessProbe; rp == nil || rp.HTTPGet == nil || rp.HTTPGet.Path != "/readyz" {
		t.Error("castbridge's readiness probe must GET /readyz (503 while draining)")
	}
	if lp := c.LivenessProbe; lp == nil || lp.HTTPGet == nil || lp.HTTPGet.Path != "/healthz" {
		t.Error("castbridge's liveness probe must GET /healthz")
	}
	for _, p := range []*corev1.Probe{c.ReadinessProbe, c.LivenessProbe} {
		if p != nil && p.HTTPGet != nil && !hasPort(pod, p.HTTPGet.Port, corev1.ProtocolTCP) {
			t.Errorf("probe port %s is not the pod's", p.HTTPGet.Port.String())
		}
	}
	if lc := c.Lifecycle; lc == nil || lc.PreStop == nil || lc.PreStop.Exec == nil ||
		!strings.Contains(strings.Join(lc.PreStop.Exec.Command, " "), "kill -TERM 1") {
		t.Error("castbridge has no preStop hook that starts the drain (SIGTERM to PID 1)")
	}

	// The grace period covers the drain and the clean stop after it.
	drain := time.Duration(0)
	if v, ok := given["drain-timeout"]; ok {
		drain, err = time.ParseDuration(v)
		if err != nil {
			t.Errorf("--drain-timeout %q: %v", v, err)
		}
	} else {
		for _, a := range c.Args {
			if v, ok := strings.CutPrefix(a, "--drain-timeout="); ok {
				if drain, err = time.ParseDuration(v); err != nil {
					t.Errorf("--drain-timeout %q: %v", v, err)
				}
			}
		}
	}
	if drain == 0 {
		t.Error("castbridge is given no --drain-timeout: SIGTERM would stop live broadcasts at once")
	}
	grace := time.Duration(0)
	if g := pod.TerminationGracePeriodSeconds; g != nil {
		grace = time.Duration(*g) * time.Second
	}
	if need := drain + o.shutdownTimeout; grace <= need {
		t.Errorf("terminationGracePeriodSeconds %v, want more than --drain-timeout + --shutdown-timeout (%v)", grace, need)
	}

	// ICE: a reachable address per pod.
	if !pod.HostNetwork {
		t.Error("the castbridge pod is not on the host network: its ICE address and port would not be reachable (or document and test the routable pod network)")
	}
	anti := d.Spec.Template.Spec.Affinity
	if anti == nil || anti.PodAntiAffinity == nil || len(anti.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution) == 0 ||
		anti.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution[0].TopologyKey != "kubernetes.io/hostname" {
		t.Error("castbridge pods on the host network need required anti-affinity on kubernetes.io/hostname (one per node)")
	}
	ru := d.Spec.Strategy.RollingUpdate
	if ru == nil || ru.MaxUnavailable == nil || ru.MaxUnavailable.IntValue() != 0 {
		t.Error("a rollout must not take a node down before its replacement is ready (maxUnavailable 0)")
	}
	sysctl := false
	for _, ic := range pod.InitContainers {
		cmd := strings.Join(slices.Concat(ic.Command, ic.Args), " ")
		sysctl = sysctl || (strings.Contains(cmd, "net.core.rmem_max=8388608") && strings.Contains(cmd, "net.core.wmem_max=8388608"))
	}
	if !sysctl {
		t.Error("no init container raises net.core.rmem_max and wmem_max to castbridge's 8 MiB (or document the node setting and change this test)")
	}
}

// secretStandIn is a value of the right shape for a variable read from a
// Secret: a URL for the Redis, 32 bytes for the secrets.
func secretStandIn(name string) string {
	if name == "CASTBRIDGE_REDIS" {
		return "redis://:pw@castbridge-redis.castbridge.svc:6379/0"
	}
	return strings.Repeat("s", 32)
}

// flagNames are castbridge's flags, as its usage lists them: parseOptions
// makes its flag set inside, and this reads it without changing how.
func flagNames(t *testing.T) map[string]bool {
	t.Helper()
	var out bytes.Buffer
	if _, err := parseOptions([]string{"-h"}, func(string) string { return "" }, &out); err == nil {
		t.Fatal("-h did not stop the parse")
	}
	names := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^  -([a-z0-9-]+)`).FindAllStringSubmatch(out.String(), -1) {
		names[m[1]] = true
	}
	if !names["http-addr"] || !names["api-key"] || len(names) < 20 {
		t.Fatalf("read %d flag names from the usage:\n%s", len(names), out.String())
	}
	return names
}

// TestManifestHelpers: the checks above do fail on what they look for.
func TestManifestHelpers(t *testing.T) {
	for _, a := range []string{"--api-key=x", "--redis=redis://h", "--token-secret=y", "redis://:pw@h:6379"} {
		if !isSecretArg(a) {
			t.Errorf("isSecretArg(%q) = false", a)
		}
	}
	for _, a := range []string{"--ice-ips=$(POD_IP)", "--http-addr=:8080", "--advertise-url=http://$(POD_IP):8080"} {
		if isSecretArg(a) {
			t.Errorf("isSecretArg(%q) = true", a)
		}
	}
	docs := splitDocuments([]byte("# c\n---\na: 1\n---\n# only a comment\n---\nb: 2\n"))
	if len(docs) != 2 {
		t.Errorf("splitDocuments: %d documents, want 2", len(docs))
	}
	// Strict decoding refuses a misspelt field.
	var d appsv1.Deployment
	if err := yaml.UnmarshalStrict([]byte("apiVersion: apps/v1\nkind: Deployment\nspec:\n  replica: 3\n"), &d); err == nil {
		t.Error("a misspelt field decoded")
	}
	pod := &corev1.PodSpec{Containers: []corev1.Container{{Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}, {Name: "ice", ContainerPort: 8189, Protocol: corev1.ProtocolUDP}}}}}
	if !hasPort(pod, intstr.FromString("http"), "") || hasPort(pod, intstr.FromInt32(8189), corev1.ProtocolTCP) || !hasPort(pod, intstr.FromInt32(8189), corev1.ProtocolUDP) {
		t.Error("hasPort")
	}
}
