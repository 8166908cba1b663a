//! A tiny blocking HTTP/1.1 client over a Unix socket — just enough for Firecracker's API: one
//! request per connection, `Content-Length` bodies (chunked and read-to-EOF bodies are accepted too).

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// Upper bound on a response head or body; Firecracker's replies are a few hundred bytes.
const MAX_RESPONSE: u64 = 1 << 20;

#[derive(Debug)]
pub(crate) struct Response {
    pub status: u16,
    pub reason: String,
    pub body: Vec<u8>,
}

impl Response {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// Send one request and read its response. `path` must already be percent-encoded.
pub(crate) fn request(
    socket: &Path,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
    timeout: Duration,
) -> io::Result<Response> {
    // A jailed Firecracker's socket is reached through a link into its chroot, where that
    // Firecracker's user could put something else: only a socket itself is connected to.
    if let Ok(target) = std::fs::read_link(socket) {
        use std::os::unix::fs::FileTypeExt;
        let meta = std::fs::symlink_metadata(&target)?;
        if !meta.file_type().is_socket() {
            return Err(invalid(format!("{} is not a socket", target.display())));
        }
    }
    let mut stream = UnixStream::connect(socket)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let mut message = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nAccept: application/json\r\n");
    if let Some(body) = body {
        message.push_str(&format!("Content-Type: application/json\r\nContent-Length: {}\r\n", body.len()));
    }
    message.push_str("\r\n");
    let mut bytes = message.into_bytes();
    bytes.extend_from_slice(body.unwrap_or_default());
    stream.write_all(&bytes)?;
    stream.flush()?;
    read_response(&mut BufReader::new(stream.take(MAX_RESPONSE)), method)
}

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

fn read_line(reader: &mut impl BufRead) -> io::Result<String> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed before a complete response"));
    }
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

pub(crate) fn read_response(reader: &mut impl BufRead, method: &str) -> io::Result<Response> {
    let status_line = read_line(reader)?;
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    if !version.starts_with("HTTP/1.") {
        return Err(invalid(format!("not an HTTP/1.x status line: {status_line:?}")));
    }
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .filter(|s| (100..1000).contains(s))
        .ok_or_else(|| invalid(format!("bad status line: {status_line:?}")))?;
    let reason = parts.next().unwrap_or("").to_string();

    let mut content_length: Option<u64> = None;
    let mut chunked = false;
    loop {
        let line = read_line(reader)?;
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':').ok_or_else(|| invalid(format!("bad header line: {line:?}")))?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            content_length = Some(value.parse().map_err(|_| invalid(format!("bad Content-Length: {value:?}")))?);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.to_ascii_lowercase().split(',').any(|v| v.trim() == "chunked");
        }
    }

    let mut body = Vec::new();
    if method == "HEAD" || status < 200 || status == 204 || status == 304 {
        // No body by definition.
    } else if chunked {
        loop {
            let size_line = read_line(reader)?;
            let size = u64::from_str_radix(size_line.split(';').next().unwrap_or("").trim(), 16)
                .map_err(|_| invalid(format!("bad chunk size: {size_line:?}")))?;
            if size == 0 {
                // Trailers until the empty line.
                while !read_line(reader)?.is_empty() {}
                break;
            }
            reader.take(size).read_to_end(&mut body)?;
            if !read_line(reader)?.is_empty() {
                return Err(invalid("chunk not followed by CRLF"));
            }
        }
    } else if let Some(len) = content_length {
        body.resize(usize::try_from(len).map_err(|_| invalid("Content-Length too large"))?, 0);
        reader.read_exact(&mut body)?;
    } else {
        reader.read_to_end(&mut body)?;
    }
    Ok(Response { status, reason, body })
}

/// Percent-encode one path segment (everything but RFC 3986 unreserved characters).
pub(crate) fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &str, method: &str) -> io::Result<Response> {
        read_response(&mut BufReader::new(raw.as_bytes()), method)
    }

    #[test]
    fn parses_no_content_and_content_length_replies() {
        let r = parse("HTTP/1.1 204 No Content\r\nServer: Firecracker API\r\nConnection: keep-alive\r\n\r\n", "PUT")
            .unwrap();
        assert_eq!((r.status, r.reason.as_str(), r.body.len()), (204, "No Content", 0));
        let r = parse(
            "HTTP/1.1 400 Bad Request\r\ncontent-length: 28\r\nContent-Type: application/json\r\n\r\n{\"fault_message\":\"x y\\\"z\"}\r\nEXTRA",
            "PUT",
        )
        .unwrap();
        assert_eq!(r.status, 400);
        assert_eq!(r.body, b"{\"fault_message\":\"x y\\\"z\"}\r\n");
        assert!(!r.is_success());
    }

    #[test]
    fn parses_chunked_and_eof_bodies() {
        let r =
            parse("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n", "GET")
                .unwrap();
        assert_eq!(r.body, b"abcde");
        let r = parse("HTTP/1.0 200 OK\r\n\r\nhello", "GET").unwrap();
        assert_eq!(r.body, b"hello");
    }

    #[test]
    fn rejects_garbage_and_truncation() {
        assert!(parse("SSH-2.0-OpenSSH\r\n\r\n", "GET").is_err());
        assert!(parse("HTTP/1.1 abc OK\r\n\r\n", "GET").is_err());
        assert!(parse("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", "GET").is_err());
        assert!(parse("HTTP/1.1 200 OK\r\nContent-Len", "GET").is_err());
        assert!(parse("", "GET").is_err());
    }

    #[test]
    fn encodes_path_segments() {
        assert_eq!(segment("work_1-a.b~"), "work_1-a.b~");
        assert_eq!(segment("a b/c"), "a%20b%2Fc");
    }
}
