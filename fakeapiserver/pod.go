package fakeapiserver

import (
	"encoding/json"
	"fmt"
	"net/http"
	"time"
)

// PodContainers is how many containers the fake's pods have: every pod
// name exists, as for exec, and every pod has the containers
// ContainerName(0) to ContainerName(PodContainers-1), each running. The
// suite names session idx's container ContainerName(idx) (that is how
// the harness tells a case's sessions apart), so a terminal that checks
// the container against the pod before it execs (Argo CD's does) finds
// it, as it would in a real pod. No case opens more sessions than this
// (the largest opens 200; scenarios checks it).
const PodContainers = 256

// ContainerName is the name of container idx of every pod (the exec
// endpoint itself accepts any container name).
func ContainerName(idx int) string { return fmt.Sprintf("c%d", idx) }

// pod is the part of a v1 Pod the fake serves: what clients read before
// an exec (the phase; the containers of the spec and their running
// states), and enough for the suite's front-door knock to tell the API
// server's answer.
type pod struct {
	Kind       string `json:"kind"`
	APIVersion string `json:"apiVersion"`
	Metadata   struct {
		Name      string `json:"name"`
		Namespace string `json:"namespace"`
		UID       string `json:"uid"`
	} `json:"metadata"`
	Spec struct {
		Containers []podContainer `json:"containers"`
	} `json:"spec"`
	Status struct {
		Phase             string            `json:"phase"`
		ContainerStatuses []containerStatus `json:"containerStatuses"`
	} `json:"status"`
}

type podContainer struct {
	Name  string `json:"name"`
	Image string `json:"image"`
}

type containerStatus struct {
	Name    string `json:"name"`
	Image   string `json:"image"`
	Ready   bool   `json:"ready"`
	Started bool   `json:"started"`
	State   struct {
		Running struct {
			StartedAt string `json:"startedAt"`
		} `json:"running"`
	} `json:"state"`
}

// podImage is the image the fake's containers claim to run.
const podImage = "execconform/fake-shell"

// servePod answers GET .../pods/NAME as the API server does for a running
// pod whose containers all run (see PodContainers).
func (s *Server) servePod(w http.ResponseWriter, r *http.Request) {
	p := pod{Kind: "Pod", APIVersion: "v1"}
	p.Metadata.Name, p.Metadata.Namespace = r.PathValue("pod"), r.PathValue("ns")
	p.Metadata.UID = "fake-" + p.Metadata.Namespace + "-" + p.Metadata.Name
	p.Status.Phase = "Running"
	started := s.created.UTC().Format(time.RFC3339)
	p.Spec.Containers = make([]podContainer, PodContainers)
	p.Status.ContainerStatuses = make([]containerStatus, PodContainers)
	for i := range PodContainers {
		name := ContainerName(i)
		p.Spec.Containers[i] = podContainer{Name: name, Image: podImage}
		cs := containerStatus{Name: name, Image: podImage, Ready: true, Started: true}
		cs.State.Running.StartedAt = started
		p.Status.ContainerStatuses[i] = cs
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(p)
}
