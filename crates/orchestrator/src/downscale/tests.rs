//! Downscaling for the judge: target sizes, re-encoding, and the images refused.

use super::*;

#[track_caller]
fn check(width: u32, height: u32, detail: ImageDetail, expect: (u32, u32)) {
    assert_eq!(
        target_size(width, height, detail),
        expect,
        "{width}x{height} at {}",
        detail.as_str()
    );
}

#[test]
fn target_sizes() {
    use ImageDetail::{Auto, High, Low};
    // The vision guide's examples.
    check(1024, 1024, High, (768, 768));
    check(2048, 4096, High, (768, 1536));
    check(4096, 8192, Low, (256, 512));
    // High: fit within 2048 first, then the shortest side to 768.
    check(4096, 8192, High, (768, 1536));
    check(1920, 1080, High, (1365, 768));
    check(1536, 1024, High, (1152, 768));
    check(1024, 1792, High, (768, 1344));
    check(1000, 800, High, (960, 768));
    check(8000, 1000, High, (2048, 256));
    check(3000, 800, High, (2048, 546));
    check(20000, 1, High, (2048, 1));
    // Never upscaled.
    check(800, 700, High, (800, 700));
    check(512, 512, High, (512, 512));
    check(300, 3000, High, (205, 2048));
    check(100, 50, Low, (100, 50));
    check(512, 512, Low, (512, 512));
    check(1, 1, Low, (1, 1));
    // Low fits within 512x512, keeping the aspect ratio.
    check(1024, 1024, Low, (512, 512));
    check(1024, 1536, Low, (341, 512));
    check(1792, 1024, Low, (512, 293));
    check(1792, 1024, High, (1344, 768));
    check(1536, 1024, Low, (512, 341));
    check(1920, 1080, Low, (512, 288));
    check(8000, 1000, Low, (512, 64));
    check(2048, 4096, Low, (256, 512));
    check(513, 100, Low, (512, 100));
    // Auto is shrunk as low.
    check(1024, 1024, Auto, (512, 512));
    check(400, 300, Auto, (400, 300));
}

/// An 8-bit RGB or RGBA PNG of `pixels` with a `batchbeam:prompt` tEXt chunk, as the
/// simulator writes them.
fn png_with_text(width: u32, height: u32, pixels: &[u8], alpha: bool) -> Vec<u8> {
    let mut png = Vec::new();
    let color = if alpha {
        ExtendedColorType::Rgba8
    } else {
        ExtendedColorType::Rgb8
    };
    PngEncoder::new(&mut png)
        .write_image(pixels, width, height, color)
        .unwrap();
    // The signature (8) and IHDR (4 + 4 + 13 + 4) come first; the text goes right after.
    let mut text = Vec::new();
    chunk(
        &mut text,
        b"tEXt",
        b"batchbeam:prompt\0a lighthouse in a storm",
    );
    png.splice(33..33, text);
    png
}

#[test]
fn small_images_pass_through_byte_identical() {
    let pixels: Vec<u8> = (0..64 * 64 * 3).map(|i| (i * 7 % 251) as u8).collect();
    let png = png_with_text(64, 64, &pixels, false);
    assert!(image::load_from_memory(&png).is_ok(), "a valid PNG");
    for detail in [ImageDetail::Low, ImageDetail::High, ImageDetail::Auto] {
        let out = prepare_for_judge(&png, detail).unwrap();
        assert_eq!(out.bytes, png);
        assert_eq!(out.mime, "image/png");
        assert_eq!((out.width, out.height), (64, 64));
        assert_eq!(out.original_bytes, png.len());
    }
}

#[test]
fn a_photo_shrinks_to_the_detail_resolution() {
    let photo = synthetic_photo(1024, 1024, 7);
    assert!(
        (1_000_000..3_500_000).contains(&photo.len()),
        "a 1024x1024 synthetic photo is {} bytes",
        photo.len()
    );
    assert_eq!(photo, synthetic_photo(1024, 1024, 7), "deterministic");
    assert_ne!(photo, synthetic_photo(1024, 1024, 8));
    assert!(synthetic_photo(0, 16, 7).is_empty());

    let low = prepare_for_judge(&photo, ImageDetail::Low).unwrap();
    assert_eq!((low.width, low.height), (512, 512));
    assert_eq!(low.mime, "image/jpeg");
    assert_eq!(low.original_bytes, photo.len());
    assert!(
        low.bytes.len() * 5 < photo.len(),
        "low: {} of {} bytes",
        low.bytes.len(),
        photo.len()
    );
    let decoded = image::load_from_memory(&low.bytes).unwrap();
    assert_eq!((decoded.width(), decoded.height()), (512, 512));

    let high = prepare_for_judge(&photo, ImageDetail::High).unwrap();
    assert_eq!((high.width, high.height), (768, 768));
    assert_eq!(high.mime, "image/jpeg");
    assert!(high.bytes.len() * 3 < photo.len());
    assert!(high.bytes.len() > low.bytes.len());
    let decoded = image::load_from_memory(&high.bytes).unwrap();
    assert_eq!((decoded.width(), decoded.height()), (768, 768));
}

#[test]
fn a_large_jpeg_is_shrunk_and_a_wide_one_keeps_its_aspect() {
    let photo = image::load_from_memory(&synthetic_photo(1536, 1024, 3)).unwrap();
    let mut jpeg = Vec::new();
    JpegEncoder::new_with_quality(&mut jpeg, 95)
        .encode_image(&photo)
        .unwrap();
    let out = prepare_for_judge(&jpeg, ImageDetail::Auto).unwrap();
    assert_eq!((out.width, out.height), (512, 341));
    assert_eq!(out.mime, "image/jpeg");
    assert!(out.bytes.len() < jpeg.len());
}

#[test]
fn a_sideways_camera_jpeg_is_turned_upright() {
    // Stored 1024 wide and 512 high, with Exif orientation 6: shown rotated 90 degrees,
    // 512 wide and 1024 high, the left half red and the right half blue once turned.
    let pixels: Vec<u8> = (0..1024 * 512)
        .flat_map(|i| {
            if i / 1024 < 256 {
                [30, 30, 220]
            } else {
                [220, 30, 30]
            }
        })
        .collect();
    let exif = b"MM\0\x2a\0\0\0\x08\0\x01\x01\x12\0\x03\0\0\0\x01\0\x06\0\0\0\0\0\0".to_vec();
    let mut jpeg = Vec::new();
    let mut encoder = JpegEncoder::new_with_quality(&mut jpeg, 90);
    encoder.set_exif_metadata(exif).unwrap();
    encoder
        .write_image(&pixels, 1024, 512, ExtendedColorType::Rgb8)
        .unwrap();

    let out = prepare_for_judge(&jpeg, ImageDetail::Low).unwrap();
    assert_eq!((out.width, out.height), (256, 512));
    let img = image::load_from_memory(&out.bytes).unwrap().to_rgb8();
    assert_eq!(img.dimensions(), (256, 512));
    let (left, right) = (img.get_pixel(40, 256).0, img.get_pixel(216, 256).0);
    assert!(left[0] > 180 && left[2] < 80, "left {left:?}");
    assert!(right[2] > 180 && right[0] < 80, "right {right:?}");
}

#[test]
fn flat_graphics_become_png_and_a_smaller_original_is_kept() {
    // A flat two-colour picture: PNG beats JPEG once shrunk.
    let pixels: Vec<u8> = (0..1024 * 1024)
        .flat_map(|i| {
            if (i % 1024) < 512 {
                [200, 30, 30]
            } else {
                [30, 30, 200]
            }
        })
        .collect();
    let png = png_with_text(1024, 1024, &pixels, false);
    let out = prepare_for_judge(&png, ImageDetail::Low).unwrap();
    assert_eq!(
        out.mime,
        "image/png",
        "{} of {} bytes",
        out.bytes.len(),
        png.len()
    );
    assert_eq!((out.width, out.height), (512, 512));
    assert!(out.bytes.len() < png.len());

    // A 513x513 JPEG at quality 1 is far smaller than any 512x512 re-encoding at quality 85:
    // it is kept as it is.
    let photo = image::load_from_memory(&synthetic_photo(513, 513, 5)).unwrap();
    let mut crushed = Vec::new();
    JpegEncoder::new_with_quality(&mut crushed, 1)
        .encode_image(&photo)
        .unwrap();
    let out = prepare_for_judge(&crushed, ImageDetail::Low).unwrap();
    assert!(
        out.bytes == crushed,
        "{} bytes became {}",
        crushed.len(),
        out.bytes.len()
    );
    assert_eq!(out.mime, "image/jpeg");
    assert_eq!((out.width, out.height), (513, 513));
}

#[test]
fn alpha_is_flattened_onto_white() {
    // Left half opaque red, right half fully transparent (black underneath).
    let pixels: Vec<u8> = (0..1024 * 1024)
        .flat_map(|i| {
            if (i % 1024) < 512 {
                [255, 0, 0, 255]
            } else {
                [0, 0, 0, 0]
            }
        })
        .collect();
    let png = png_with_text(1024, 1024, &pixels, true);
    let out = prepare_for_judge(&png, ImageDetail::Low).unwrap();
    assert_eq!((out.width, out.height), (512, 512));
    let img = image::load_from_memory(&out.bytes).unwrap().to_rgb8();
    let red = img.get_pixel(100, 256).0;
    let white = img.get_pixel(400, 256).0;
    assert!(red[0] > 240 && red[1] < 20 && red[2] < 20, "{red:?}");
    assert!(white.iter().all(|&c| c > 240), "{white:?}");
}

#[test]
fn non_images_are_named() {
    let err = prepare(br#"{"error": {"message": "nope"}}"#, ImageDetail::Low).unwrap_err();
    assert!(matches!(err, DownscaleError::NotAnImage { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        r#"not an image: 30 bytes of text starting "{\"error\": {\"message\": \"n"..."#
    );

    let err = prepare(&[0, 1, 2, 0xfe], ImageDetail::Low).unwrap_err();
    assert_eq!(
        err.to_string(),
        "not an image: 4 bytes starting 00 01 02 fe"
    );

    let err = prepare(&[], ImageDetail::Low).unwrap_err();
    assert_eq!(err.to_string(), "not an image: no bytes");

    let err = prepare(b"GIF89a\x01\x00\x01\x00", ImageDetail::Low).unwrap_err();
    assert_eq!(
        err.to_string(),
        "unsupported image format Gif: only PNG and JPEG are read"
    );

    // A PNG signature with nothing behind it.
    let err = prepare(b"\x89PNG\r\n\x1a\n", ImageDetail::Low).unwrap_err();
    assert!(
        matches!(err, DownscaleError::Decode { format: "PNG", .. }),
        "{err:?}"
    );
}

#[test]
fn a_truncated_large_png_fails_to_decode() {
    let photo = synthetic_photo(1024, 1024, 1);
    let err = prepare(&photo[..photo.len() / 2], ImageDetail::Low).unwrap_err();
    assert!(
        matches!(err, DownscaleError::Decode { format: "PNG", .. }),
        "{err:?}"
    );
}

/// A PNG chunk: length, type, data, CRC.
fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&u32::try_from(data.len()).unwrap().to_be_bytes());
    let start = out.len();
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let crc = crc32(&out[start..]);
    out.extend_from_slice(&crc.to_be_bytes());
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[test]
fn a_huge_declared_size_is_refused_without_decoding() {
    // A 40000x40000 header whose image data is a few garbage bytes: decoding it would fail
    // (or try to allocate 4.8 GB); the header alone must refuse it.
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&40_000u32.to_be_bytes());
    ihdr.extend_from_slice(&40_000u32.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    chunk(&mut png, b"IHDR", &ihdr);
    chunk(&mut png, b"IDAT", &[0x78, 0x9c, 0x01, 0x02]);
    chunk(&mut png, b"IEND", &[]);
    let err = prepare(&png, ImageDetail::High).unwrap_err();
    assert!(
        matches!(
            err,
            DownscaleError::TooLarge {
                width: 40_000,
                height: 40_000,
                max_pixels: MAX_PIXELS
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "image too large: 40000x40000 is over the 100000000 pixel limit"
    );
}

#[test]
fn data_url_lengths() {
    let check = |len: usize, mime: &str, expect: usize| {
        assert_eq!(data_url_len(len, mime), expect, "{len} bytes of {mime}");
    };
    // "data:image/png;base64," is 22 characters.
    check(0, "image/png", 22);
    check(1, "image/png", 26);
    check(3, "image/png", 26);
    check(4, "image/png", 30);
    check(3_000_000, "image/jpeg", 23 + 4_000_000);
}
