//! Typed body of a `/v1/images/generations` request, as we send it inside a batch line.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The body of a `POST /v1/images/generations` request.
///
/// Fields the GPT image models and DALL·E understand differently are all optional; unknown
/// fields (`output_compression`, `partial_images`, ...) survive in [`extra`](Self::extra).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageGenerationRequest {
    /// What to draw.
    pub prompt: String,
    /// Model id, e.g. `gpt-image-1`. The API defaults to `dall-e-2`, but a batch must name it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Number of images, 1 to 10 (`dall-e-3`: only 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<u32>,
    /// `WIDTHxHEIGHT` or `auto`; which sizes are allowed depends on the model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<String>,
    /// Rendering quality.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quality: Option<ImageQuality>,
    /// URL or base64 answer (DALL·E only; GPT image models always answer base64).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_format: Option<ImageResponseFormat>,
    /// `vivid` or `natural` (`dall-e-3` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub style: Option<ImageStyle>,
    /// Background transparency (GPT image models only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub background: Option<ImageBackground>,
    /// Encoding of the returned image (GPT image models only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_format: Option<ImageOutputFormat>,
    /// Content-moderation strictness (GPT image models only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub moderation: Option<ImageModeration>,
    /// End-user identifier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Every other field, kept verbatim.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl ImageGenerationRequest {
    /// A request for one image from `model`, every option left to the API's default.
    pub fn new(model: impl Into<String>, prompt: impl Into<String>) -> Self {
        ImageGenerationRequest {
            prompt: prompt.into(),
            model: Some(model.into()),
            n: None,
            size: None,
            quality: None,
            response_format: None,
            style: None,
            background: None,
            output_format: None,
            moderation: None,
            user: None,
            extra: Map::new(),
        }
    }
}

/// `quality` of a generated image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ImageQuality {
    /// `dall-e-2`/`dall-e-3` standard.
    Standard,
    /// `dall-e-3` HD.
    Hd,
    /// GPT image models: low.
    Low,
    /// GPT image models: medium.
    Medium,
    /// GPT image models: high.
    High,
    /// The model's best choice.
    Auto,
}

/// How generated images come back (DALL·E only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ImageResponseFormat {
    /// A URL valid for 60 minutes.
    Url,
    /// Base64 JSON.
    B64Json,
}

/// `style` of a `dall-e-3` image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ImageStyle {
    /// Hyper-real and dramatic.
    Vivid,
    /// More natural.
    Natural,
}

/// `background` of a GPT image model's image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ImageBackground {
    /// Transparent (needs `png` or `webp`).
    Transparent,
    /// Opaque.
    Opaque,
    /// The model decides.
    Auto,
}

/// `output_format` of a GPT image model's image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ImageOutputFormat {
    /// PNG.
    Png,
    /// JPEG.
    Jpeg,
    /// WebP.
    Webp,
}

/// `moderation` level of a GPT image model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ImageModeration {
    /// Less restrictive filtering.
    Low,
    /// The default filtering.
    Auto,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn check(request: &ImageGenerationRequest, expect: &str) {
        let actual = serde_json::to_string(request).unwrap();
        assert_eq!(actual, expect);
        let back: ImageGenerationRequest = serde_json::from_str(&actual).unwrap();
        assert_eq!(&back, request, "round trip changed the request");
    }

    #[test]
    fn minimal_request() {
        check(
            &ImageGenerationRequest::new("gpt-image-1", "an otter"),
            r#"{"prompt":"an otter","model":"gpt-image-1"}"#,
        );
    }

    #[test]
    fn every_option_uses_the_api_spelling() {
        let mut request = ImageGenerationRequest::new("dall-e-3", "a fox");
        request.n = Some(1);
        request.size = Some("1792x1024".into());
        request.quality = Some(ImageQuality::Hd);
        request.response_format = Some(ImageResponseFormat::B64Json);
        request.style = Some(ImageStyle::Natural);
        request.background = Some(ImageBackground::Opaque);
        request.output_format = Some(ImageOutputFormat::Webp);
        request.moderation = Some(ImageModeration::Low);
        request.user = Some("u".into());
        request.extra.insert("output_compression".into(), json!(80));
        check(
            &request,
            concat!(
                r#"{"prompt":"a fox","model":"dall-e-3","n":1,"size":"1792x1024","quality":"hd","#,
                r#""response_format":"b64_json","style":"natural","background":"opaque","#,
                r#""output_format":"webp","moderation":"low","user":"u","output_compression":80}"#
            ),
        );
    }
}
