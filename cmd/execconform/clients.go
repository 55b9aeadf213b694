package main

import (
	"fmt"
	"log/slog"

	"github.com/execconform/execconform/clients"
	"github.com/execconform/execconform/clients/chromium"
	"github.com/execconform/execconform/clients/clientgo"
	"github.com/execconform/execconform/clients/kubectl"
	"github.com/execconform/execconform/scenarios"
)

// clientDialer starts the dialer of a real client.
func clientDialer(c scenarios.Client, logger *slog.Logger) (clients.Dialer, error) {
	switch c {
	case scenarios.ClientGo:
		return clientgo.New(), nil
	case scenarios.ClientChromium:
		// Debian's chromium (or CHROMIUM, chromium.FindBrowser), headless.
		return chromium.New(chromium.Options{Logger: logger})
	case scenarios.ClientKubectl:
		// Built from the Go module proxy on first use (cached after).
		return kubectl.New(kubectl.Options{Logger: logger})
	}
	return nil, fmt.Errorf("not built into this binary")
}
