package httpapi

import (
	"bytes"
	"embed"
	"io/fs"
	"net/http"
	"strings"

	"github.com/go-chi/chi/v5"
)

// web holds the demo page and the browser SDK. Only the files named here are
// built in: httpapi/web/test (and its node_modules) stays out.
//
//go:embed web/index.html web/castbridge.js web/assets
var web embed.FS

// moduleExports marks the SDK's trailing export statements, which a classic
// <script> cannot parse.
const moduleExports = "// castbridge:module-exports"

var (
	sdkModule = mustRead("web/castbridge.js")
	// sdkScript is the SDK for <script src> (it sets window.RtcUser).
	sdkScript = sdkModule[:bytes.Index(sdkModule, []byte(moduleExports))]
	indexHTML = mustRead("web/index.html")
)

func mustRead(name string) []byte {
	b, err := web.ReadFile(name)
	if err != nil {
		panic(err)
	}
	return b
}

// mountWeb serves the demo page (GET /), the SDK (GET /sdk/castbridge.js) and
// the page's assets (GET /assets/...). None of them needs the API key.
func mountWeb(r chi.Router) {
	assets, err := fs.Sub(web, "web/assets")
	if err != nil {
		panic(err)
	}
	files := http.StripPrefix("/assets/", http.FileServerFS(assets))

	r.Get("/", serveIndex)
	r.Get("/sdk/castbridge.js", serveSDK)
	r.Get("/assets/*", func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/") { // no directory listings
			http.NotFound(w, r)
			return
		}
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Cache-Control", "no-cache")
		files.ServeHTTP(w, r)
	})
}

func serveIndex(w http.ResponseWriter, _ *http.Request) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; media-src 'self' blob: mediastream:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'")
	_, _ = w.Write(indexHTML)
}

// serveSDK answers an ES module import with the module and a classic <script>
// load with the same code minus its export statements. Browsers tell the two
// apart with Sec-Fetch-Mode (module scripts are fetched in "cors" mode,
// classic ones in "no-cors"); ?format=script or ?format=module overrides it.
func serveSDK(w http.ResponseWriter, r *http.Request) {
	body := sdkModule
	switch r.URL.Query().Get("format") {
	case "script":
		body = sdkScript
	case "module":
	default:
		if r.Header.Get("Sec-Fetch-Dest") == "script" && r.Header.Get("Sec-Fetch-Mode") == "no-cors" {
			body = sdkScript
		}
	}
	h := w.Header()
	h.Set("Content-Type", "text/javascript; charset=utf-8")
	h.Set("Cache-Control", "no-cache")
	h.Set("Vary", "Sec-Fetch-Mode, Sec-Fetch-Dest")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Access-Control-Allow-Origin", "*") // other origins import it as a module
	_, _ = w.Write(body)
}
