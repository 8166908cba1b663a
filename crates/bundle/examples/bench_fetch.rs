//! Benchmark: `fetch` versus curl + sha256sum + tar on the same loopback server.
//!
//! ```text
//! cargo run --release -p banger-bundle --example bench_fetch -- [SIZE_MIB, default 512] [ROUNDS, default 3]
//! ```
//!
//! Builds a tree of SIZE_MIB MiB of pseudo-random data (a few files, roughly
//! 6 bits of entropy per byte so gzip has real work to do), packages it with
//! `package`, serves it from a loopback HTTP server inside this process, then
//! alternates rounds of:
//!   (a) `fetch` into a fresh runtime dir;
//!   (b) `curl -s -o F URL && sha256sum F && tar xzf F -C DIR` — the equivalent
//!       of what `fetch` guarantees (verify the checksum *before* unpacking);
//!   (c) `curl -s URL | tee >(sha256sum) | tar xz -C DIR` — the pipelined
//!       variant, shown for reference (it unpacks before knowing the checksum).
//! and prints medians and the ratios. The temp dir is under $BENCH_DIR or $TMPDIR.

use std::fs::{self, File};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use banger_bundle::{Manifest, NoProgress, fetch, package};

fn main() {
    let mut args = std::env::args().skip(1);
    let size_mib: u64 = args.next().map(|s| s.parse().expect("SIZE_MIB")).unwrap_or(512);
    let rounds: usize = args.next().map(|s| s.parse().expect("ROUNDS")).unwrap_or(3);
    let base = std::env::var_os("BENCH_DIR").map(PathBuf::from).unwrap_or_else(std::env::temp_dir);
    let tmp = tempfile::Builder::new().prefix("bench-fetch-").tempdir_in(base).unwrap();
    let root = tmp.path();

    let tree = root.join("tree");
    let t = Instant::now();
    make_tree(&tree, size_mib << 20);
    println!("created {size_mib} MiB tree in {:.2?}", t.elapsed());

    let bundle = root.join("bundle.tar.gz");
    let t = Instant::now();
    let s = package(&tree, &bundle, &NoProgress).unwrap();
    println!(
        "packaged into {} bytes ({:.1} MiB) in {:.2?}, sha256 {}",
        s.bytes,
        s.bytes as f64 / 1048576.0,
        t.elapsed(),
        s.sha256
    );

    let url = serve(bundle.clone());
    let manifest_path = root.join("runtime-bundle.toml");
    fs::write(
        &manifest_path,
        format!(
            "version = \"bench\"\nurl = \"{url}\"\nsha256 = \"{}\"\nfiles = [\"rootfs.ext4\", \"vmlinux\"]\n",
            s.sha256
        ),
    )
    .unwrap();
    let manifest = Manifest::load(&manifest_path).unwrap();

    let rt = root.join("runtime");
    let seq_dir = root.join("seq");
    let pipe_dir = root.join("pipe");
    let seq_file = root.join("seq.tar.gz");
    let (mut a, mut b, mut c) = (Vec::new(), Vec::new(), Vec::new());
    for round in 1..=rounds {
        // (a) fetch
        let _ = fs::remove_dir_all(&rt);
        sync();
        let t = Instant::now();
        fetch(&manifest, &rt, &NoProgress).unwrap();
        a.push(t.elapsed());

        // (b) curl to file, sha256sum, tar xzf
        let _ = fs::remove_dir_all(&seq_dir);
        let _ = fs::remove_file(&seq_file);
        fs::create_dir(&seq_dir).unwrap();
        sync();
        let t = Instant::now();
        let out = Command::new("bash")
            .arg("-c")
            .arg(format!(
                "set -e; curl -sf -o '{f}' '{url}'; echo '{sum}  {f}' | sha256sum -c --quiet -; tar xzf '{f}' -C '{d}'; rm '{f}'",
                f = seq_file.display(),
                sum = s.sha256,
                d = seq_dir.display()
            ))
            .status()
            .unwrap();
        b.push(t.elapsed());
        assert!(out.success(), "baseline (b) failed");

        // (c) pipelined curl | tee >(sha256sum) | tar xz
        let _ = fs::remove_dir_all(&pipe_dir);
        fs::create_dir(&pipe_dir).unwrap();
        sync();
        let t = Instant::now();
        let out = Command::new("bash")
            .arg("-c")
            .arg(format!(
                "set -e -o pipefail; curl -sf '{url}' | tee >(sha256sum > '{d}.sum') | tar xz -C '{d}'; wait",
                d = pipe_dir.display()
            ))
            .status()
            .unwrap();
        c.push(t.elapsed());
        assert!(out.success(), "baseline (c) failed");
        println!(
            "round {round}: fetch {:.3}s | curl+sha256sum+tar xzf {:.3}s | curl|tee|tar xz {:.3}s",
            a[round - 1].as_secs_f64(),
            b[round - 1].as_secs_f64(),
            c[round - 1].as_secs_f64()
        );
    }
    // Same result on disk.
    assert_eq!(fs::read(rt.join("rootfs.ext4")).unwrap().len(), fs::read(seq_dir.join("rootfs.ext4")).unwrap().len());
    let (ma, mb, mc) = (median(&mut a), median(&mut b), median(&mut c));
    println!("median fetch:                               {:.3}s", ma.as_secs_f64());
    println!(
        "median curl -o F + sha256sum -c + tar xzf:  {:.3}s  (equivalent: verifies before unpacking)",
        mb.as_secs_f64()
    );
    println!(
        "median curl | tee >(sha256sum) | tar xz:   {:.3}s  (reference: unpacks before verifying)",
        mc.as_secs_f64()
    );
    println!("ratio fetch / curl+sha256sum+tar (fair baseline): {:.3}", ma.as_secs_f64() / mb.as_secs_f64());
    println!("ratio fetch / pipelined curl|tee|tar:             {:.3}", ma.as_secs_f64() / mc.as_secs_f64());
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn sync() {
    let _ = Command::new("sync").status();
}

/// Writes a few files totalling `total` bytes of ~6-bit-entropy pseudo-random data.
fn make_tree(dir: &Path, total: u64) {
    fs::create_dir_all(dir.join("bin")).unwrap();
    let parts = [
        ("rootfs.ext4", 70u64, false),
        ("vmlinux", 15, false),
        ("initrd.img", 10, false),
        ("bin/firecracker", 5, true),
    ];
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut buf = vec![0u8; 1 << 20];
    for (name, pct, exec) in parts {
        let len = total * pct / 100;
        let p = dir.join(name);
        let mut w = BufWriter::new(File::create(&p).unwrap());
        let mut left = len;
        while left > 0 {
            for chunk in buf.chunks_mut(8) {
                // xorshift64*
                state ^= state >> 12;
                state ^= state << 25;
                state ^= state >> 27;
                let r = state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes();
                for (d, s) in chunk.iter_mut().zip(r) {
                    *d = s & 0x3f;
                }
            }
            let n = left.min(buf.len() as u64) as usize;
            w.write_all(&buf[..n]).unwrap();
            left -= n as u64;
        }
        w.flush().unwrap();
        let mode = if exec { 0o755 } else { 0o644 };
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
    }
}

/// Serves `file` at /bundle.tar.gz on a loopback port; returns the URL.
fn serve(file: PathBuf) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/bundle.tar.gz", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let file = file.clone();
            std::thread::spawn(move || {
                let mut r = BufReader::new(conn.try_clone().unwrap());
                let mut line = String::new();
                loop {
                    line.clear();
                    if r.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                }
                let mut f = File::open(&file).unwrap();
                let len = f.metadata().unwrap().len();
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {len}\r\nContent-Type: application/gzip\r\nConnection: close\r\n\r\n"
                );
                if conn.write_all(head.as_bytes()).is_ok() {
                    let _ = std::io::copy(&mut f, &mut conn); // sendfile on Linux
                }
            });
        }
    });
    url
}
