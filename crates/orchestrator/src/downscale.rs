//! Judge image downscaling: shrink an image to the resolution a vision model actually looks at
//! for a `detail` level and re-encode it compactly, so a whole judge stage fits in batch files.
//!
//! OpenAI's tile-based vision models (gpt-4o, gpt-4o-mini, gpt-4.1, o1, o3) resize every image
//! before looking at it (vision guide, "Calculating costs"):
//!
//! - `low`: the model receives a 512x512 version of the image (85 tokens, whatever the size).
//! - `high`: the image is scaled to fit within 2048x2048, then so that its shortest side is
//!   768px; the model reads it in 512px tiles (170 tokens a tile plus 85). A 1024x1024 image is
//!   seen at 768x768 (4 tiles), a 2048x4096 one at 768x1536 (6 tiles).
//! - `auto`: the model picks `low` or `high` from the input size, by a rule OpenAI does not
//!   publish.
//!
//! Anything sent above that resolution is base64 the batch file carries for nothing: a
//! 1024x1024 render is ~1.8 MB of PNG, ~2.4 MB in a request line, so a comparative judge stage
//! (n = 9 children with their 3 parents, all 66 pairs, ensemble 3: 396 images) needs ~950 MB of
//! batch files against the 200 MB limit per file. As 512x512 JPEGs they take ~14 MB (see
//! `docs/judge-images.md`).
//!
//! Rules of this module ([`target_size`], [`prepare_for_judge`]):
//!
//! - The image is never upscaled, and keeps its aspect ratio (`low` fits it within 512x512).
//! - [`ImageDetail::Auto`] is shrunk like `low`: a judge that does not ask for `high` wants the
//!   cheap look, and an image of at most 512px leaves `auto` nothing more to see at `high`.
//!   Ask for [`ImageDetail::High`] when the judge must read fine detail.
//! - An image already within its target passes through byte for byte, unread beyond its header
//!   (the simulator's PNGs carry their prompt in a text chunk that its judge reads).
//! - A larger one is resized (Catmull-Rom, after a box prefilter for large ratios), flattened onto
//!   white if it has alpha, and re-encoded as JPEG (quality 85) or PNG, whichever is smaller;
//!   if neither is smaller than the original, the original is returned.
//! - Images over [`MAX_PIXELS`] are refused from their header, before any pixel is decoded.
//!
//! Patch-based models (gpt-4.1-mini, gpt-4.1-nano, o4-mini) count 32px patches up to 1536 per
//! image instead, and see a 1024x1024 image whole; shrinking for `high` costs them some detail.
//! See `docs/judge-images.md`.

use std::fmt::Write as _;
use std::io::Cursor;

use image::codecs::jpeg::JpegEncoder;
use image::codecs::png::{CompressionType, FilterType as PngFilter, PngEncoder};
use image::imageops::{self, FilterType};
use image::metadata::Orientation;
use image::{
    DynamicImage, ExtendedColorType, ImageDecoder, ImageEncoder, ImageError, ImageFormat,
    ImageReader, Limits, RgbImage,
};

pub use batch_format::ImageDetail;

/// The side of the square a `low` image is fitted within.
pub const LOW_MAX_SIDE: u32 = 512;
/// The square a `high` image is first fitted within.
pub const HIGH_MAX_SIDE: u32 = 2048;
/// The shortest side a `high` image is then scaled down to.
pub const HIGH_SHORT_SIDE: u32 = 768;
/// The largest image (width times height, from its header) that is decoded: 100 megapixels.
/// Larger ones are refused as likely decompression bombs.
pub const MAX_PIXELS: u64 = 100_000_000;
/// The JPEG quality of a re-encoded image.
pub const JPEG_QUALITY: u8 = 85;

/// An image ready to go into a judge request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JudgeImage {
    /// The bytes to send: the original ones, or a smaller JPEG or PNG.
    pub bytes: Vec<u8>,
    /// The media type of `bytes`: `"image/png"` or `"image/jpeg"`.
    pub mime: &'static str,
    /// The width of the image in `bytes`.
    pub width: u32,
    /// The height of the image in `bytes`.
    pub height: u32,
    /// The size of the original image in bytes.
    pub original_bytes: usize,
}

/// Why an image could not be prepared for a judge.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DownscaleError {
    /// The bytes are not an image at all.
    #[error("not an image: {start}")]
    NotAnImage {
        /// Their length and what they start with, e.g. `30 bytes of text starting "{\"error\"..."`
        /// or `4 bytes starting 00 01 02 fe`.
        start: String,
    },
    /// An image in a format other than PNG or JPEG.
    #[error("unsupported image format {format}: only PNG and JPEG are read")]
    UnsupportedFormat {
        /// The format its first bytes announce, e.g. `WebP`.
        format: String,
    },
    /// The header declares more than [`MAX_PIXELS`] pixels; nothing was decoded.
    #[error("image too large: {width}x{height} is over the {max_pixels} pixel limit")]
    TooLarge {
        /// The declared width.
        width: u32,
        /// The declared height.
        height: u32,
        /// The limit, [`MAX_PIXELS`].
        max_pixels: u64,
    },
    /// A PNG or JPEG whose header or pixels could not be decoded.
    #[error("could not decode the {format} image: {source}")]
    Decode {
        /// `PNG` or `JPEG`.
        format: &'static str,
        /// The decoder's error.
        #[source]
        source: ImageError,
    },
    /// The resized image could not be encoded.
    #[error("could not encode the downscaled image: {source}")]
    Encode {
        /// The encoder's error.
        #[source]
        source: ImageError,
    },
}

/// The size a vision model looks at a `width` x `height` image with at `detail`, which is the
/// largest size worth sending. Never larger than the input, and the aspect ratio is kept (the
/// constrained side is exact, the other rounded to the nearest pixel, at least 1).
///
/// `low` and `auto` fit the image within 512x512; `high` fits it within 2048x2048 and then
/// scales its shortest side down to 768. A detail level this function does not know yet leaves
/// the size unchanged.
pub fn target_size(width: u32, height: u32, detail: ImageDetail) -> (u32, u32) {
    match detail {
        ImageDetail::Low | ImageDetail::Auto => fit(width, height, LOW_MAX_SIDE, LOW_MAX_SIDE),
        ImageDetail::High => fit(width, height, HIGH_MAX_SIDE, HIGH_SHORT_SIDE),
        _ => (width, height),
    }
}

/// Scales `(width, height)` down by the one factor that brings its longer side to at most
/// `max_long` and its shorter side to at most `max_short`.
fn fit(width: u32, height: u32, max_long: u32, max_short: u32) -> (u32, u32) {
    let (long, short) = (width.max(height), width.min(height));
    if short == 0 || (long <= max_long && short <= max_short) {
        return (width, height);
    }
    // The binding constraint has the smaller ratio target/actual: compare the cross products.
    let (target, actual) =
        if u64::from(max_long) * u64::from(short) <= u64::from(max_short) * u64::from(long) {
            (max_long, long)
        } else {
            (max_short, short)
        };
    let scale = |side: u32| -> u32 {
        let scaled =
            (u64::from(side) * u64::from(target) + u64::from(actual) / 2) / u64::from(actual);
        // Never below 1, never above the input (scaled <= side since target < actual).
        u32::try_from(scaled).unwrap_or(side).clamp(1, side)
    };
    (scale(width), scale(height))
}

/// Prepares PNG or JPEG `bytes` for a judge looking at them with `detail`: shrinks them to
/// [`target_size`] and re-encodes them compactly, or returns them unchanged when they are
/// already within the target (see the module documentation for the rules).
///
/// Only the header is read before the size is known, so an oversized image is refused without
/// decoding, and an image that passes through is not decoded at all. Fails with
/// [`Error::Downscale`](crate::Error::Downscale).
pub fn prepare_for_judge(bytes: &[u8], detail: ImageDetail) -> crate::Result<JudgeImage> {
    prepare(bytes, detail).map_err(crate::Error::Downscale)
}

fn prepare(bytes: &[u8], detail: ImageDetail) -> Result<JudgeImage, DownscaleError> {
    let format = sniff(bytes)?;
    let (format_name, mime) = match format {
        ImageFormat::Png => ("PNG", "image/png"),
        _ => ("JPEG", "image/jpeg"),
    };
    let decode_err = |source| DownscaleError::Decode {
        format: format_name,
        source,
    };

    let (width, height) = ImageReader::with_format(Cursor::new(bytes), format)
        .into_dimensions()
        .map_err(decode_err)?;
    let pixels = u64::from(width) * u64::from(height);
    if pixels > MAX_PIXELS {
        return Err(DownscaleError::TooLarge {
            width,
            height,
            max_pixels: MAX_PIXELS,
        });
    }

    let original = |bytes: &[u8]| JudgeImage {
        bytes: bytes.to_vec(),
        mime,
        width,
        height,
        original_bytes: bytes.len(),
    };
    let (target_w, target_h) = target_size(width, height, detail);
    if (target_w, target_h) == (width, height) {
        return Ok(original(bytes));
    }

    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    let mut limits = Limits::default();
    limits.max_image_width = Some(width);
    limits.max_image_height = Some(height);
    // Room for the pixels the header promised at 16-bit RGBA, the widest a decoder produces.
    limits.max_alloc = limits.max_alloc.map(|default| default.max(pixels * 8));
    reader.limits(limits);
    let mut decoder = reader.into_decoder().map_err(decode_err)?;
    // A camera JPEG may be stored sideways with an Exif orientation; the re-encoding carries no
    // Exif, so the rotation is applied to the pixels (and swaps the target for 90 degrees).
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let mut decoded = DynamicImage::from_decoder(decoder).map_err(decode_err)?;
    decoded.apply_orientation(orientation);
    let (target_w, target_h) = target_size(decoded.width(), decoded.height(), detail);

    let resized = shrink(&flatten_onto_white(decoded), target_w, target_h);
    let (encoded, encoded_mime) = encode_smallest(&resized)?;
    if encoded.len() >= bytes.len() {
        return Ok(original(bytes));
    }
    Ok(JudgeImage {
        bytes: encoded,
        mime: encoded_mime,
        width: target_w,
        height: target_h,
        original_bytes: bytes.len(),
    })
}

/// The format of `bytes` if it is PNG or JPEG; a precise error otherwise.
fn sniff(bytes: &[u8]) -> Result<ImageFormat, DownscaleError> {
    match image::guess_format(bytes) {
        Ok(format @ (ImageFormat::Png | ImageFormat::Jpeg)) => Ok(format),
        Ok(other) => Err(DownscaleError::UnsupportedFormat {
            format: format!("{other:?}"),
        }),
        Err(_) => Err(DownscaleError::NotAnImage {
            start: describe_start(bytes),
        }),
    }
}

/// A short description of what `bytes` start with, for an error message.
fn describe_start(bytes: &[u8]) -> String {
    const SHOWN: usize = 24;
    if bytes.is_empty() {
        return "no bytes".to_owned();
    }
    let head = &bytes[..bytes.len().min(SHOWN)];
    let more = if bytes.len() > SHOWN { "..." } else { "" };
    let total = bytes.len();
    let texty = head
        .iter()
        .all(|&b| b.is_ascii_graphic() || b.is_ascii_whitespace());
    if texty {
        let text: String = head.iter().map(|&b| char::from(b)).collect();
        format!("{total} bytes of text starting {text:?}{more}")
    } else {
        let mut hex = String::new();
        for b in head.iter().take(8) {
            let _ = write!(hex, " {b:02x}");
        }
        let more = if bytes.len() > 8 { " ..." } else { "" };
        format!("{total} bytes starting{hex}{more}")
    }
}

/// The image as 8-bit RGB, any transparency composited onto white (JPEG has no alpha, and the
/// judge should see the same pixels whichever encoding wins). Flattening before resizing also
/// keeps the colour of transparent pixels from bleeding into their neighbours.
fn flatten_onto_white(image: DynamicImage) -> RgbImage {
    if !image.color().has_alpha() {
        return image.into_rgb8();
    }
    let rgba = image.into_rgba8();
    let (w, h) = rgba.dimensions();
    let mut rgb = Vec::with_capacity(rgba.as_raw().len() / 4 * 3);
    for px in rgba.as_raw().chunks_exact(4) {
        let alpha = u32::from(px[3]);
        for &c in &px[..3] {
            let blended = (u32::from(c) * alpha + 255 * (255 - alpha) + 127) / 255;
            rgb.push(u8::try_from(blended).unwrap_or(u8::MAX));
        }
    }
    RgbImage::from_raw(w, h, rgb).unwrap_or_else(|| RgbImage::new(w, h))
}

/// Resizes with Catmull-Rom (bicubic: as sharp as Lanczos3 to a judge's eye, a third faster
/// here). Its cost grows with the ratio (the filter widens with it), so a very large image is
/// first box-averaged to twice the target, which loses nothing the cubic keeps.
fn shrink(image: &RgbImage, width: u32, height: u32) -> RgbImage {
    let (w, h) = image.dimensions();
    if w > width.saturating_mul(4) && h > height.saturating_mul(4) {
        let pre = imageops::thumbnail(image, width * 2, height * 2);
        imageops::resize(&pre, width, height, FilterType::CatmullRom)
    } else {
        imageops::resize(image, width, height, FilterType::CatmullRom)
    }
}

/// Encodes as JPEG and as PNG and keeps the smaller: JPEG for photographs, PNG for flat
/// graphics where it wins.
fn encode_smallest(image: &RgbImage) -> Result<(Vec<u8>, &'static str), DownscaleError> {
    let encode_err = |source| DownscaleError::Encode { source };
    let (w, h) = image.dimensions();

    let mut jpeg = Vec::new();
    JpegEncoder::new_with_quality(&mut jpeg, JPEG_QUALITY)
        .write_image(image.as_raw(), w, h, ExtendedColorType::Rgb8)
        .map_err(encode_err)?;

    let mut png = Vec::new();
    PngEncoder::new_with_quality(&mut png, CompressionType::Fast, PngFilter::Adaptive)
        .write_image(image.as_raw(), w, h, ExtendedColorType::Rgb8)
        .map_err(encode_err)?;

    Ok(if png.len() < jpeg.len() {
        (png, "image/png")
    } else {
        (jpeg, "image/jpeg")
    })
}

/// The length of the `data:` URL that carries `bytes_len` bytes of `mime`
/// (`data:{mime};base64,` and the padded base64), which is what an image adds to a judge
/// request line: JSON does not escape base64.
pub fn data_url_len(bytes_len: usize, mime: &str) -> usize {
    "data:".len() + mime.len() + ";base64,".len() + bytes_len.div_ceil(3) * 4
}

/// A deterministic photo-like PNG for benches and tests: a sky-to-ground gradient, soft
/// coloured blobs and a gentle wave texture under mild sensor-like noise, so that it compresses
/// like a real render (a 1024x1024 one is about 1.8 MB), unlike a flat test pattern. The same
/// seed gives the same bytes; a zero width or height gives no bytes.
pub fn synthetic_photo(width: u32, height: u32, seed: u64) -> Vec<u8> {
    if width == 0 || height == 0 {
        return Vec::new();
    }
    let mut rng = SplitMix64(seed);
    let colour = |rng: &mut SplitMix64| -> [f32; 3] {
        let v = rng.next();
        [0, 16, 32].map(|shift| f32::from((v >> shift) as u8))
    };
    let top = colour(&mut rng);
    let bottom = colour(&mut rng);
    let horizon = 0.35 + rng.unit() * 0.3;
    let (wf, hf) = (width as f32, height as f32);
    let blobs: Vec<([f32; 2], f32, [f32; 3])> = (0..6)
        .map(|_| {
            let centre = [rng.unit() * wf, rng.unit() * hf];
            let radius = (0.08 + rng.unit() * 0.25) * wf.max(hf);
            (centre, radius, colour(&mut rng))
        })
        .collect();
    let (fx, fy) = (0.01 + rng.unit() * 0.04, 0.01 + rng.unit() * 0.04);
    let phase = rng.unit() * std::f32::consts::TAU;
    let noise_key = rng.next();

    let mut raw = Vec::with_capacity(width as usize * height as usize * 3);
    for y in 0..height {
        let yf = y as f32;
        let t = yf / hf;
        // A soft horizon between the two colours.
        let mix = 1.0 / (1.0 + (-(t - horizon) * 12.0).exp());
        let wave_y = (yf * fy).sin();
        for x in 0..width {
            let xf = x as f32;
            let mut px = [0.0f32; 3];
            for (c, p) in px.iter_mut().enumerate() {
                *p = top[c] + (bottom[c] - top[c]) * mix;
            }
            for &([cx, cy], radius, tint) in &blobs {
                let d2 = ((xf - cx) * (xf - cx) + (yf - cy) * (yf - cy)) / (radius * radius);
                if d2 < 9.0 {
                    let weight = 0.7 * (-d2).exp();
                    for (p, t) in px.iter_mut().zip(tint) {
                        *p += (t - *p) * weight;
                    }
                }
            }
            let wave = 10.0 * (xf * fx + phase).sin() * wave_y;
            // Luminance noise shared by the channels plus a little chroma noise, as a sensor.
            let n = splitmix(noise_key ^ (u64::from(y) << 32 | u64::from(x)));
            let luma = f32::from((n & 0xff) as u8) / 255.0 * 14.0 - 7.0;
            for (c, p) in px.iter_mut().enumerate() {
                let chroma = f32::from((n >> (8 + 8 * c) & 0xff) as u8) / 255.0 * 4.0 - 2.0;
                raw.push((*p + wave + luma + chroma).round().clamp(0.0, 255.0) as u8);
            }
        }
    }
    let mut png = Vec::new();
    // Encoding an in-memory RGB buffer of the declared size cannot fail.
    let _ = PngEncoder::new_with_quality(&mut png, CompressionType::Default, PngFilter::Adaptive)
        .write_image(&raw, width, height, ExtendedColorType::Rgb8);
    png
}

/// SplitMix64: a tiny, well-mixed deterministic generator (Steele, Lea and Flood 2014).
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        splitmix(self.0)
    }

    /// A float in [0, 1).
    fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32
    }
}

/// The SplitMix64 output function: a good 64-bit hash of `z`.
fn splitmix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests;
