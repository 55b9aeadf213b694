package fakeapiserver

import (
	"encoding/json"
	"net/http"
)

// pod is the part of a v1 Pod the fake serves: enough for a client (and
// the suite's front-door knock) to tell the API server's answer.
type pod struct {
	Kind       string `json:"kind"`
	APIVersion string `json:"apiVersion"`
	Metadata   struct {
		Name      string `json:"name"`
		Namespace string `json:"namespace"`
	} `json:"metadata"`
	Status struct {
		Phase string `json:"phase"`
	} `json:"status"`
}

// servePod answers GET .../pods/NAME as the API server does for a running
// pod: every pod name exists, as for exec.
func (s *Server) servePod(w http.ResponseWriter, r *http.Request) {
	p := pod{Kind: "Pod", APIVersion: "v1"}
	p.Metadata.Name, p.Metadata.Namespace = r.PathValue("pod"), r.PathValue("ns")
	p.Status.Phase = "Running"
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(p)
}
