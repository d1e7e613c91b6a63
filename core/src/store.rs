//! Object storage: `s3://`, `gs://`, `az://`/`abfs://` and (read-only) `https://` URLs as inputs
//! and outputs, through arrow-rs's own `object_store` crate.
//!
//! ```text
//! if store::is_url(arg) { let objects = store::discover(arg)?; }   // a prefix lists like a folder
//! let read = store::StreamRead::open(&url)?;         // a streaming GET as a blocking `Read`
//! let upload = store::Upload::start(&url)?;          // a multipart upload as a `Write`
//! upload.commit()?;                                  // the object appears only now
//! ```
//!
//! Stages stay synchronous: the async runtime (a small tokio runtime, two worker threads) lives
//! here, and every call blocks on it. Credentials and endpoints come from each cloud's standard
//! environment variables (`AWS_*`, `GOOGLE_*`, `AZURE_*`: the builders' `from_env`).
//!
//! Errors name the URL and the cause in one line: no credentials, access denied, no such
//! bucket, no such object, a network failure after [`MAX_RETRIES`] retries.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt, TryStreamExt};
use object_store::path::Path as ObjPath;
use object_store::{MultipartUpload, ObjectStore, ObjectStoreExt, ObjectStoreScheme, PutPayload, RetryConfig};
use parquet::arrow::arrow_reader::ArrowReaderOptions;
use parquet::arrow::async_reader::AsyncFileReader;
use parquet::errors::ParquetError;
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};
use url::Url;

use crate::error::{Error, Result};

/// Retries of one request (with exponential backoff from 100 ms) before a network failure is
/// reported; the retries of one request give up after two minutes in all.
pub const MAX_RETRIES: usize = 5;

/// Size of one multipart-upload part: S3's minimum is 5 MiB; bigger parts mean fewer requests,
/// and at most [`UPLOADS_IN_FLIGHT`] of them are held in memory at a time.
pub const PART_SIZE: usize = 16 << 20;

/// Parts uploaded concurrently by one output: its memory bound is this many parts.
pub const UPLOADS_IN_FLIGHT: usize = 2;

/// Bytes and requests read from stores, for `PROBE_STORE_STATS=1`.
static BYTES_READ: AtomicU64 = AtomicU64::new(0);
static REQUESTS: AtomicU64 = AtomicU64::new(0);

/// URL schemes taken as object storage (`file://` is not: give a local path).
const SCHEMES: &[&str] = &["s3", "s3a", "gs", "az", "adl", "azure", "abfs", "abfss", "http", "https"];

/// Whether an input or output argument is a URL rather than a local path.
pub fn is_url(arg: &str) -> bool {
    arg.split_once("://").is_some_and(|(scheme, _)| SCHEMES.contains(&scheme.to_ascii_lowercase().as_str()))
}

/// Whether a path argument (clap gives outputs as paths) is a URL.
pub fn path_is_url(path: &std::path::Path) -> bool {
    path.to_str().is_some_and(is_url)
}

/// The runtime every store call blocks on: created on first use, two workers so a streaming GET
/// or an upload keeps moving while the stage decodes.
fn runtime() -> Result<&'static tokio::runtime::Runtime> {
    static RT: OnceLock<std::result::Result<tokio::runtime::Runtime, String>> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("probe-store")
            .enable_all()
            .build()
            .map_err(|e| e.to_string())
    })
    .as_ref()
    .map_err(|e| Error::data(format!("cannot start the object-storage runtime ({e})")))
}

/// Run a future to completion on the store runtime.
fn block_on<F: std::future::Future>(f: F) -> Result<F::Output> {
    Ok(runtime()?.block_on(f))
}

/// One parsed URL: the store it lives in and the path inside.
#[derive(Clone)]
pub struct Location {
    /// The URL as given (messages name it).
    pub url: String,
    store: Arc<dyn ObjectStore>,
    path: ObjPath,
    /// `scheme://authority` of the store, for joining names back into URLs.
    base: String,
    scheme: ObjectStoreScheme,
}

impl std::fmt::Debug for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.url)
    }
}

impl Location {
    /// Parse a URL and build (or reuse) its store from the environment.
    pub fn parse(url: &str) -> Result<Location> {
        let parsed = Url::parse(url).map_err(|e| Error::config(format!("{url}: not a valid URL ({e})")))?;
        let (scheme, path) = ObjectStoreScheme::parse(&parsed)
            .map_err(|e| Error::config(format!("{url}: not an object-storage URL ({e})")))?;
        let base = parsed[..url::Position::BeforePath].to_string();
        let store = store_for(url, &parsed, &scheme, &base)?;
        Ok(Location { url: url.to_string(), store, path, base, scheme })
    }

    /// The URL of `name` under this location taken as a folder.
    pub fn join(&self, name: &str) -> String {
        format!("{}/{}", self.url.trim_end_matches('/'), name)
    }

    fn at(&self, path: ObjPath) -> Location {
        // Store paths are relative to the URL's root (`s3://bucket`, `https://host`).
        let url = format!("{}/{}", self.base, path);
        Location { url, store: self.store.clone(), path, base: self.base.clone(), scheme: self.scheme.clone() }
    }

    /// The object's size, or `None` when there is no object at this exact path.
    pub fn size(&self) -> Result<Option<u64>> {
        if self.url.ends_with('/') || self.path.as_ref().is_empty() {
            return Ok(None);
        }
        REQUESTS.fetch_add(1, Ordering::Relaxed);
        match block_on(self.store.head(&self.path))? {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(store_error(&self.url, "reading", e)),
        }
    }

    /// Every object under this location taken as a folder, in the order a local walk gives
    /// (name order at every level), skipping objects with any name part below the prefix that
    /// starts with `_` or `.`.
    pub fn list(&self) -> Result<Vec<Location>> {
        let prefix = if self.path.as_ref().is_empty() { None } else { Some(&self.path) };
        REQUESTS.fetch_add(1, Ordering::Relaxed);
        let metas: Vec<object_store::ObjectMeta> =
            block_on(self.store.list(prefix).try_collect())?.map_err(|e| store_error(&self.url, "listing", e))?;
        let depth = self.path.parts().count();
        let mut found: Vec<(Vec<String>, ObjPath)> = metas
            .into_iter()
            .filter_map(|m| {
                let parts: Vec<String> = m.location.parts().skip(depth).map(|p| p.as_ref().to_string()).collect();
                let hidden = parts.iter().any(|p| p.starts_with('_') || p.starts_with('.'));
                (!hidden && !parts.is_empty()).then_some((parts, m.location))
            })
            .collect();
        // Comparing name lists part by part is the local walk's order: a folder's objects come
        // where its name sorts among its siblings.
        found.sort();
        Ok(found.into_iter().map(|(_, p)| self.at(p)).collect())
    }

    /// Whether anything at all is stored under this location taken as a folder.
    pub fn has_any(&self) -> Result<Option<String>> {
        let prefix = if self.path.as_ref().is_empty() { None } else { Some(&self.path) };
        REQUESTS.fetch_add(1, Ordering::Relaxed);
        let first = block_on(self.store.list(prefix).next())?;
        match first {
            None => Ok(None),
            Some(Ok(m)) => Ok(Some(self.at(m.location).url)),
            Some(Err(e)) => Err(store_error(&self.url, "listing", e)),
        }
    }

    /// Read the first `n` bytes (format detection).
    pub fn head_bytes(&self, n: u64, size: u64) -> Result<Bytes> {
        let end = n.min(size);
        if end == 0 {
            return Ok(Bytes::new());
        }
        REQUESTS.fetch_add(1, Ordering::Relaxed);
        let b =
            block_on(self.store.get_range(&self.path, 0..end))?.map_err(|e| store_error(&self.url, "reading", e))?;
        BYTES_READ.fetch_add(b.len() as u64, Ordering::Relaxed);
        Ok(b)
    }

    /// A Parquet reader that fetches the footer and then only the column chunks asked for, by
    /// range requests.
    pub fn parquet_reader(&self, size: u64) -> ObjectParquet {
        ObjectParquet { store: self.store.clone(), path: self.path.clone(), size }
    }

    /// The whole object as a blocking `Read`, handed out as it arrives.
    pub fn stream(&self) -> Result<StreamRead> {
        REQUESTS.fetch_add(1, Ordering::Relaxed);
        let got = block_on(self.store.get(&self.path))?.map_err(|e| store_error(&self.url, "reading", e))?;
        Ok(StreamRead { url: self.url.clone(), stream: got.into_stream(), buf: Bytes::new() })
    }
}

/// Stores already built, by `scheme://authority`: every object of a bucket shares one client.
fn store_for(url: &str, parsed: &Url, scheme: &ObjectStoreScheme, base: &str) -> Result<Arc<dyn ObjectStore>> {
    static STORES: Mutex<Option<HashMap<String, Arc<dyn ObjectStore>>>> = Mutex::new(None);
    let mut guard = STORES.lock().unwrap_or_else(|p| p.into_inner());
    let cache = guard.get_or_insert_with(HashMap::new);
    if let Some(s) = cache.get(base) {
        return Ok(s.clone());
    }
    let retry = RetryConfig { max_retries: MAX_RETRIES, retry_timeout: Duration::from_secs(120), ..Default::default() };
    let built: std::result::Result<Arc<dyn ObjectStore>, object_store::Error> = match scheme {
        ObjectStoreScheme::AmazonS3 => {
            check_aws_credentials(url)?;
            object_store::aws::AmazonS3Builder::from_env()
                .with_url(parsed.as_str())
                .with_retry(retry)
                .build()
                .map(|s| Arc::new(s) as _)
        }
        ObjectStoreScheme::GoogleCloudStorage => object_store::gcp::GoogleCloudStorageBuilder::from_env()
            .with_url(parsed.as_str())
            .with_retry(retry)
            .build()
            .map(|s| Arc::new(s) as _),
        ObjectStoreScheme::MicrosoftAzure => object_store::azure::MicrosoftAzureBuilder::from_env()
            .with_url(parsed.as_str())
            .with_retry(retry)
            .build()
            .map(|s| Arc::new(s) as _),
        ObjectStoreScheme::Http => {
            object_store::http::HttpBuilder::new().with_url(base).with_retry(retry).build().map(|s| Arc::new(s) as _)
        }
        other => {
            return Err(Error::config(format!(
                "{url}: {other:?} URLs are not supported; use s3://, gs://, az://, abfs:// or https://, or a local path"
            )))
        }
    };
    let store = built.map_err(|e| {
        Error::data(format!("{url}: cannot set up the store client ({e}); check the URL and the environment variables (README, \"Object storage\")"))
    })?;
    cache.insert(base.to_string(), store.clone());
    Ok(store)
}

/// S3 without any credential source in the environment, at an endpoint that is not AWS (so no
/// instance role can apply): say so at once instead of retrying the instance metadata service.
fn check_aws_credentials(url: &str) -> Result<()> {
    let set = |k: &str| std::env::var_os(k).is_some_and(|v| !v.is_empty());
    let has_creds = set("AWS_ACCESS_KEY_ID")
        || set("AWS_WEB_IDENTITY_TOKEN_FILE")
        || set("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI")
        || set("AWS_CONTAINER_CREDENTIALS_FULL_URI")
        || std::env::var("AWS_SKIP_SIGNATURE").is_ok_and(|v| v.eq_ignore_ascii_case("true"));
    if !has_creds && (set("AWS_ENDPOINT_URL") || set("AWS_ENDPOINT")) {
        return Err(Error::data(format!(
            "{url}: no credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_SKIP_SIGNATURE=true for a \
             public bucket)"
        )));
    }
    Ok(())
}

/// One line naming the URL and the cause.
pub fn store_error(url: &str, doing: &str, e: object_store::Error) -> Error {
    let text = e.to_string();
    let chain = error_chain(&e);
    match &e {
        object_store::Error::NotFound { .. } if chain.contains("NoSuchBucket") => {
            Error::data(format!("{url}: no such bucket; check the bucket name (and AWS_ENDPOINT_URL / the region)"))
        }
        object_store::Error::NotFound { .. } => Error::data(format!("{url}: no such object or prefix; check the URL")),
        object_store::Error::PermissionDenied { .. } => Error::data(format!(
            "{url}: access denied while {doing} ({}); check the credentials and that they may {doing} this bucket",
            one_line(&chain)
        )),
        object_store::Error::Unauthenticated { .. } => Error::data(format!(
            "{url}: access denied: the store refused the credentials while {doing} ({}); check AWS_ACCESS_KEY_ID / \
             GOOGLE_APPLICATION_CREDENTIALS / AZURE_STORAGE_* (README, \"Object storage\")",
            one_line(&chain)
        )),
        _ if chain.contains("NoSuchBucket") => {
            Error::data(format!("{url}: no such bucket; check the bucket name (and AWS_ENDPOINT_URL / the region)"))
        }
        _ if chain.contains("InvalidAccessKeyId") || chain.contains("AccessDenied") || chain.contains("403") => {
            Error::data(format!(
                "{url}: access denied while {doing} ({}); check the credentials and their permissions",
                one_line(&chain)
            ))
        }
        _ if chain.contains("retries") || chain.contains("error sending request") || chain.contains("connect") => {
            Error::data(format!(
                "{url}: network failure while {doing}, gave up after {MAX_RETRIES} retries ({}); check the endpoint \
                 (AWS_ENDPOINT_URL) and the network, then rerun",
                one_line(&chain)
            ))
        }
        _ => Error::data(format!(
            "{url}: store error while {doing} ({}); check the URL and credentials",
            one_line(&text)
        )),
    }
}

/// The error and its sources, for telling causes apart.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(inner) = cur {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        cur = inner.source();
    }
    s
}

/// Messages are one line.
fn one_line(s: &str) -> String {
    let s: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if s.len() > 300 {
        let mut end = 300;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}...", &s[..end])
    } else {
        s
    }
}

/// `object_store` errors reach us wrapped in Parquet's error type: find them again.
pub fn from_parquet_error(url: &str, e: &parquet::errors::ParquetError) -> Option<Error> {
    if let parquet::errors::ParquetError::External(inner) = e {
        if let Some(os) = inner.downcast_ref::<object_store::Error>() {
            // Rebuild the message from the text: object_store::Error is not Clone.
            let text = error_chain(os);
            let kind = match os {
                object_store::Error::NotFound { .. } => {
                    object_store::Error::NotFound { path: url.to_string(), source: text.into() }
                }
                object_store::Error::PermissionDenied { .. } => {
                    object_store::Error::PermissionDenied { path: url.to_string(), source: text.into() }
                }
                object_store::Error::Unauthenticated { .. } => {
                    object_store::Error::Unauthenticated { path: url.to_string(), source: text.into() }
                }
                _ => object_store::Error::Generic { store: "store", source: text.into() },
            };
            return Some(store_error(url, "reading", kind));
        }
    }
    None
}

/// Print `PROBE_STORE_STATS=1`'s line: what was read from stores.
pub fn print_stats(stage: &str) {
    if std::env::var_os("PROBE_STORE_STATS").is_some() {
        crate::error::stderr_line(&format!(
            "{stage}: store: {} bytes read in {} requests",
            BYTES_READ.load(Ordering::Relaxed),
            REQUESTS.load(Ordering::Relaxed)
        ));
    }
}

/// A Parquet object read by range requests (what parquet's deprecated `ParquetObjectReader`
/// did), counting the bytes it fetches, footer included. Its futures run on the store runtime
/// because every read blocks on it.
pub struct ObjectParquet {
    store: Arc<dyn ObjectStore>,
    path: ObjPath,
    size: u64,
}

fn external(e: object_store::Error) -> ParquetError {
    ParquetError::External(Box::new(e))
}

impl AsyncFileReader for ObjectParquet {
    fn get_bytes(&mut self, range: Range<u64>) -> BoxFuture<'_, parquet::errors::Result<Bytes>> {
        REQUESTS.fetch_add(1, Ordering::Relaxed);
        BYTES_READ.fetch_add(range.end - range.start, Ordering::Relaxed);
        async move { self.store.get_range(&self.path, range).await.map_err(external) }.boxed()
    }

    fn get_byte_ranges(&mut self, ranges: Vec<Range<u64>>) -> BoxFuture<'_, parquet::errors::Result<Vec<Bytes>>> {
        // One request per column chunk, concurrently: object_store's `get_ranges` would merge
        // chunks less than 1 MiB apart and fetch the unread columns between them too.
        REQUESTS.fetch_add(ranges.len() as u64, Ordering::Relaxed);
        BYTES_READ.fetch_add(ranges.iter().map(|r| r.end - r.start).sum::<u64>(), Ordering::Relaxed);
        let (store, path) = (&self.store, &self.path);
        futures::future::try_join_all(ranges.into_iter().map(|r| store.get_range(path, r)))
            .map(|r| r.map_err(external))
            .boxed()
    }

    fn get_metadata<'a>(
        &'a mut self,
        options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, parquet::errors::Result<Arc<ParquetMetaData>>> {
        let size = self.size;
        async move {
            // Through `self`, so the footer's bytes are counted too.
            let metadata_opts = options.map(|o| o.metadata_options().clone());
            let meta = ParquetMetaDataReader::new()
                .with_metadata_options(metadata_opts)
                .with_prefetch_hint(Some(64 << 10))
                .load_and_finish(self, size)
                .await?;
            Ok(Arc::new(meta))
        }
        .boxed()
    }
}

/// Run a Parquet stream future on the store runtime.
pub fn block<F: std::future::Future>(f: F) -> Result<F::Output> {
    block_on(f)
}

/// A streaming GET as a blocking `Read`: bytes are handed out as they arrive, one network
/// chunk in memory at a time.
pub struct StreamRead {
    url: String,
    stream: BoxStream<'static, object_store::Result<Bytes>>,
    buf: Bytes,
}

impl Read for StreamRead {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.buf.is_empty() {
            let next = block_on(self.stream.next()).map_err(io::Error::other)?;
            match next {
                None => return Ok(0),
                Some(Ok(b)) => {
                    BYTES_READ.fetch_add(b.len() as u64, Ordering::Relaxed);
                    self.buf = b;
                }
                Some(Err(e)) => return Err(io::Error::other(store_error(&self.url, "reading", e).to_string())),
            }
        }
        let n = out.len().min(self.buf.len());
        out[..n].copy_from_slice(&self.buf[..n]);
        let _ = self.buf.split_to(n);
        Ok(n)
    }
}

/// A multipart upload as a `Write`: parts of [`PART_SIZE`] go up as they fill (at most
/// [`UPLOADS_IN_FLIGHT`] at a time); [`Upload::commit`] completes it and only then does the
/// object exist. Dropped uncommitted, or on SIGINT/SIGTERM, the upload is aborted; a SIGKILL
/// leaves an incomplete upload, which no reader sees (a bucket lifecycle rule removes it).
pub struct Upload {
    url: String,
    upload: Arc<Mutex<Option<Box<dyn MultipartUpload>>>>,
    buf: Vec<u8>,
    in_flight: Vec<tokio::task::JoinHandle<object_store::Result<()>>>,
    hook: u64,
    written: u64,
}

impl std::fmt::Debug for Upload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.url)
    }
}

impl Upload {
    /// Start a multipart upload to `url` (refusing read-only `https://`).
    pub fn start(url: &str) -> Result<Upload> {
        let loc = Location::parse(url)?;
        if loc.scheme == ObjectStoreScheme::Http {
            return Err(Error::config(format!(
                "{url}: https:// URLs are read-only here; write to s3://, gs://, az:// or a local path"
            )));
        }
        if loc.path.as_ref().is_empty() || url.ends_with('/') {
            return Err(Error::config(format!(
                "{url}: names a bucket or folder; -o takes an object name, such as {}/out.arrows",
                url.trim_end_matches('/')
            )));
        }
        let upload = block_on(loc.store.put_multipart(&loc.path))?.map_err(|e| store_error(url, "writing", e))?;
        let upload = Arc::new(Mutex::new(Some(upload)));
        let for_hook = upload.clone();
        let hook = crate::cleanup::register_hook(Box::new(move || {
            // Interrupted: abort, so the store drops the parts uploaded so far.
            let taken = for_hook.lock().ok().and_then(|mut g| g.take());
            if let Some(mut up) = taken {
                if let Ok(rt) = runtime() {
                    let _ = rt.block_on(async { tokio::time::timeout(Duration::from_secs(10), up.abort()).await });
                }
            }
        }));
        Ok(Upload {
            url: url.to_string(),
            upload,
            buf: Vec::with_capacity(PART_SIZE),
            in_flight: Vec::new(),
            hook,
            written: 0,
        })
    }

    fn send_part(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        // Bound memory: wait for the oldest part when too many are on their way.
        while self.in_flight.len() >= UPLOADS_IN_FLIGHT {
            let first = self.in_flight.remove(0);
            self.wait(first)?;
        }
        let data = std::mem::replace(&mut self.buf, Vec::with_capacity(PART_SIZE));
        let fut = {
            let mut guard = self.upload.lock().map_err(|_| io::Error::other("upload state poisoned"))?;
            let Some(up) = guard.as_mut() else {
                return Err(io::Error::other(format!("{}: the upload was aborted", self.url)));
            };
            up.put_part(PutPayload::from(data))
        };
        let rt = runtime().map_err(|e| io::Error::other(e.to_string()))?;
        self.in_flight.push(rt.spawn(fut));
        Ok(())
    }

    fn wait(&self, handle: tokio::task::JoinHandle<object_store::Result<()>>) -> io::Result<()> {
        match block_on(handle).map_err(|e| io::Error::other(e.to_string()))? {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(io::Error::other(store_error(&self.url, "writing", e).to_string())),
            Err(e) => Err(io::Error::other(format!("{}: upload task failed ({e})", self.url))),
        }
    }

    /// Upload what is left and complete the upload: the object appears now, whole.
    pub fn commit(mut self) -> Result<u64> {
        let to_err = |e: io::Error| Error::data(e.to_string());
        self.send_part().map_err(to_err)?;
        for h in std::mem::take(&mut self.in_flight) {
            self.wait(h).map_err(to_err)?;
        }
        let taken = self.upload.lock().ok().and_then(|mut g| g.take());
        let Some(mut up) = taken else {
            return Err(Error::data(format!("{}: the upload was aborted", self.url)));
        };
        crate::cleanup::forget_hook(self.hook);
        if self.written == 0 {
            // S3 needs at least one part, even an empty one.
            block_on(up.put_part(PutPayload::default()))?.map_err(|e| store_error(&self.url, "writing", e))?;
        }
        block_on(up.complete())?.map_err(|e| store_error(&self.url, "writing", e))?;
        Ok(self.written)
    }
}

impl Write for Upload {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let room = PART_SIZE - self.buf.len();
        let n = data.len().min(room);
        self.buf.extend_from_slice(&data[..n]);
        self.written += n as u64;
        if self.buf.len() >= PART_SIZE {
            self.send_part()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        // Parts go up when full; completing is `commit`'s job.
        Ok(())
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        crate::cleanup::forget_hook(self.hook);
        for h in self.in_flight.drain(..) {
            h.abort();
        }
        let taken = self.upload.lock().ok().and_then(|mut g| g.take());
        if let Some(mut up) = taken {
            if let Ok(rt) = runtime() {
                let _ = rt.block_on(async { tokio::time::timeout(Duration::from_secs(10), up.abort()).await });
            }
        }
    }
}

/// Upload a local file to `url` (multipart), completing only when all of it is up.
pub fn upload_file(local: &std::path::Path, url: &str) -> Result<u64> {
    let mut up = Upload::start(url)?;
    let mut file = std::fs::File::open(local).map_err(|e| Error::io(local, e))?;
    io::copy(&mut file, &mut up).map_err(|e| Error::data(format!("{url}: upload failed ({e})")))?;
    up.commit()
}
