//! The built dashboard, embedded in the binary, one exact route per file: paths that are not
//! dashboard files fall through to the NGSI-LD API's 404 (ProblemDetails), as before.

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::IntoResponse;
use axum::routing::get;
use include_dir::{Dir, File, include_dir};

static DIST: Dir<'static> = include_dir!("$OUT_DIR/dist");

pub fn router() -> Router {
    let mut router = Router::new();
    let mut files = Vec::new();
    collect(&DIST, &mut files);
    for file in files {
        let path = format!("/{}", file.path().to_string_lossy().replace('\\', "/"));
        if path == "/index.html" {
            router = router.route("/", get(move || serve(file)));
        }
        router = router.route(&path, get(move || serve(file)));
    }
    // Compression pays for the boundaries and the script; the live feed (not in this router)
    // must stream uncompressed.
    router.layer(tower_http::compression::CompressionLayer::new())
}

fn collect(dir: &'static Dir<'static>, out: &mut Vec<&'static File<'static>>) {
    out.extend(dir.files());
    for sub in dir.dirs() {
        collect(sub, out);
    }
}

async fn serve(file: &'static File<'static>) -> impl IntoResponse {
    let path = file.path().to_string_lossy();
    // Vite names everything under assets/ by content hash: cache forever. The rest (index.html,
    // boundaries) must be revalidated so a new binary shows its new dashboard.
    let cache = if path.starts_with("assets/") { "public, max-age=31536000, immutable" } else { "no-cache" };
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type(&path))),
            (header::CACHE_CONTROL, HeaderValue::from_static(cache)),
        ],
        file.contents(),
    )
}

fn content_type(path: &str) -> &'static str {
    let ext = path.rsplit('.').next().unwrap_or_default();
    match ext {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" => "application/json",
        "geojson" => "application/geo+json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        "woff" => "font/woff",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}
