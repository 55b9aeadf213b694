// Package e2e holds the end-to-end tests against a real Kubernetes cluster
// (build tag e2e): the conformance cases through the reference proxy and
// its broken variants into a real pod, a control without a proxy, and the
// fidelity check that compares the fake API server's outcomes with the
// real cluster's case by case.
//
// Run them with make e2e-local, which brings up a one-node cluster from
// host processes in its own network namespace (scripts/e2e-local.sh) and
// runs go test -tags e2e ./e2e/ inside it.
package e2e
