package fakeapiserver

import "net/http"

func isSPDYUpgrade(r *http.Request) bool { return false }

func (s *Server) serveSPDY(w http.ResponseWriter, r *http.Request) {}
