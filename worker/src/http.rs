//! HTTP jobs (`kind = "http"`): each shard item is one request to the job's URL.
//!
//! The request is the job's method, URL, headers and body; headers of the worker's own
//! (`Antares-Instance`, `Antares-Params`, ...) name the shard, so the body stays the
//! job's. The answer maps to a result (2xx success, 429/503 later, else failed), and its
//! status and the start of its body go to the shard's log. What a server sees and how
//! its answer is read is documented for users in [`crate::http_jobs`].
//!
//! Params are percent-encoded so that any text fits a header, and capped
//! ([`MAX_PARAM_HEADER_BYTES`]) since servers refuse big headers. Only
//! [`EXCERPT_BYTES`] of a body are read: a huge or endless answer costs nothing. The
//! job's `http.timeout` bounds the whole exchange; the job's own `timeout` stops it like
//! any job (the shard reports `timed_out`).

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use antares_schemas::messages::{Execution, LogStream};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Client, Method, Response, StatusCode};

use crate::context::JobContext;
use crate::job::JobResult;

/// Most bytes of a response body read, logged and quoted in an error.
pub(crate) const EXCERPT_BYTES: usize = 512;
/// Largest percent-encoded `Antares-Params` or `Antares-Shard-Param` header value.
pub(crate) const MAX_PARAM_HEADER_BYTES: usize = 8 * 1024;
/// Longest wait for a connection, whatever the job's `http.timeout`.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Most redirects followed.
const MAX_REDIRECTS: usize = 5;

/// The client every http job of a worker shares (its connection pool).
pub(crate) fn client() -> Result<Client, String> {
    Client::builder()
        .user_agent(concat!("antares-worker/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(CONNECT_TIMEOUT)
        .redirect(reqwest::redirect::Policy::limited(MAX_REDIRECTS))
        .build()
        .map_err(|e| format!("cannot set up the HTTP client for http jobs: {}", chain(&e)))
}

/// Runs one attempt of an http job; `ctx`'s task must be one.
pub(crate) async fn run(ctx: JobContext, client: Client) -> JobResult {
    let Execution::Http {
        url,
        method,
        headers,
        body,
        timeout_ms,
    } = ctx.task().exec.clone()
    else {
        return JobResult::Fail("not an http job".into());
    };
    let shown = without_query(&url);
    let request = match request(&ctx, &client, &url, &method, &headers, body, timeout_ms) {
        Ok(r) => r,
        Err(e) => return JobResult::Fail(e),
    };
    let begun = Instant::now();
    let response = tokio::select! {
        sent = request.send() => sent,
        // The worker reports what the stop says; this result is ignored.
        () = ctx.cancelled() => return JobResult::Fail("stopped".into()),
    };
    let response = match response {
        Ok(r) => r,
        Err(e) => return JobResult::Fail(failure(&e, &method, &shown, timeout_ms)),
    };
    let status = response.status();
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let excerpt = tokio::select! {
        read = excerpt(response) => read,
        () = ctx.cancelled() => return JobResult::Fail("stopped".into()),
    };
    let took = humantime::format_duration(Duration::from_millis(
        u64::try_from(begun.elapsed().as_millis()).unwrap_or(u64::MAX),
    ));
    ctx.log(format!("{method} {shown}: HTTP {status} in {took}"));
    for line in excerpt.text.lines() {
        ctx.log_output(LogStream::Stdout, line.to_string()).await;
    }
    if excerpt.cut {
        ctx.log(format!(
            "(the body goes on; only its first {EXCERPT_BYTES} bytes are read)"
        ));
    }
    outcome(
        status,
        retry_after.as_deref(),
        &excerpt,
        &method,
        &shown,
        &ctx,
    )
}

/// The request, or why it cannot be made.
fn request(
    ctx: &JobContext,
    client: &Client,
    url: &str,
    method: &str,
    headers: &std::collections::BTreeMap<String, String>,
    body: String,
    timeout_ms: u64,
) -> Result<reqwest::RequestBuilder, String> {
    let method = Method::from_bytes(method.as_bytes())
        .map_err(|_| format!("`{method}` is not an HTTP method"))?;
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        let n = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("`{name}` is not a header name"))?;
        let v = HeaderValue::from_str(value)
            .map_err(|_| format!("the value of header `{name}` is not one line of text"))?;
        map.insert(n, v);
    }
    let task = ctx.task();
    let plain = [
        ("antares-app", task.app.clone()),
        ("antares-job", task.job.clone()),
        ("antares-instance", task.instance.to_string()),
        ("antares-shard-item", task.item.to_string()),
        ("antares-shard-total", task.total.to_string()),
        ("antares-attempt", ctx.attempt().to_string()),
    ];
    for (name, value) in plain {
        let v = HeaderValue::from_str(&value)
            .map_err(|_| format!("cannot send `{value}` as header `{name}`"))?;
        map.insert(HeaderName::from_static(name), v);
    }
    for (name, what, value) in [
        ("antares-params", "the params", &task.params),
        ("antares-shard-param", "the shard param", &task.param),
    ] {
        let encoded = percent_encode(value);
        if encoded.len() > MAX_PARAM_HEADER_BYTES {
            return Err(format!(
                "{what} take {} bytes percent-encoded, more than the {MAX_PARAM_HEADER_BYTES} bytes header `{}` may carry; pass big data another way (the body, or a reference in the params)",
                encoded.len(),
                header_case(name)
            ));
        }
        // Percent-encoded text is visible ASCII: always a valid value.
        let v = HeaderValue::from_str(&encoded)
            .map_err(|_| format!("cannot send {what} as header `{}`", header_case(name)))?;
        map.insert(HeaderName::from_static(name), v);
    }
    let mut builder = client.request(method, url).headers(map);
    if !body.is_empty() {
        builder = builder.body(body);
    }
    if timeout_ms > 0 {
        builder = builder.timeout(Duration::from_millis(timeout_ms));
    }
    Ok(builder)
}

/// What a response says, as a result; logs a "later" saying why.
fn outcome(
    status: StatusCode,
    retry_after: Option<&str>,
    excerpt: &Excerpt,
    method: &str,
    url: &str,
    ctx: &JobContext,
) -> JobResult {
    if status.is_success() {
        return JobResult::Success;
    }
    if status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::SERVICE_UNAVAILABLE {
        let mut line = format!("HTTP {status}: the shard runs again later");
        if let Some(after) = retry_after {
            let _ = write!(
                line,
                " (after the worker's later delay; the server's Retry-After `{after}` is not used)"
            );
        }
        ctx.log(line);
        return JobResult::Later;
    }
    let mut error = format!("{method} {url} answered HTTP {status}");
    let text = excerpt.text.trim();
    if !text.is_empty() {
        let _ = write!(error, ": {text}");
        if excerpt.cut {
            error.push('…');
        }
    }
    JobResult::Fail(error)
}

/// The start of a response body.
#[derive(Debug, Default)]
struct Excerpt {
    text: String,
    /// Whether the body is longer.
    cut: bool,
}

/// Reads at most [`EXCERPT_BYTES`] of the body, then drops the rest unread.
async fn excerpt(mut response: Response) -> Excerpt {
    let mut bytes = Vec::with_capacity(EXCERPT_BYTES);
    let mut cut = false;
    let mut broken = None;
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let room = EXCERPT_BYTES - bytes.len();
                bytes.extend_from_slice(&chunk[..chunk.len().min(room)]);
                if chunk.len() > room {
                    cut = true;
                    break;
                }
            }
            Ok(None) => break,
            Err(e) => {
                broken = Some(chain(&e));
                break;
            }
        }
    }
    let mut text = utf8_start(&bytes);
    if let Some(why) = broken {
        if !text.is_empty() {
            text.push('\n');
        }
        let _ = write!(text, "(reading the body failed: {why})");
    }
    Excerpt { text, cut }
}

/// The bytes as text: a character cut at the end is dropped, invalid bytes replaced.
fn utf8_start(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) => s.to_string(),
        Err(e) if e.error_len().is_none() => {
            String::from_utf8_lossy(&bytes[..e.valid_up_to()]).into_owned()
        }
        Err(_) => String::from_utf8_lossy(bytes).into_owned(),
    }
}

/// Why a request got no answer, in words.
fn failure(e: &reqwest::Error, method: &str, url: &str, timeout_ms: u64) -> String {
    if e.is_timeout() {
        return format!(
            "{method} {url}: no answer within {} (the job's http.timeout)",
            humantime::format_duration(Duration::from_millis(timeout_ms))
        );
    }
    if e.is_connect() {
        return format!("{method} {url}: cannot connect: {}", chain(e));
    }
    if e.is_redirect() {
        return format!("{method} {url}: more than {MAX_REDIRECTS} redirects");
    }
    format!("{method} {url}: the request failed: {}", chain(e))
}

/// An error with its causes, `a: b: c`, without the URL reqwest repeats.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(e);
    while let Some(err) = next {
        let text = err.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = err.source();
    }
    parts.join(": ")
}

/// The URL without its query and fragment.
fn without_query(url: &str) -> String {
    url.split(['?', '#']).next().unwrap_or(url).to_string()
}

/// `antares-shard-param` as `Antares-Shard-Param`.
fn header_case(name: &str) -> String {
    name.split('-')
        .map(|part| {
            let mut chars = part.chars();
            chars.next().map_or_else(String::new, |first| {
                first.to_ascii_uppercase().to_string() + chars.as_str()
            })
        })
        .collect::<Vec<_>>()
        .join("-")
}

/// Percent-encodes every byte of the UTF-8 text but the unreserved ones (RFC 3986).
pub(crate) fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_are_percent_encoded() {
        assert_eq!(percent_encode("a-b_c.d~e"), "a-b_c.d~e");
        assert_eq!(percent_encode("a b;c=é\n"), "a%20b%3Bc%3D%C3%A9%0A");
        assert_eq!(percent_encode(""), "");
    }

    #[test]
    fn excerpts_cut_on_characters() {
        assert_eq!(utf8_start("ab".as_bytes()), "ab");
        let e = "é".as_bytes();
        assert_eq!(utf8_start(&[b'a', e[0]]), "a");
        assert_eq!(utf8_start(&[b'a', 0xff, b'b']), "a\u{fffd}b");
    }

    #[test]
    fn urls_lose_their_query_in_logs() {
        assert_eq!(
            without_query("https://h/p?token=x#f"),
            "https://h/p".to_string()
        );
        assert_eq!(without_query("https://h/p"), "https://h/p".to_string());
        assert_eq!(header_case("antares-shard-param"), "Antares-Shard-Param");
    }
}
