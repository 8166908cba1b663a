//! Shared helpers for the integration tests: a tiny HTTP/1.1 server, fixture
//! trees, manifests and directory snapshots.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread;

use sha2::{Digest, Sha256};

/// One canned HTTP response.
#[derive(Clone)]
pub struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
    /// Content-Length to announce; defaults to `body.len()`. A larger value
    /// simulates a truncated transfer (the connection closes early).
    pub declared_len: Option<u64>,
}

impl Reply {
    pub fn ok(body: Vec<u8>) -> Reply {
        Reply { status: 200, body, declared_len: None }
    }
}

/// A minimal HTTP/1.1 server on 127.0.0.1 serving canned replies by path.
pub struct Server {
    pub base: String,
    routes: Arc<Mutex<HashMap<String, Reply>>>,
}

impl Server {
    pub fn start() -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let routes: Arc<Mutex<HashMap<String, Reply>>> = Arc::default();
        let r = routes.clone();
        thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let routes = r.clone();
                thread::spawn(move || {
                    let mut reader = BufReader::new(conn.try_clone().unwrap());
                    let mut request_line = String::new();
                    if reader.read_line(&mut request_line).is_err() {
                        return;
                    }
                    loop {
                        let mut line = String::new();
                        match reader.read_line(&mut line) {
                            Ok(0) => break,
                            Ok(_) if line == "\r\n" || line == "\n" => break,
                            Ok(_) => {}
                            Err(_) => return,
                        }
                    }
                    let path = request_line.split_whitespace().nth(1).unwrap_or("/").to_string();
                    let reply = routes.lock().unwrap().get(&path).cloned().unwrap_or(Reply {
                        status: 404,
                        body: b"not found".to_vec(),
                        declared_len: None,
                    });
                    let len = reply.declared_len.unwrap_or(reply.body.len() as u64);
                    let head = format!(
                        "HTTP/1.1 {} X\r\nContent-Length: {len}\r\nContent-Type: application/gzip\r\nConnection: close\r\n\r\n",
                        reply.status
                    );
                    let _ = conn.write_all(head.as_bytes());
                    let _ = conn.write_all(&reply.body);
                    let _ = conn.flush();
                    let _ = conn.shutdown(std::net::Shutdown::Both);
                });
            }
        });
        Server { base, routes }
    }

    /// Serves `reply` at `path` and returns the full URL.
    pub fn serve(&self, path: &str, reply: Reply) -> String {
        self.routes.lock().unwrap().insert(path.to_string(), reply);
        format!("{}{}", self.base, path)
    }
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Writes a manifest into `dir` and returns its path.
pub fn write_manifest(dir: &Path, url: Option<&str>, sha: Option<&str>, files: &[&str]) -> PathBuf {
    let mut text = String::from("version = \"2026.11.1\"\n");
    if let Some(u) = url {
        text.push_str(&format!("url = \"{u}\"\n"));
    }
    if let Some(s) = sha {
        text.push_str(&format!("sha256 = \"{s}\"\n"));
    }
    let list: Vec<String> = files.iter().map(|f| format!("\"{f}\"")).collect();
    text.push_str(&format!("files = [{}]\n", list.join(", ")));
    let p = dir.join("runtime-bundle.toml");
    fs::write(&p, text).unwrap();
    p
}

pub const LISTED: &[&str] = &["vmlinux", "initrd.img", "rootfs.ext4", "id_ed25519", "bin/firecracker"];

/// A small runtime tree resembling the real bundle.
pub fn make_tree(dir: &Path) {
    fs::create_dir_all(dir.join("bin")).unwrap();
    fs::create_dir_all(dir.join("scripts")).unwrap();
    fs::create_dir_all(dir.join("empty-dir")).unwrap();
    fs::write(dir.join("vmlinux"), b"kernel image".repeat(1000)).unwrap();
    fs::write(dir.join("initrd.img"), vec![7u8; 5000]).unwrap();
    let rootfs: Vec<u8> = (0..300_000u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
    fs::write(dir.join("rootfs.ext4"), rootfs).unwrap();
    fs::write(dir.join("id_ed25519"), b"-----BEGIN OPENSSH PRIVATE KEY-----\n").unwrap();
    fs::write(dir.join("bin/firecracker"), b"#!/bin/sh\necho fc\n").unwrap();
    fs::write(dir.join("scripts/boot.sh"), b"#!/bin/sh\necho boot\n").unwrap();
    std::os::unix::fs::symlink("vmlinux", dir.join("vmlinuz")).unwrap();
    std::os::unix::fs::symlink("../vmlinux", dir.join("scripts/kernel")).unwrap();
    for (p, mode) in [
        ("vmlinux", 0o644),
        ("initrd.img", 0o644),
        ("rootfs.ext4", 0o664),
        ("id_ed25519", 0o600),
        ("bin/firecracker", 0o755),
        ("scripts/boot.sh", 0o700),
    ] {
        fs::set_permissions(dir.join(p), fs::Permissions::from_mode(mode)).unwrap();
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum Node {
    Dir { mode: u32 },
    File { mode: u32, data: Vec<u8> },
    Link(PathBuf),
    Other,
}

/// A recursive, byte-for-byte snapshot of a directory (contents, modes, links).
pub fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Node> {
    let mut out = BTreeMap::new();
    fn rec(root: &Path, rel: &Path, out: &mut BTreeMap<PathBuf, Node>) {
        for e in fs::read_dir(root.join(rel)).unwrap() {
            let e = e.unwrap();
            let r = rel.join(e.file_name());
            let p = root.join(&r);
            let m = fs::symlink_metadata(&p).unwrap();
            let node = if m.file_type().is_symlink() {
                Node::Link(fs::read_link(&p).unwrap())
            } else if m.is_dir() {
                rec(root, &r, out);
                Node::Dir { mode: m.mode() & 0o7777 }
            } else if m.is_file() {
                Node::File { mode: m.mode() & 0o7777, data: fs::read(&p).unwrap() }
            } else {
                Node::Other
            };
            out.insert(r, node);
        }
    }
    rec(dir, Path::new(""), &mut out);
    out
}

/// Names in `dir`, sorted.
pub fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> =
        fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    v.sort();
    v
}

/// A sandbox: `outer/base/runtime` with a marker file, plus a separate
/// directory for manifests and tarballs.
pub struct Sandbox {
    pub outer: tempfile::TempDir,
    pub work: tempfile::TempDir,
}

impl Sandbox {
    pub fn new() -> Sandbox {
        let outer = tempfile::tempdir().unwrap();
        let rt = outer.path().join("base/runtime");
        fs::create_dir_all(rt.join("old-sub")).unwrap();
        fs::write(rt.join("marker"), b"previous runtime").unwrap();
        fs::write(rt.join("old-sub/tool"), b"#!/bin/sh\n").unwrap();
        fs::set_permissions(rt.join("old-sub/tool"), fs::Permissions::from_mode(0o755)).unwrap();
        Sandbox { outer, work: tempfile::tempdir().unwrap() }
    }
    pub fn base(&self) -> PathBuf {
        self.outer.path().join("base")
    }
    pub fn runtime(&self) -> PathBuf {
        self.base().join("runtime")
    }
}

/// Builds a .tar.gz from raw headers, bypassing the tar crate's path checks.
pub struct RawTar {
    builder: tar::Builder<flate2::write::GzEncoder<Vec<u8>>>,
}

impl RawTar {
    pub fn new() -> RawTar {
        RawTar { builder: tar::Builder::new(flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast())) }
    }

    fn header(name: &str, kind: tar::EntryType, size: u64, link: Option<&str>) -> tar::Header {
        let mut h = tar::Header::new_ustar();
        {
            let old = h.as_old_mut();
            assert!(name.len() < old.name.len());
            old.name[..name.len()].copy_from_slice(name.as_bytes());
            if let Some(l) = link {
                old.linkname[..l.len()].copy_from_slice(l.as_bytes());
            }
        }
        h.set_entry_type(kind);
        h.set_size(size);
        h.set_mode(0o644);
        h.set_mtime(0);
        h.set_cksum();
        h
    }

    pub fn file(mut self, name: &str, data: &[u8]) -> RawTar {
        let h = Self::header(name, tar::EntryType::Regular, data.len() as u64, None);
        self.builder.append(&h, data).unwrap();
        self
    }
    pub fn dir(mut self, name: &str) -> RawTar {
        let h = Self::header(name, tar::EntryType::Directory, 0, None);
        self.builder.append(&h, std::io::empty()).unwrap();
        self
    }
    pub fn symlink(mut self, name: &str, target: &str) -> RawTar {
        let h = Self::header(name, tar::EntryType::Symlink, 0, Some(target));
        self.builder.append(&h, std::io::empty()).unwrap();
        self
    }
    pub fn hardlink(mut self, name: &str, target: &str) -> RawTar {
        let h = Self::header(name, tar::EntryType::Link, 0, Some(target));
        self.builder.append(&h, std::io::empty()).unwrap();
        self
    }
    pub fn special(mut self, name: &str, kind: tar::EntryType) -> RawTar {
        let mut h = Self::header(name, kind, 0, None);
        h.set_device_major(1).ok();
        h.set_device_minor(3).ok();
        h.set_cksum();
        self.builder.append(&h, std::io::empty()).unwrap();
        self
    }
    pub fn finish(self) -> Vec<u8> {
        self.builder.into_inner().unwrap().finish().unwrap()
    }
}
