// Package kubeapiserver holds no code. Its module pins the Kubernetes
// release that make test-envtest builds kube-apiserver from (go.mod's tool
// directive and replaces); the package gives go commands run here, such as
// go vet ./..., something to match.
package kubeapiserver
