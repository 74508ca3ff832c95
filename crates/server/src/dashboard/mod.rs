//! The dashboard: one HTML page, one stylesheet and one small script (`crates/server/assets`,
//! plain HTML, CSS and JavaScript with no build step), embedded in the binary. [`router`] serves
//! them at `/` and `/assets/{file}`; [`report_html`] writes the same job view as one
//! self-contained file with the session tree embedded, for `report.html` beside a session's
//! images. Nothing the page uses loads from the network.

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::view::SessionTree;

#[cfg(test)]
mod tests;

/// The page (both modes: live under `batchbeam serve`, static in `report.html`).
const INDEX_HTML: &str = include_str!("../../assets/index.html");
/// The stylesheet.
const APP_CSS: &str = include_str!("../../assets/app.css");
/// The script.
const APP_JS: &str = include_str!("../../assets/app.js");

/// The page's stylesheet link, replaced by the inlined stylesheet in a report.
const CSS_LINK: &str = r#"<link rel="stylesheet" href="assets/app.css">"#;
/// The page's script tag, replaced by the inlined script in a report.
const JS_TAG: &str = r#"<script src="assets/app.js" defer></script>"#;
/// Where a report's embedded tree goes.
const DATA_MARK: &str = "<!--bb:data-->";

/// The page's content security policy: everything from this server, images also from the
/// blobs the script makes for token-protected image requests; no inline script or style.
const CSP: &str = "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; \
                   script-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'self'; \
                   frame-ancestors 'none'";

/// One embedded file.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static str,
}

/// The files under `/assets/`.
const ASSETS: [Asset; 2] = [
    Asset {
        name: "app.css",
        content_type: "text/css; charset=utf-8",
        body: APP_CSS,
    },
    Asset {
        name: "app.js",
        content_type: "text/javascript; charset=utf-8",
        body: APP_JS,
    },
];

/// `/` (the page) and `/assets/{file}` (its stylesheet and script), for any router state.
///
/// Every answer carries a strong `ETag` (a hash of the embedded bytes) and `Cache-Control:
/// no-cache`: a browser revalidates and gets `304 Not Modified` until the binary changes, so an
/// upgraded server never serves a stale script.
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(index))
        .route("/assets/{file}", get(asset))
}

async fn index(headers: HeaderMap) -> Response {
    let mut response = cached(&headers, "text/html; charset=utf-8", INDEX_HTML);
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

async fn asset(Path(file): Path<String>, headers: HeaderMap) -> Response {
    match ASSETS.iter().find(|a| a.name == file) {
        Some(a) => cached(&headers, a.content_type, a.body),
        None => (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("no dashboard asset named {file:?}"),
        )
            .into_response(),
    }
}

/// `body` with its content type and validators, or `304` when the browser has it already.
fn cached(request: &HeaderMap, content_type: &'static str, body: &'static str) -> Response {
    let etag = etag(body);
    let fresh = request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let headers = [
        (header::CACHE_CONTROL, "no-cache".to_owned()),
        (header::ETAG, etag),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_owned()),
    ];
    if fresh {
        return (StatusCode::NOT_MODIFIED, headers).into_response();
    }
    (
        StatusCode::OK,
        headers,
        [(header::CONTENT_TYPE, content_type)],
        body,
    )
        .into_response()
}

/// A strong entity tag: FNV-1a over the bytes, quoted.
fn etag(body: &str) -> String {
    let hash = body.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    format!("\"{hash:016x}\"")
}

/// The job view of `tree` as one self-contained HTML file: the stylesheet and script inlined,
/// the tree embedded as JSON, no API and no socket. Image links are the tree's own, so a tree
/// built with relative links (`images/i0c3.png`) renders from a file written into the session
/// folder.
pub fn report_html(tree: &SessionTree) -> String {
    // A tree is plain data: serialising it cannot fail; if it ever did, the page says so.
    let json = serde_json::to_string(tree).unwrap_or_else(|e| {
        serde_json::json!({ "error": format!("the session tree could not be written: {e}") })
            .to_string()
    });
    report_from_json(&json)
}

/// The report page around a tree already serialised as JSON.
fn report_from_json(json: &str) -> String {
    let data = format!(
        "<script id=\"bb-tree\" type=\"application/json\">{}</script>",
        script_safe(json)
    );
    INDEX_HTML
        .replace(CSS_LINK, &format!("<style>\n{APP_CSS}</style>"))
        .replace(DATA_MARK, &data)
        .replace(JS_TAG, &format!("<script>\n{APP_JS}</script>"))
}

/// JSON that can sit inside a `<script>` element: `<`, `>` and `&` (only ever inside JSON
/// strings) become `\u003c`, `\u003e`, `\u0026`, so no `</script>` or `<!--` can end or bend
/// the element; U+2028 and U+2029 are escaped too. `JSON.parse` reads the same value back.
fn script_safe(json: &str) -> String {
    let mut out = String::with_capacity(json.len() + 16);
    for c in json.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out
}
