package vet

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

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
// folders (recursively: *.yaml, *.yml, *.json) and "-" for stdin.
func Load(names []string, stdin io.Reader) (*Set, error) {
	set := &Set{}
	for _, name := range names {
		if name == "-" {
			b, err := readAll("stdin", stdin)
			if err != nil {
				return nil, err
			}
			if len(bytes.TrimSpace(b)) == 0 {
				return nil, &InputError{File: "stdin", Err: errors.New("empty input")}
			}
			if err := set.Add("stdin", b); err != nil {
				return nil, err
			}
			continue
		}
		files, err := expand(name)
		if err != nil {
			return nil, err
		}
		for _, f := range files {
			fh, err := os.Open(f) // #nosec G304 -- the user names the manifests to read
			if err != nil {
				return nil, &InputError{File: f, Err: err}
			}
			b, err := readAll(f, fh)
			_ = fh.Close() // read-only
			if err != nil {
				return nil, err
			}
			if err := set.Add(f, b); err != nil {
				return nil, err
			}
		}
	}
	return set, nil
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

// Add decodes every document of data, named file in findings and errors.
func (s *Set) Add(file string, data []byte) error {
	dec := yamlv3.NewDecoder(bytes.NewReader(data))
	for {
		var doc yamlv3.Node
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return &InputError{File: file, Line: yamlErrorLine(err), Err: fmt.Errorf("not YAML: %v", trimYAMLError(err))}
		}
		if len(doc.Content) == 0 || (doc.Content[0].Kind == yamlv3.ScalarNode && doc.Content[0].Tag == "!!null") {
			continue // an empty document: "---" alone, or only comments
		}
		if err := s.addDoc(&source{file: file, root: doc.Content[0]}); err != nil {
			return err
		}
	}
}

func (s *Set) addDoc(src *source) error {
	bad := func(line int, format string, args ...any) error {
		return &InputError{File: src.file, Line: line, Err: fmt.Errorf(format, args...)}
	}
	if src.root.Kind != yamlv3.MappingNode {
		return bad(src.root.Line, "a document is not a Kubernetes object (a mapping with apiVersion and kind)")
	}
	if n := duplicateKey(src.root); n != nil {
		return bad(n.Line, "duplicate field %q", n.Value)
	}
	raw, err := yamlv3.Marshal(src.root)
	if err != nil {
		return bad(src.root.Line, "%v", err)
	}
	j, err := yaml.YAMLToJSON(raw)
	if err != nil {
		return bad(src.root.Line, "%v", err)
	}
	var tm metav1.TypeMeta
	if err := kjson.UnmarshalCaseSensitivePreserveInts(j, &tm); err != nil || tm.APIVersion == "" || tm.Kind == "" {
		return bad(src.root.Line, "a document without apiVersion and kind")
	}
	gvk := tm.APIVersion + " " + tm.Kind
	newObj, ok := checkedKinds[gvk]
	if !ok {
		if builtinGroup(tm.APIVersion) && !otherBuiltinKind(tm.Kind) {
			return bad(src.Line("kind"), "unknown kind %q for apiVersion %s", tm.Kind, tm.APIVersion)
		}
		s.Skipped++
		return nil
	}
	obj := newObj()
	strict, err := kjson.UnmarshalStrict(j, obj, kjson.DisallowDuplicateFields, kjson.DisallowUnknownFields)
	if err != nil {
		return bad(src.root.Line, "%s: %v", tm.Kind, err)
	}
	if len(strict) > 0 {
		return bad(strictLine(src, strict[0]), "%s: %v", tm.Kind, strict[0])
	}
	if d, ok := obj.(*appsv1.Deployment); ok {
		if t := d.Spec.Strategy.Type; t != "" && t != appsv1.RollingUpdateDeploymentStrategyType && t != appsv1.RecreateDeploymentStrategyType {
			return bad(src.Line("spec", "strategy", "type"), "Deployment: spec.strategy.type %q: want RollingUpdate or Recreate (the API server rejects it)", t)
		}
	}
	switch o := obj.(type) {
	case *corev1.Service:
		s.Services = append(s.Services, &Object[corev1.Service]{Obj: o, Kind: tm.Kind, Meta: &o.ObjectMeta, src: src})
	case *policyv1.PodDisruptionBudget:
		s.PDBs = append(s.PDBs, &Object[policyv1.PodDisruptionBudget]{Obj: o, Kind: tm.Kind, Meta: &o.ObjectMeta, src: src})
	default:
		s.Workloads = append(s.Workloads, newWorkload(tm.Kind, obj, src))
	}
	return nil
}

// checkedKinds are the kinds the rules read, by "apiVersion kind".
var checkedKinds = map[string]func() any{
	"apps/v1 Deployment":            func() any { return &appsv1.Deployment{} },
	"apps/v1 StatefulSet":           func() any { return &appsv1.StatefulSet{} },
	"apps/v1 DaemonSet":             func() any { return &appsv1.DaemonSet{} },
	"apps/v1 ReplicaSet":            func() any { return &appsv1.ReplicaSet{} },
	"batch/v1 Job":                  func() any { return &batchv1.Job{} },
	"batch/v1 CronJob":              func() any { return &batchv1.CronJob{} },
	"v1 Pod":                        func() any { return &corev1.Pod{} },
	"v1 Service":                    func() any { return &corev1.Service{} },
	"policy/v1 PodDisruptionBudget": func() any { return &policyv1.PodDisruptionBudget{} },
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
		"PodTemplate", "Lease", "RuntimeClass", "CSIDriver", "VolumeAttachment", "APIService", "List":
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
