package chromium

import (
	"context"
	"embed"
	"net/url"
	"strings"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/security"
	"github.com/chromedp/chromedp"
)

// The web console: the page, its exec client (client.js), and the page
// of another origin that OwnNavigate goes to.
//
//go:embed page/client.html page/client.js page/away.html
var pageFS embed.FS

// pageFile is the body and content type of the page file that u names:
// client.html or client.js beside pageURL, or awayURL; ok false for
// anything else.
func pageFile(u, pageURL, awayURL string) (body []byte, ctype string, ok bool) {
	pu, err := url.Parse(u)
	if err != nil {
		return nil, "", false
	}
	pu.RawQuery, pu.Fragment = "", ""
	clean := pu.String()
	base := strings.TrimSuffix(pageURL, "client.html")
	var name string
	switch clean {
	case awayURL:
		name = "away.html"
	case base + "client.html", base + "client.js":
		name = strings.TrimPrefix(clean, base)
	default:
		return nil, "", false
	}
	b, err := pageFS.ReadFile("page/" + name)
	if err != nil {
		return nil, "", false
	}
	ctype = "text/html; charset=utf-8"
	if strings.HasSuffix(name, ".js") {
		ctype = "text/javascript; charset=utf-8"
	}
	return b, ctype, true
}

// ignoreCertErrors makes the browser accept any certificate: it cannot be
// given the front's CA.
func ignoreCertErrors(ctx context.Context) error {
	_, err := chromedp.CallBrowser(ctx, security.SetIgnoreCertificateErrors, security.SetIgnoreCertificateErrorsParams{Ignore: true})
	return err
}

// emulateNetworkConditions is the parameters of
// Network.emulateNetworkConditions, which cdproto no longer has (it is
// deprecated for emulateNetworkConditionsByRule, which leaves
// navigator.onLine alone); Chromium still serves it, and it is what
// DevTools' "Offline" did for years.
type emulateNetworkConditions struct {
	Offline            bool    `json:"offline"`
	Latency            float64 `json:"latency"`
	DownloadThroughput float64 `json:"downloadThroughput"`
	UploadThroughput   float64 `json:"uploadThroughput"`
}

// goOffline takes the tab offline: every connection of the tab, new or
// open, as DevTools' network panel does.
func goOffline(ctx context.Context) error {
	if _, err := chromedp.Call(ctx, network.Enable, network.EnableParams{}); err != nil {
		return err
	}
	return chromedp.Do(ctx, chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		return t.Call(ctx, "Network.emulateNetworkConditions",
			emulateNetworkConditions{Offline: true, DownloadThroughput: -1, UploadThroughput: -1}, nil)
	}))
}
