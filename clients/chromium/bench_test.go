package chromium_test

import (
	"context"
	"testing"
	"time"

	"github.com/execconform/execconform/clients/chromium"
	"github.com/execconform/execconform/scenarios"
)

// BenchmarkBrowserStart is the start of a browser to its first tab
// attached, and its end (every process gone, its directory removed).
func BenchmarkBrowserStart(b *testing.B) {
	exe, err := chromium.FindBrowser()
	if err != nil {
		b.Skip(err)
	}
	for b.Loop() {
		d, err := chromium.New(chromium.Options{ExecPath: exe})
		if err != nil {
			b.Fatal(err)
		}
		if err := d.Close(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkOpen is a session's open to the fake API server (the socket
// up) and its release: a tab of the shared browser, or a browser of its
// own.
func BenchmarkOpen(b *testing.B) {
	exe, err := chromium.FindBrowser()
	if err != nil {
		b.Skip(err)
	}
	d, err := chromium.New(chromium.Options{ExecPath: exe})
	if err != nil {
		b.Fatal(err)
	}
	defer d.Close()
	for _, c := range []struct {
		name string
		end  scenarios.End
	}{
		{"shared", own(scenarios.OwnTabClose)},
		{"own-browser", own(scenarios.OwnBrowserKill)},
	} {
		b.Run(c.name, func(b *testing.B) {
			fake := newFakeB(b)
			for b.Loop() {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				s, err := d.DialSession(ctx, request(fake.URL(), fake.Token(), true, c.end, nil))
				cancel()
				if err != nil {
					b.Fatal(err)
				}
				s.Release()
			}
		})
	}
}
