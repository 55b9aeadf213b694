// Package images holds the small helper programs of the host-process
// end-to-end cluster (scripts/e2e-local.sh). It depends on the standard
// library only, so it needs no go.sum and no download.
//
//   - cmd/pause: the pod sandbox ("pause") process: waits for SIGINT/SIGTERM
//     and reaps zombies.
//   - cmd/mkimage: packs the busybox and pause images as one OCI image
//     layout tar that `ctr images import` loads.
//   - cmd/e2ectl: certificates, readiness waits and a WebSocket exec check.
//
// Build them with
//
//	CGO_ENABLED=0 go build -trimpath -o DIR/ ./cmd/...
package images
