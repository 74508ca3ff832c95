//! The OpenAPI document of the API (`GET /api/openapi.json`), generated from the handlers'
//! annotations and the types' schemas with utoipa.

use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

/// The bearer scheme.
struct Bearer;

impl Modify for Bearer {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        if let Some(components) = openapi.components.as_mut() {
            components.add_security_scheme(
                "bearer",
                SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
            );
        }
    }
}

/// The document.
#[derive(OpenApi)]
#[openapi(
    info(title = "batchbeam", description = "Image-prompt beam search jobs on OpenAI's Batch API"),
    paths(
        crate::api::beam_search,
        crate::api::get_job,
        crate::api::list_jobs,
        crate::api::cancel_job,
        crate::api::image,
        crate::api::tree,
        crate::api::events,
        crate::api::batch_results,
        crate::api::costs,
        crate::api::health,
        crate::api::ready,
        crate::api::metrics,
    ),
    modifiers(&Bearer)
)]
pub struct ApiDoc;

/// `GET /api/openapi.json`.
pub(crate) async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
