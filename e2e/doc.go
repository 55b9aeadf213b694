// Package e2e holds the end-to-end tests against a real Kubernetes cluster
// (build tag e2e): the conformance cases through the reference proxy and
// its broken variants into a real pod, a control without a proxy, and the
// fidelity check that compares the fake API server's outcomes with the
// real cluster's case by case.
//
// The tests are the same for every provider of the cluster; they read it
// from the E2E_* environment (realapiserver.FromEnv) and E2E_PROVIDER:
//
//   - local: make e2e-local, a one-node cluster from host processes in its
//     own network namespace (scripts/e2e-local.sh);
//   - kind: make e2e-kind, a new kind cluster (e2e-provider kind, the
//     module e2e/provider);
//   - cluster: make e2e-cluster, any cluster of a kubeconfig (e2e-provider
//     cluster); shells are counted from /proc inside the pod.
//
// Results go to E2E_REPORT_DIR/PROVIDER/, and fidelity.md in E2E_REPORT_DIR
// puts every provider that has run there side by side (WriteProviders).
package e2e
