//! Extract the ELF `vmlinux` from an x86 bzImage.

use crate::{Error, Result};
use std::io::Read;

const LZ4_LEGACY: &[u8] = &[0x02, 0x21, 0x4c, 0x18];
const GZIP: &[u8] = &[0x1f, 0x8b, 0x08];
const XZ: &[u8] = &[0xfd, b'7', b'z', b'X', b'Z', 0x00];
const ZSTD: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];
/// Legacy LZ4 frames use at most 8 MiB per block.
const LZ4_LEGACY_BLOCK: usize = 8 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Codec {
    Lz4Legacy,
    Gzip,
    Xz,
    Zstd,
}

fn find(h: &[u8], n: &[u8], from: usize) -> Option<usize> {
    if from >= h.len() {
        return None;
    }
    h[from..].windows(n.len()).position(|w| w == n).map(|p| p + from)
}

/// Decompress an LZ4 "legacy" stream (magic, then [u32 LE size][block]...) as the kernel does:
/// stop at the end of input or at a size word that cannot be a block (e.g. the appended length).
fn lz4_legacy(data: &[u8]) -> std::result::Result<Vec<u8>, String> {
    let mut pos = LZ4_LEGACY.len();
    let mut out = Vec::new();
    let mut buf = vec![0u8; LZ4_LEGACY_BLOCK];
    while pos + 4 <= data.len() {
        let size = u32::from_le_bytes(data[pos..pos + 4].try_into().unwrap()) as usize;
        if size == u32::from_le_bytes(LZ4_LEGACY.try_into().unwrap()) as usize {
            pos += 4; // concatenated stream
            continue;
        }
        if size == 0 || pos + 4 + size > data.len() {
            break;
        }
        let n = lz4_flex::block::decompress_into(&data[pos + 4..pos + 4 + size], &mut buf)
            .map_err(|e| format!("lz4 block at offset {pos}: {e}"))?;
        out.extend_from_slice(&buf[..n]);
        pos += 4 + size;
    }
    Ok(out)
}

/// Length of the xz stream starting at `data[0]`: the first 4-aligned stream footer whose CRC32
/// and flags check out.
fn xz_stream_len(data: &[u8]) -> Option<usize> {
    let flags = data.get(6..8)?;
    let mut i = 12 + 12;
    while i + 2 <= data.len() {
        if &data[i..i + 2] == b"YZ" && (i + 2) % 4 == 0 {
            let f = &data[i - 10..i + 2];
            let mut crc = flate2::Crc::new();
            crc.update(&f[4..10]);
            if &f[8..10] == flags && crc.sum() == u32::from_le_bytes(f[0..4].try_into().unwrap()) {
                return Some(i + 2);
            }
        }
        i += 2;
    }
    None
}

fn decompress(codec: Codec, data: &[u8]) -> std::result::Result<Vec<u8>, String> {
    let mut out = Vec::new();
    match codec {
        Codec::Lz4Legacy => return lz4_legacy(data),
        Codec::Gzip => {
            flate2::read::GzDecoder::new(data).read_to_end(&mut out).map_err(|e| e.to_string())?;
        }
        Codec::Xz => {
            // lzma-rs rejects trailing bytes (the kernel appends a 4-byte size): cut at the footer.
            let end = xz_stream_len(data).ok_or("no valid xz stream footer")?;
            let mut r = std::io::BufReader::new(&data[..end]);
            lzma_rs::xz_decompress(&mut r, &mut out).map_err(|e| e.to_string())?;
        }
        Codec::Zstd => {
            let mut d = ruzstd::decoding::StreamingDecoder::new(data).map_err(|e| e.to_string())?;
            d.read_to_end(&mut out).map_err(|e| e.to_string())?;
        }
    }
    Ok(out)
}

/// Find the compressed kernel inside `bzimage` (LZ4 legacy — Debian's cloud kernel —, gzip, xz or zstd),
/// decompress it and check that the result is an ELF image. When the buffer carries a Linux boot
/// header (`HdrS`), the payload location from that header is tried first; otherwise every
/// compression magic found is tried in file order.
pub fn extract_vmlinux(bzimage: &[u8]) -> Result<Vec<u8>> {
    let mut candidates: Vec<(usize, Codec)> = Vec::new();
    // Boot protocol >= 2.08: setup_sects at 0x1f1, payload_offset at 0x248 (from the protected-mode code start).
    if bzimage.len() > 0x250 && &bzimage[0x202..0x206] == b"HdrS" {
        let setup_sects = match bzimage[0x1f1] {
            0 => 4,
            n => n as usize,
        };
        let off = u32::from_le_bytes(bzimage[0x248..0x24c].try_into().unwrap()) as usize;
        let start = (setup_sects + 1) * 512 + off;
        if let Some(head) = bzimage.get(start..start + 6) {
            for (m, c) in [(LZ4_LEGACY, Codec::Lz4Legacy), (GZIP, Codec::Gzip), (XZ, Codec::Xz), (ZSTD, Codec::Zstd)] {
                if head.starts_with(m) {
                    candidates.push((start, c));
                }
            }
        }
    }
    let mut scanned: Vec<(usize, Codec)> = Vec::new();
    for (m, c) in [(LZ4_LEGACY, Codec::Lz4Legacy), (GZIP, Codec::Gzip), (XZ, Codec::Xz), (ZSTD, Codec::Zstd)] {
        let mut from = 0;
        while let Some(p) = find(bzimage, m, from) {
            scanned.push((p, c));
            from = p + 1;
        }
    }
    scanned.sort_by_key(|(p, _)| *p);
    candidates.extend(scanned);
    if candidates.is_empty() {
        return Err(Error::BadInput("no LZ4/gzip/xz/zstd compressed kernel found in the bzImage".into()));
    }
    let mut last = String::new();
    for (pos, codec) in candidates {
        match decompress(codec, &bzimage[pos..]) {
            Ok(v) if v.starts_with(b"\x7fELF") => return Ok(v),
            Ok(_) => last = format!("{codec:?} data at offset {pos} is not an ELF image"),
            Err(e) => last = format!("{codec:?} at offset {pos}: {e}"),
        }
    }
    Err(Error::BadInput(format!("could not extract an ELF vmlinux from the bzImage ({last})")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn fake_elf() -> Vec<u8> {
        let mut v = b"\x7fELF\x02\x01\x01".to_vec();
        for i in 0..300_000u32 {
            v.extend_from_slice(&(i % 251).to_le_bytes()[..1]);
            if i % 7 == 0 {
                v.extend_from_slice(b"kernel text ");
            }
        }
        v
    }

    /// setup header + compressed payload + 4-byte size, like arch/x86/boot/compressed.
    fn fake_bzimage(payload: &[u8], with_header: bool) -> Vec<u8> {
        let mut img = vec![0u8; 5 * 512 + 1000]; // 4 setup sectors + boot sector + decompressor stub
        if with_header {
            img[0x1f1] = 4;
            img[0x202..0x206].copy_from_slice(b"HdrS");
            img[0x248..0x24c].copy_from_slice(&1000u32.to_le_bytes());
        }
        img.extend_from_slice(payload);
        img.extend_from_slice(&(payload.len() as u32 * 3).to_le_bytes());
        img.extend_from_slice(&[0u8; 64]);
        img
    }

    fn lz4_legacy_compress(data: &[u8]) -> Vec<u8> {
        let mut out = LZ4_LEGACY.to_vec();
        for chunk in data.chunks(LZ4_LEGACY_BLOCK) {
            let c = lz4_flex::block::compress(chunk);
            out.extend_from_slice(&(c.len() as u32).to_le_bytes());
            out.extend_from_slice(&c);
        }
        out
    }

    fn check(payload: Vec<u8>) {
        let elf = fake_elf();
        for hdr in [true, false] {
            let got = extract_vmlinux(&fake_bzimage(&payload, hdr)).unwrap();
            assert_eq!(got, elf);
        }
    }

    #[test]
    fn lz4_legacy() {
        check(lz4_legacy_compress(&fake_elf()));
    }

    #[test]
    fn gzip() {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(&fake_elf()).unwrap();
        check(e.finish().unwrap());
    }

    #[test]
    fn xz() {
        let mut out = Vec::new();
        lzma_rs::xz_compress(&mut std::io::Cursor::new(fake_elf()), &mut out).unwrap();
        check(out);
    }

    #[test]
    fn zstd() {
        let out = ruzstd::encoding::compress_to_vec(
            std::io::Cursor::new(fake_elf()),
            ruzstd::encoding::CompressionLevel::Fastest,
        );
        check(out);
    }

    #[test]
    fn rejects_non_elf_and_garbage() {
        assert!(extract_vmlinux(&[0u8; 4096]).is_err());
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(b"not an elf at all").unwrap();
        assert!(extract_vmlinux(&fake_bzimage(&e.finish().unwrap(), true)).is_err());
    }

    #[test]
    fn real_debian_kernel() {
        let dirs = ["/boot", "/work/scratch-image/k/x/boot", "../../runtime"];
        let found = dirs.iter().find_map(|d| {
            std::fs::read_dir(d)
                .ok()?
                .flatten()
                .map(|e| e.path())
                .find(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("vmlinuz")))
        });
        let Some(p) = found else {
            println!("SKIP real_debian_kernel: no vmlinuz* in {dirs:?}");
            return;
        };
        let img = std::fs::read(&p).unwrap();
        let elf = extract_vmlinux(&img).unwrap();
        assert!(elf.starts_with(b"\x7fELF\x02"), "{}", p.display());
        assert!(elf.len() > img.len(), "{}", p.display());
        println!("extracted {} bytes of ELF from {}", elf.len(), p.display());
    }
}
