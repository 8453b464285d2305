package vet

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	admissionv1beta1 "k8s.io/api/admissionregistration/v1beta1"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
	yamlv3 "sigs.k8s.io/yaml/goyaml.v3"
)

// MaxFileSize bounds one input: a manifest larger than this is refused, not
// read into memory.
const MaxFileSize = 16 << 20

// InputError is input that cannot be read or decoded: a file, the line
// where it can tell, and what is wrong. The command exits 2 on it.
type InputError struct {
	File string
	Line int // 0: unknown
	Err  error
}

func (e *InputError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %v", e.File, e.Line, e.Err)
	}
	return fmt.Sprintf("%s: %v", e.File, e.Err)
}

func (e *InputError) Unwrap() error { return e.Err }

// Set is every object read, in input order.
type Set struct {
	Workloads []*Workload
	Services  []*Object[corev1.Service]
	PDBs      []*Object[policyv1.PodDisruptionBudget]
	Skipped   int // documents of kinds no rule reads (ConfigMaps, custom resources, ...)
	// Duplicates counts objects read twice, identical (the same manifest
	// in two files): checked once.
	Duplicates int
	// Problems are the documents (or files) that could not be read, or
	// were read leaving something out (an unknown field or kind), each
	// with its file and line: the rest is checked all the same.
	Problems []*InputError

	seen        map[string][]byte // an object's JSON by apiVersion, kind, namespace and name
	autoscalers []*autoscaler     // a workload one scales has its count
	webhooks    []*webhookConfig  // admission webhooks, by the Services they call
}

// Empty reports whether nothing was read: no object, checked or skipped.
func (s *Set) Empty() bool {
	return len(s.Workloads)+len(s.Services)+len(s.PDBs)+len(s.autoscalers)+len(s.webhooks)+s.Skipped+s.Duplicates == 0
}

// Object is a decoded document and where it came from.
type Object[T any] struct {
	Obj  *T
	Kind string
	Meta *metav1.ObjectMeta
	src  *source
}

// source is a document's file and YAML tree, to find the line of a field.
type source struct {
	file string
	root *yamlv3.Node // the document's top mapping
}

// Line returns the line of the field at path (keys and sequence indexes),
// or of its nearest ancestor that exists.
func (s *source) Line(path ...any) int {
	if s == nil || s.root == nil {
		return 0
	}
	n, line := s.root, s.root.Line
	for _, p := range path {
		var next *yamlv3.Node
		switch key := p.(type) {
		case string:
			if n.Kind == yamlv3.MappingNode {
				for i := 0; i+1 < len(n.Content); i += 2 {
					if n.Content[i].Value == key {
						next, line = n.Content[i+1], n.Content[i].Line
						break
					}
				}
			}
		case int:
			if n.Kind == yamlv3.SequenceNode && key < len(n.Content) {
				next = n.Content[key]
				line = next.Line
			}
		}
		if next == nil {
			return line
		}
		n = next
	}
	return line
}

// Load reads every YAML or JSON document of the named inputs: files,
// folders (recursively: *.yaml, *.yml, *.json) and "-" for stdin. A
// document or file it cannot read is a Problem of the Set, and the rest
// is read all the same; Load fails only when nothing could be read though
// something was there (empty input is nothing to check), or, with strict,
// on the first problem.
func Load(names []string, stdin io.Reader, strict bool) (*Set, error) {
	set := &Set{}
	for _, name := range names {
		if name == "-" {
			b, err := readAll("stdin", stdin)
			if err != nil {
				return nil, err
			}
			_ = set.Add("stdin", b) // its problems are the Set's
			continue
		}
		files, err := expand(name)
		if err != nil {
			set.Problems = append(set.Problems, err.(*InputError))
			continue
		}
		for _, f := range files {
			b, err := readFile(f)
			if err != nil {
				set.Problems = append(set.Problems, err)
				continue
			}
			_ = set.Add(f, b)
		}
	}
	if len(set.Problems) > 0 && (strict || set.Empty()) {
		return nil, set.Problems[0]
	}
	return set, nil
}

func readFile(name string) ([]byte, *InputError) {
	fh, err := os.Open(name) // #nosec G304 -- the user names the manifests to read
	if err != nil {
		return nil, &InputError{File: name, Err: errors.Unwrap(err)}
	}
	defer fh.Close() // read-only
	b, err := readAll(name, fh)
	if err != nil {
		return nil, err.(*InputError)
	}
	return b, nil
}

func readAll(name string, r io.Reader) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, MaxFileSize+1))
	if err != nil {
		return nil, &InputError{File: name, Err: err}
	}
	if len(b) > MaxFileSize {
		return nil, &InputError{File: name, Err: fmt.Errorf("larger than %d MiB", MaxFileSize>>20)}
	}
	return b, nil
}

// expand lists a file, or a folder's manifests in lexical order.
func expand(name string) ([]string, error) {
	fi, err := os.Stat(name)
	if err != nil {
		return nil, &InputError{File: name, Err: errors.Unwrap(err)}
	}
	if !fi.IsDir() {
		return []string{name}, nil
	}
	var files []string
	err = filepath.WalkDir(name, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		switch strings.ToLower(filepath.Ext(p)) {
		case ".yaml", ".yml", ".json":
			if !d.IsDir() && d.Name() != "kustomization.yaml" && d.Name() != "kustomization.yml" {
				files = append(files, p)
			}
		}
		return nil
	})
	if err != nil {
		return nil, &InputError{File: name, Err: err}
	}
	sort.Strings(files)
	if len(files) == 0 {
		return nil, &InputError{File: name, Err: errors.New("no .yaml, .yml or .json file")}
	}
	return files, nil
}

// Add decodes every document of data, named file in findings and
// problems. A document it cannot read is a Problem, and the next is read:
// Add returns this data's problems, joined.
func (s *Set) Add(file string, data []byte) error {
	before := len(s.Problems)
	s.add(file, data)
	s.unrendered(file, data, before)
	var errs []error
	for _, p := range s.Problems[before:] {
		errs = append(errs, p)
	}
	return errors.Join(errs...)
}

func (s *Set) add(file string, data []byte) {
	dec := yamlv3.NewDecoder(bytes.NewReader(data))
	for {
		var doc yamlv3.Node
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			// The decoder cannot resynchronise: the rest of the file
			// is lost with this document.
			s.Problems = append(s.Problems, &InputError{File: file, Line: yamlErrorLine(err), Err: fmt.Errorf("not YAML: %v", trimYAMLError(err))})
			break
		}
		if len(doc.Content) == 0 || (doc.Content[0].Kind == yamlv3.ScalarNode && doc.Content[0].Tag == "!!null") {
			continue // an empty document: "---" alone, or only comments
		}
		s.addDoc(&source{file: file, root: doc.Content[0]})
	}
}

// addDoc reads one object, or a List's items; what it cannot read is a
// Problem.
func (s *Set) addDoc(src *source) {
	bad := func(line int, format string, args ...any) {
		s.Problems = append(s.Problems, &InputError{File: src.file, Line: line, Err: fmt.Errorf(format, args...)})
	}
	if src.root.Kind != yamlv3.MappingNode {
		bad(src.root.Line, "a document is not a Kubernetes object (a mapping with apiVersion and kind)")
		return
	}
	if n := duplicateKey(src.root); n != nil {
		bad(n.Line, "duplicate field %q", n.Value)
		return
	}
	raw, err := yamlv3.Marshal(src.root)
	if err != nil {
		bad(src.root.Line, "%v", err)
		return
	}
	j, err := yaml.YAMLToJSON(raw)
	if err != nil {
		bad(src.root.Line, "%v", err)
		return
	}
	var tm metav1.TypeMeta
	if err := kjson.UnmarshalCaseSensitivePreserveInts(j, &tm); err != nil || tm.APIVersion == "" || tm.Kind == "" {
		bad(src.root.Line, "a document without apiVersion and kind")
		return
	}
	if isList(tm) {
		// kubectl's v1 List and every typed list (DeploymentList,
		// RoleBindingList, ...): their items are the objects.
		items := mappingValue(src.root, "items")
		if items == nil || items.Kind != yamlv3.SequenceNode {
			if items != nil {
				bad(items.Line, "%s: items is not a list", tm.Kind)
			}
			s.Skipped++
			return
		}
		for _, item := range items.Content {
			s.addDoc(&source{file: src.file, root: item})
		}
		return
	}
	gvk := tm.APIVersion + " " + tm.Kind
	newObj, ok := checkedKinds[gvk]
	if !ok {
		s.Skipped++
		if builtinGroup(tm.APIVersion) && !otherBuiltinKind(tm.Kind) {
			bad(src.Line("kind"), "unknown kind %q for apiVersion %s: not checked", tm.Kind, tm.APIVersion)
		}
		return
	}
	var meta struct {
		Metadata struct{ Namespace, Name string }
	}
	_ = kjson.UnmarshalCaseSensitivePreserveInts(j, &meta) // a bad one fails below
	key := gvk + " " + meta.Metadata.Namespace + "/" + meta.Metadata.Name
	if prev, ok := s.seen[key]; ok && bytes.Equal(prev, j) {
		s.Duplicates++ // the same object from another file: checked once
		return
	}
	obj := newObj()
	strict, err := kjson.UnmarshalStrict(j, obj, kjson.DisallowDuplicateFields, kjson.DisallowUnknownFields)
	if err != nil {
		bad(src.root.Line, "%s: %v", tm.Kind, err)
		return
	}
	for _, e := range strict {
		// A field newer than vet's Kubernetes types, or a typo: the
		// object is checked without it.
		bad(strictLine(src, e), "%s: %v (checked without it)", tm.Kind, e)
	}
	if d, ok := obj.(*appsv1.Deployment); ok {
		if t := d.Spec.Strategy.Type; t != "" && t != appsv1.RollingUpdateDeploymentStrategyType && t != appsv1.RecreateDeploymentStrategyType {
			bad(src.Line("spec", "strategy", "type"), "Deployment: spec.strategy.type %q: want RollingUpdate or Recreate (the API server rejects it)", t)
			return
		}
	}
	if s.seen == nil {
		s.seen = map[string][]byte{}
	}
	s.seen[key] = j
	switch o := obj.(type) {
	case *corev1.Service:
		s.Services = append(s.Services, &Object[corev1.Service]{Obj: o, Kind: tm.Kind, Meta: &o.ObjectMeta, src: src})
	case *policyv1.PodDisruptionBudget:
		s.PDBs = append(s.PDBs, &Object[policyv1.PodDisruptionBudget]{Obj: o, Kind: tm.Kind, Meta: &o.ObjectMeta, src: src})
	case *autoscaler:
		s.autoscalers = append(s.autoscalers, o)
	case *admissionv1.ValidatingWebhookConfiguration, *admissionv1.MutatingWebhookConfiguration,
		*admissionv1beta1.ValidatingWebhookConfiguration, *admissionv1beta1.MutatingWebhookConfiguration:
		s.webhooks = append(s.webhooks, newWebhookConfig(tm.Kind, o, src))
	default:
		s.Workloads = append(s.Workloads, newWorkload(tm.Kind, obj, src))
	}
}

// isList reports kubectl's v1 List or a built-in typed list.
func isList(tm metav1.TypeMeta) bool {
	return tm.Kind == "List" || (strings.HasSuffix(tm.Kind, "List") && builtinGroup(tm.APIVersion))
}

// mappingValue returns the value of key in mapping n, or nil.
func mappingValue(n *yamlv3.Node, key string) *yamlv3.Node {
	if n.Kind != yamlv3.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}

// checkedKinds are the kinds the rules read, by "apiVersion kind".
var checkedKinds = map[string]func() any{
	"apps/v1 Deployment":                     func() any { return &appsv1.Deployment{} },
	"apps/v1 StatefulSet":                    func() any { return &appsv1.StatefulSet{} },
	"apps/v1 DaemonSet":                      func() any { return &appsv1.DaemonSet{} },
	"apps/v1 ReplicaSet":                     func() any { return &appsv1.ReplicaSet{} },
	"batch/v1 Job":                           func() any { return &batchv1.Job{} },
	"batch/v1 CronJob":                       func() any { return &batchv1.CronJob{} },
	"v1 Pod":                                 func() any { return &corev1.Pod{} },
	"v1 Service":                             func() any { return &corev1.Service{} },
	"policy/v1 PodDisruptionBudget":          func() any { return &policyv1.PodDisruptionBudget{} },
	"autoscaling/v2 HorizontalPodAutoscaler": func() any { return &autoscaler{} },
	// v1beta1 was served until 1.22; --kube-version reaches back to 1.10.
	"admissionregistration.k8s.io/v1 ValidatingWebhookConfiguration":      func() any { return &admissionv1.ValidatingWebhookConfiguration{} },
	"admissionregistration.k8s.io/v1 MutatingWebhookConfiguration":        func() any { return &admissionv1.MutatingWebhookConfiguration{} },
	"admissionregistration.k8s.io/v1beta1 ValidatingWebhookConfiguration": func() any { return &admissionv1beta1.ValidatingWebhookConfiguration{} },
	"admissionregistration.k8s.io/v1beta1 MutatingWebhookConfiguration":   func() any { return &admissionv1beta1.MutatingWebhookConfiguration{} },
}

// builtinGroup reports an apiVersion of Kubernetes' own API groups, whose
// kinds a typo can misspell; a custom resource's group has a dot outside
// k8s.io.
func builtinGroup(apiVersion string) bool {
	group, _, found := strings.Cut(apiVersion, "/")
	if !found {
		return true // the core group: v1
	}
	return !strings.Contains(group, ".") || strings.HasSuffix(group, ".k8s.io")
}

// otherBuiltinKind names the built-in kinds that no rule reads.
func otherBuiltinKind(kind string) bool {
	switch kind {
	case "ConfigMap", "Secret", "ServiceAccount", "Namespace", "PersistentVolumeClaim", "PersistentVolume",
		"Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding", "Ingress", "IngressClass", "NetworkPolicy",
		"HorizontalPodAutoscaler", "LimitRange", "ResourceQuota", "PriorityClass", "StorageClass", "Endpoints",
		"EndpointSlice", "ControllerRevision", "CustomResourceDefinition", "MutatingWebhookConfiguration",
		"ValidatingWebhookConfiguration", "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding",
		"PodTemplate", "Lease", "RuntimeClass", "CSIDriver", "VolumeAttachment", "APIService", "ReplicationController",
		"Event", "Binding", "ComponentStatus", "Node", "CSINode", "CSIStorageCapacity", "PodSecurityPolicy",
		"FlowSchema", "PriorityLevelConfiguration", "CertificateSigningRequest", "TokenReview", "SubjectAccessReview",
		"MutatingAdmissionPolicy", "MutatingAdmissionPolicyBinding", "DeviceClass", "ResourceClaim",
		"ResourceClaimTemplate", "ResourceSlice", "ServiceCIDR", "IPAddress", "VolumeAttributesClass":
		return true
	}
	return false
}

// strictLine finds the line of the field a strict-decoding error names
// (`unknown field "spec.strategy.rollingUpdate.maxUnavaliable"`).
func strictLine(src *source, err error) int {
	msg := err.Error()
	i := strings.IndexByte(msg, '"')
	j := strings.LastIndexByte(msg, '"')
	if i < 0 || j <= i {
		return src.root.Line
	}
	var path []any
	for _, p := range strings.Split(msg[i+1:j], ".") {
		name, idx, ok := strings.Cut(p, "[")
		path = append(path, name)
		if ok {
			var n int
			if _, err := fmt.Sscanf(idx, "%d]", &n); err == nil {
				path = append(path, n)
			}
		}
	}
	return src.Line(path...)
}

// duplicateKey returns the first key that a mapping below n repeats: the
// API server rejects such a document (fieldValidation=Strict).
func duplicateKey(n *yamlv3.Node) *yamlv3.Node {
	if n.Kind == yamlv3.MappingNode {
		seen := map[string]bool{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			if seen[k.Value] {
				return k
			}
			seen[k.Value] = true
		}
	}
	for _, c := range n.Content {
		if d := duplicateKey(c); d != nil {
			return d
		}
	}
	return nil
}

func yamlErrorLine(err error) int {
	var n int
	if _, e := fmt.Sscanf(strings.TrimPrefix(err.Error(), "yaml: "), "line %d:", &n); e == nil {
		return n
	}
	return 0
}

func trimYAMLError(err error) string {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	if _, rest, ok := strings.Cut(msg, ": "); ok && strings.HasPrefix(msg, "line ") {
		return rest
	}
	return msg
}

// unrendered replaces the problems of file from before on with one that
// says it is an unrendered template, when a document could not be parsed
// and the file holds template actions ({{ ... }}): Helm's YAML reads as a
// YAML error at line 1 ("invalid map key: map[interface {}]..."). A
// rendered file that holds template text in a string (a ConfigMap's) is
// not one.
func (s *Set) unrendered(file string, data []byte, before int) {
	line := templateLine(data)
	if line == 0 {
		return
	}
	for _, p := range s.Problems[before:] {
		msg := p.Err.Error()
		if strings.HasPrefix(msg, "not YAML") || strings.HasPrefix(msg, "yaml:") || strings.Contains(msg, "without apiVersion and kind") {
			s.Problems = append(s.Problems[:before], &InputError{File: file, Line: line,
				Err: errors.New("an unrendered template ({{ ... }}): check what it renders (helm template ... | drainwell vet -)")})
			return
		}
	}
}

// templateLine returns the line of the first template action ({{ ... }})
// outside a comment, or 0.
func templateLine(data []byte) int {
	for i, line := range strings.Split(string(data), "\n") {
		code, _, _ := strings.Cut(line, "#")
		if j := strings.Index(code, "{{"); j >= 0 && strings.Contains(code[j:], "}}") {
			return i + 1
		}
	}
	return 0
}

// autoscaler is what the rules read of a HorizontalPodAutoscaler
// (autoscaling/v2): the workload it scales and its range. Its other
// fields (metrics, behavior) are decoded and left.
type autoscaler struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		ScaleTargetRef struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
			Name       string `json:"name"`
		} `json:"scaleTargetRef"`
		MinReplicas *int32          `json:"minReplicas"`
		MaxReplicas int32           `json:"maxReplicas"`
		Metrics     json.RawMessage `json:"metrics"`
		Behavior    json.RawMessage `json:"behavior"`
	} `json:"spec"`
	Status json.RawMessage `json:"status"`
}
