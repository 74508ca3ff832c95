//! The dashboard's routes and the report page.

use axum::body::{Body, to_bytes};
use axum::http::{Request, StatusCode, header};
use tower::ServiceExt;

use super::*;

async fn get_with(path: &str, if_none_match: Option<&str>) -> (StatusCode, HeaderMap, String) {
    let app: Router = router();
    let mut req = Request::get(path);
    if let Some(tag) = if_none_match {
        req = req.header(header::IF_NONE_MATCH, tag);
    }
    let res = app.oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let body = to_bytes(res.into_body(), 4 << 20).await.unwrap();
    (status, headers, String::from_utf8(body.to_vec()).unwrap())
}

#[tokio::test]
async fn the_page_and_its_assets_are_served_with_their_types() {
    let (status, headers, body) = get_with("/", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], "text/html; charset=utf-8");
    assert!(
        headers[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap()
            .contains("script-src 'self'")
    );
    assert!(body.contains("assets/app.js") && body.contains("assets/app.css"));
    for (path, kind) in [
        ("/assets/app.css", "text/css; charset=utf-8"),
        ("/assets/app.js", "text/javascript; charset=utf-8"),
    ] {
        let (status, headers, body) = get_with(path, None).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert_eq!(headers[header::CONTENT_TYPE], kind, "{path}");
        assert_eq!(headers[header::CACHE_CONTROL], "no-cache", "{path}");
        assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert!(!body.is_empty());
    }
    let (status, _, _) = get_with("/assets/secrets.txt", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_browser_with_the_current_file_gets_304() {
    let (_, headers, _) = get_with("/assets/app.js", None).await;
    let tag = headers[header::ETAG].to_str().unwrap().to_owned();
    assert!(tag.starts_with('"') && tag.ends_with('"'));
    let (status, headers, body) = get_with("/assets/app.js", Some(&tag)).await;
    assert_eq!(status, StatusCode::NOT_MODIFIED);
    assert_eq!(headers[header::ETAG], tag.as_str());
    assert!(body.is_empty());
    let (status, _, _) = get_with("/assets/app.js", Some("\"0000000000000000\"")).await;
    assert_eq!(status, StatusCode::OK);
}

#[test]
fn the_assets_cannot_end_the_elements_they_are_inlined_in() {
    assert!(!APP_JS.to_ascii_lowercase().contains("</script"));
    assert!(!APP_CSS.to_ascii_lowercase().contains("</style"));
    for mark in [CSS_LINK, JS_TAG, DATA_MARK] {
        assert_eq!(INDEX_HTML.matches(mark).count(), 1, "{mark}");
    }
}

#[test]
fn a_report_is_self_contained_and_its_tree_cannot_break_out() {
    let json = serde_json::json!({
        "prompt": "a </script><script>alert(1)</script> <!-- storm & sea \u{2028}",
        "iterations": [],
    })
    .to_string();
    let html = report_from_json(&json);
    // Nothing refers to the server: no asset link, no script src.
    assert!(!html.contains("assets/app.css") && !html.contains("assets/app.js"));
    assert!(!html.contains("src=\"http") && !html.contains("href=\"http"));
    assert!(html.contains("<style>") && html.contains(r#"<script id="bb-tree""#));
    // Exactly the three script elements' ends: the data, the inlined script... and none from
    // the tree.
    assert_eq!(html.matches("</script>").count(), 2);
    assert!(!html.contains("<!-- storm"));
    // The embedded text is still the same JSON value.
    let start = html.find(r#"type="application/json">"#).unwrap() + 24;
    let end = start + html[start..].find("</script>").unwrap();
    let back: serde_json::Value = serde_json::from_str(&html[start..end]).unwrap();
    assert_eq!(
        back,
        serde_json::from_str::<serde_json::Value>(&json).unwrap()
    );
}

/// A small tree, as `SessionTree::of_session` makes them.
fn tree() -> SessionTree {
    use crate::view::{
        CostLine, CurvePoint, TreeBest, TreeCandidate, TreeCost, TreeIteration, TreeParams,
    };
    let candidate = |id: &str, parent: Option<&str>| TreeCandidate {
        id: id.into(),
        iteration: if parent.is_some() { 1 } else { 0 },
        parent: parent.map(Into::into),
        what: "a lighthouse".into(),
        how: "oil on canvas".into(),
        prompt: "a lighthouse </script> & oil".into(),
        image_url: Some(format!("images/{id}.png")),
        rating: Some(7.5),
        score: Some(7.5),
        rank: Some(1),
        reasons: vec!["A is preferred".into()],
        strengths: vec!["shows the storm".into()],
        weaknesses: vec![],
        critique: None,
        failed: None,
        survived: true,
    };
    SessionTree {
        job_id: String::new(),
        session_id: "s_1".into(),
        prompt: "a lighthouse in a storm".into(),
        status: "completed".into(),
        params: TreeParams {
            n: 1,
            m: 1,
            iterations: 2,
            plan: "fused".into(),
            judging: "comparative".into(),
            ensemble: 3,
            seed: 7,
        },
        iterations: vec![
            TreeIteration {
                iteration: 0,
                best_id: Some("i0c0".into()),
                best_rating: Some(7.5),
                candidates: vec![candidate("i0c0", None)],
            },
            TreeIteration {
                iteration: 1,
                best_id: Some("i1c0".into()),
                best_rating: Some(7.5),
                candidates: vec![candidate("i1c0", Some("i0c0"))],
            },
        ],
        best: Some(TreeBest {
            id: "i1c0".into(),
            prompt: "a lighthouse".into(),
            rating: Some(7.5),
            image_url: Some("images/i1c0.png".into()),
        }),
        rating_curve: vec![CurvePoint {
            iteration: 0,
            best_rating: Some(7.5),
        }],
        rating_scale: "elo".into(),
        cost: TreeCost {
            total: 1.0,
            all_standard: 2.0,
            saved: 1.0,
            simulated: true,
            by_operation: vec![CostLine {
                operation: "judge".into(),
                tier: "batch".into(),
                calls: 3,
                cost: 1.0,
                standard_cost: 2.0,
            }],
            forecast: Some(1.1),
        },
        stopped: Some("budget $1.0000: spent $1.0000".into()),
        draft_best: None,
    }
}

#[test]
fn the_report_embeds_the_tree_with_the_names_the_script_reads() {
    let html = report_html(&tree());
    let start = html.find(r#"type="application/json">"#).unwrap() + 24;
    let end = start + html[start..].find("</script>").unwrap();
    let back: serde_json::Value = serde_json::from_str(&html[start..end]).unwrap();
    assert_eq!(back, serde_json::to_value(tree()).unwrap());
    // The names app.js reads, so that a rename on either side fails here.
    for key in [
        "sessionId",
        "ratingCurve",
        "ratingScale",
        "bestRating",
        "bestId",
        "imageUrl",
        "allStandard",
        "byOperation",
        "standardCost",
        "survived",
        "forecast",
        "stopped",
        "draftBest",
    ] {
        assert!(html[start..end].contains(&format!("\"{key}\"")), "{key}");
        assert!(APP_JS.contains(key), "app.js reads {key}");
    }
    assert!(html[start..end].contains("images/i1c0.png"));
    assert!(!html[start..end].contains("</script>"));
}
