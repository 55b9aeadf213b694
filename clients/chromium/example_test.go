package chromium_test

import (
	"context"
	"fmt"
	"log"
	"net/url"
	"time"

	"github.com/execconform/execconform/clients"
	"github.com/execconform/execconform/clients/chromium"
	"github.com/execconform/execconform/scenarios"
)

// A browser tab opens an exec session through a proxy as a web console
// does (its page on the proxy's origin, the front credential a cookie,
// the API token in the bearer subprotocol), runs a command, and is
// closed by the user: what the proxy must then do to the shell is what
// the suite checks. It needs Chromium, so it has no Output to check.
func ExampleDialer() {
	d, err := chromium.New(chromium.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer d.Close()

	front, _ := url.Parse("http://127.0.0.1:8001") // the proxy under test
	end := scenarios.End{Kind: scenarios.EndClientOwn, As: scenarios.OwnTabClose}
	req := clients.Request{
		Case:      scenarios.Case{Scenario: &scenarios.Scenario{Name: "tab-close", End: end}, TTY: true},
		Front:     front,
		Header:    map[string][]string{"Cookie": {"execconform_front=FRONT-TOKEN"}},
		APIToken:  "API-TOKEN",
		Namespace: "default", Pod: "web", Container: "shell",
		Command: []string{"sh", "-i"},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := d.Dial(ctx, req)
	if err != nil {
		log.Fatal(err)
	}
	defer s.Release()
	if err := s.Type("echo $((40+2))\r"); err != nil {
		log.Fatal(err)
	}
	if err := s.Expect(ctx, "42"); err != nil {
		log.Fatal(err)
	}
	if err := s.EndAs(ctx, scenarios.OwnTabClose); err != nil { // the proxy gets a close frame 1001
		log.Fatal(err)
	}
	<-s.Done()
	fmt.Println(s.End())
}
