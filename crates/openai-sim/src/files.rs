//! The file table: metadata of every stored file; the bytes live on disk in the data directory.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

/// Seconds batch files live: 30 days.
pub(crate) const THIRTY_DAYS: i64 = 2_592_000;

/// Purposes a client may upload with, in the order the error message lists them.
pub(crate) const UPLOAD_PURPOSES: [&str; 6] = [
    "fine-tune",
    "assistants",
    "batch",
    "user_data",
    "vision",
    "evals",
];

/// Purposes whose content may be downloaded.
pub(crate) const DOWNLOADABLE: [&str; 2] = ["batch", "batch_output"];

#[derive(Debug, Clone)]
pub(crate) struct FileMeta {
    pub(crate) id: String,
    pub(crate) purpose: String,
    pub(crate) filename: String,
    pub(crate) bytes: u64,
    pub(crate) created_at: i64,
    pub(crate) expires_at: Option<i64>,
    seq: u64,
}

/// The file object of the API, in the real key order.
#[derive(Debug, Serialize)]
pub(crate) struct FileObject<'a> {
    pub(crate) object: &'static str,
    pub(crate) id: &'a str,
    pub(crate) purpose: &'a str,
    pub(crate) filename: &'a str,
    pub(crate) bytes: u64,
    pub(crate) created_at: i64,
    pub(crate) expires_at: Option<i64>,
    pub(crate) status: &'static str,
    pub(crate) status_details: Option<&'static str>,
}

impl FileMeta {
    pub(crate) fn object(&self) -> FileObject<'_> {
        FileObject {
            object: "file",
            id: &self.id,
            purpose: &self.purpose,
            filename: &self.filename,
            bytes: self.bytes,
            created_at: self.created_at,
            expires_at: self.expires_at,
            status: "processed",
            status_details: None,
        }
    }
}

/// All files, by id.
#[derive(Debug)]
pub(crate) struct FileTable {
    dir: PathBuf,
    files: HashMap<String, FileMeta>,
    seq: u64,
}

impl FileTable {
    pub(crate) fn new(dir: PathBuf) -> FileTable {
        FileTable {
            dir,
            files: HashMap::new(),
            seq: 0,
        }
    }

    /// Where the bytes of file `id` are stored.
    pub(crate) fn path_of(&self, id: &str) -> PathBuf {
        self.dir.join(id)
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// Registers a file whose bytes are already at `path_of(id)`.
    pub(crate) fn insert(
        &mut self,
        id: String,
        purpose: &str,
        filename: &str,
        bytes: u64,
        created_at: i64,
        expires_at: Option<i64>,
    ) -> FileMeta {
        self.seq += 1;
        let meta = FileMeta {
            id: id.clone(),
            purpose: purpose.to_owned(),
            filename: filename.to_owned(),
            bytes,
            created_at,
            expires_at,
            seq: self.seq,
        };
        self.files.insert(id, meta.clone());
        meta
    }

    /// The file, unless it does not exist or has expired by `now`.
    pub(crate) fn get(&self, id: &str, now: i64) -> Option<&FileMeta> {
        self.files
            .get(id)
            .filter(|f| f.expires_at.is_none_or(|e| e > now))
    }

    /// Forgets a file and deletes its bytes.
    pub(crate) fn remove(&mut self, id: &str) -> Option<FileMeta> {
        let meta = self.files.remove(id)?;
        let _ = std::fs::remove_file(self.path_of(id));
        Some(meta)
    }

    /// Deletes every file that has expired by `now`.
    pub(crate) fn purge_expired(&mut self, now: i64) {
        let gone: Vec<String> = self
            .files
            .values()
            .filter(|f| f.expires_at.is_some_and(|e| e <= now))
            .map(|f| f.id.clone())
            .collect();
        for id in gone {
            self.remove(&id);
        }
    }

    /// One page of files, newest first unless `ascending`; `after` is the id of the last item
    /// of the previous page. Returns the page and whether more follow.
    pub(crate) fn list(
        &self,
        purpose: Option<&str>,
        ascending: bool,
        after: Option<&str>,
        limit: usize,
        now: i64,
    ) -> (Vec<FileMeta>, bool) {
        let mut all: Vec<&FileMeta> = self
            .files
            .values()
            .filter(|f| f.expires_at.is_none_or(|e| e > now))
            .filter(|f| purpose.is_none_or(|p| f.purpose == p))
            .collect();
        all.sort_by_key(|f| (f.created_at, f.seq));
        if !ascending {
            all.reverse();
        }
        let start = match after {
            Some(a) => match all.iter().position(|f| f.id == a) {
                Some(i) => i + 1,
                None => all.len(),
            },
            None => 0,
        };
        let rest = &all[start..];
        let page: Vec<FileMeta> = rest.iter().take(limit).map(|f| (*f).clone()).collect();
        (page, rest.len() > limit)
    }
}
