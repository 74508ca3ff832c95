//! Input files: written and synced before an intent points at them, validated line by line,
//! hashed, and split into shards.

use super::*;

/// Writes `bytes` to `path` (creating `dir`) and syncs it: an intent that points at the file is
/// stored right after.
pub(super) fn write_bytes_blocking(dir: &Path, path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let mut file = std::fs::File::create(path).map_err(|e| Error::io(path, e))?;
    file.write_all(bytes).map_err(|e| Error::io(path, e))?;
    file.sync_all().map_err(|e| Error::io(path, e))
}

/// Writes `lines` to `path` (creating `dir`), one per line, and syncs it.
pub(super) fn write_lines_blocking<'a>(
    dir: &Path,
    path: &Path,
    lines: impl Iterator<Item = &'a str>,
) -> Result<()> {
    use std::io::Write;
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let file = std::fs::File::create(path).map_err(|e| Error::io(path, e))?;
    let mut w = std::io::BufWriter::new(file);
    for line in lines {
        w.write_all(line.as_bytes())
            .and_then(|()| w.write_all(b"\n"))
            .map_err(|e| Error::io(path, e))?;
    }
    let file = w
        .into_inner()
        .map_err(|e| Error::io(path, e.into_error()))?;
    file.sync_all().map_err(|e| Error::io(path, e))
}

/// A shard's JSONL as it is sent, validated in memory: every problem, or the bytes.
pub(super) fn checked_jsonl(shard: &Shard) -> Result<Vec<u8>> {
    let mut jsonl = Vec::with_capacity(usize::try_from(shard.byte_size()).unwrap_or(0));
    for line in shard.lines() {
        jsonl.extend_from_slice(line.as_bytes());
        jsonl.push(b'\n');
    }
    let mut validator = Validator::new(ValidationOptions {
        expected_endpoint: Some(shard.endpoint()),
        ..ValidationOptions::default()
    });
    let mut problems = Problems::default();
    for line in jsonl.split_inclusive(|b| *b == b'\n') {
        validator.push_line(line, |p| problems.push(p));
    }
    let summary = validator.finish(|p| problems.push(p));
    if problems.total > 0 || !summary.is_valid() {
        return Err(Error::InvalidInput(problems.kept));
    }
    Ok(jsonl)
}

/// Problems found in an input, the first [`MAX_PROBLEMS`] kept.
#[derive(Default)]
pub(super) struct Problems {
    pub(super) kept: Vec<Problem>,
    pub(super) total: usize,
}

impl Problems {
    pub(super) fn push(&mut self, p: Problem) {
        self.total += 1;
        if self.kept.len() < MAX_PROBLEMS {
            self.kept.push(p);
        }
    }
}

/// Validates a JSONL file and collects its custom ids, endpoint and model.
pub(super) async fn scan_input_file(path: &Path) -> Result<(ShardManifest, u64)> {
    let path = path.to_owned();
    let scanned = tokio::task::spawn_blocking(move || {
        scan_input_blocking(&path, ValidationOptions::default(), false)
    })
    .await
    .map_err(Error::task("validator"))??;
    Ok((scanned.manifest, scanned.bytes))
}

/// One record to be: its id, what it holds and its input file on disk.
pub(super) struct PlannedShard {
    pub(super) id: String,
    pub(super) manifest: ShardManifest,
    pub(super) path: PathBuf,
    pub(super) bytes: u64,
}

/// What a scan of an input file found.
pub(super) struct Scanned {
    pub(super) manifest: ShardManifest,
    pub(super) bytes: u64,
    pub(super) lines: u64,
    /// SHA-256 of the bytes, lowercase hex, when asked for.
    pub(super) sha256: Option<String>,
}

/// Reads a JSONL file once: validates every line, collects the custom ids and, when `hash`,
/// the SHA-256 of its bytes. Invalid input is every problem found (up to 1000). No line over
/// `options.max_line_bytes` is held: it is a `line_too_large` problem, read past (and hashed)
/// without being kept, so memory stays bounded whatever the file holds.
pub(super) fn scan_input_blocking(
    path: &Path,
    options: ValidationOptions,
    hash: bool,
) -> Result<Scanned> {
    use sha2::Digest as _;
    #[derive(serde::Deserialize)]
    struct Id {
        custom_id: Option<String>,
    }
    /// Hashes every byte read through it, lines too long to be held included.
    struct Hashing<R> {
        inner: R,
        hasher: Option<sha2::Sha256>,
    }
    impl<R: std::io::Read> std::io::Read for Hashing<R> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = self.inner.read(buf)?;
            if let Some(h) = &mut self.hasher {
                h.update(&buf[..n]);
            }
            Ok(n)
        }
    }
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut hashing = Hashing {
        inner: file,
        hasher: hash.then(sha2::Sha256::new),
    };
    let reader = BufReader::with_capacity(1 << 20, &mut hashing);
    let max_line = options.max_line_bytes;
    let mut validator = Validator::new(options);
    let mut problems = Problems::default();
    let mut ids = Vec::new();
    batch_format::for_each_jsonl_line(reader, max_line, |line| {
        validator.push_capped(line, |p| problems.push(p));
        if let JsonlLine::Whole(line) = line
            && let Ok(Id {
                custom_id: Some(id),
            }) = serde_json::from_slice::<Id>(line)
        {
            ids.push(id);
        }
    })
    .map_err(|e| Error::io(path, e))?;
    let hasher = hashing.hasher;
    let summary = validator.finish(|p| problems.push(p));
    if problems.total > 0 || !summary.is_valid() {
        return Err(Error::InvalidInput(problems.kept));
    }
    let endpoint = summary
        .endpoint
        .ok_or_else(|| Error::InvalidInput(Vec::new()))?;
    Ok(Scanned {
        manifest: ShardManifest {
            shard_name: String::new(),
            index: 0,
            endpoint,
            model: summary.model,
            custom_ids: ids,
        },
        bytes: summary.bytes,
        lines: summary.lines,
        sha256: hasher.map(|h| {
            h.finalize()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        }),
    })
}

/// Splits a validated input into shards at `limits` with batch-format's builder (which groups
/// lines by endpoint and model) and writes each to `data_dir/<new record id>/input.jsonl`.
/// Returns the shards and every normalisation the builder made, as `line N (custom id): change`.
pub(super) fn split_blocking(
    path: &Path,
    name: &str,
    limits: ShardLimits,
    data_dir: &Path,
) -> Result<(Vec<PlannedShard>, Vec<String>)> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut builder = batch_format::BatchRequestBuilder::with_limits(limits);
    let mut changes = Vec::new();
    let mut n = 0u64;
    for line in BufReader::with_capacity(1 << 20, file).split(b'\n') {
        let line = line.map_err(|e| Error::io(path, e))?;
        n += 1;
        if line.trim_ascii().is_empty() {
            continue;
        }
        let bad = |message: String| {
            Error::InvalidInput(vec![Problem {
                code: batch_format::ProblemCode::InvalidJsonLine,
                message,
                param: None,
                line: Some(n),
            }])
        };
        let request: batch_format::BatchRequestLine =
            serde_json::from_slice(&line).map_err(|e| bad(e.to_string()))?;
        let custom_id = request.custom_id.clone();
        for change in builder.add_line(request).map_err(|e| bad(e.to_string()))? {
            changes.push(format!("line {n} ({custom_id}): {change}"));
        }
    }
    let mut planned = Vec::new();
    for shard in builder.build_batch(name)?.into_shards() {
        let id = new_id("bb_");
        let dir = data_dir.join(&id);
        let file = dir.join("input.jsonl");
        write_lines_blocking(&dir, &file, shard.lines())?;
        planned.push(PlannedShard {
            id,
            manifest: shard.manifest().clone(),
            path: file,
            bytes: shard.byte_size(),
        });
    }
    Ok((planned, changes))
}
