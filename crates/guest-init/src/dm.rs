//! Minimal device-mapper client using the raw ioctls on `/dev/mapper/control`.
//!
//! Layout follows `include/uapi/linux/dm-ioctl.h` (interface version 4). Only what
//! the init needs: create a device, load a one-target table, resume it.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

pub const DM_NAME_LEN: usize = 128;
#[allow(dead_code)]
pub const DM_UUID_LEN: usize = 129;
/// `sizeof(struct dm_ioctl)`.
pub const DM_IOCTL_SIZE: usize = 312;
/// `sizeof(struct dm_target_spec)`.
pub const DM_TARGET_SPEC_SIZE: usize = 40;

const DM_IOCTL_TYPE: u64 = 0xfd;
pub const DM_DEV_CREATE_CMD: u64 = 3;
pub const DM_DEV_SUSPEND_CMD: u64 = 6;
pub const DM_TABLE_LOAD_CMD: u64 = 9;

// Offsets inside struct dm_ioctl.
const OFF_VERSION: usize = 0;
const OFF_DATA_SIZE: usize = 12;
const OFF_DATA_START: usize = 16;
const OFF_TARGET_COUNT: usize = 20;
const OFF_FLAGS: usize = 28;
const OFF_DEV: usize = 40;
const OFF_NAME: usize = 48;
const OFF_UUID: usize = OFF_NAME + DM_NAME_LEN; // 176, DM_UUID_LEN bytes

/// `_IOWR(DM_IOCTL, cmd, struct dm_ioctl)`.
pub const fn ioctl_nr(cmd: u64) -> u64 {
    (3u64 << 30) | ((DM_IOCTL_SIZE as u64) << 16) | (DM_IOCTL_TYPE << 8) | cmd
}

/// One line of a device-mapper table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub start: u64,
    pub length: u64,
    pub target_type: String,
    pub params: String,
}

/// The snapshot table the init uses: `0 SECTORS snapshot BASE COW P 8`.
pub fn snapshot_target(sectors: u64, base: &str, cow: &str) -> Target {
    Target { start: 0, length: sectors, target_type: "snapshot".into(), params: format!("{base} {cow} P 8") }
}

/// Build an ioctl buffer: header followed by `payload` (already 8-aligned).
pub fn encode_header(name: &str, flags: u32, target_count: u32, payload: &[u8]) -> io::Result<Vec<u8>> {
    if name.is_empty() || name.len() >= DM_NAME_LEN {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "bad dm device name length"));
    }
    // Room for the kernel's reply (it writes status/deps into the data area).
    let total = (DM_IOCTL_SIZE + payload.len()).max(16 * 1024);
    let mut buf = vec![0u8; total];
    put_u32(&mut buf, OFF_VERSION, 4);
    put_u32(&mut buf, OFF_VERSION + 4, 0);
    put_u32(&mut buf, OFF_VERSION + 8, 0);
    put_u32(&mut buf, OFF_DATA_SIZE, total as u32);
    put_u32(&mut buf, OFF_DATA_START, DM_IOCTL_SIZE as u32);
    put_u32(&mut buf, OFF_TARGET_COUNT, target_count);
    put_u32(&mut buf, OFF_FLAGS, flags);
    buf[OFF_NAME..OFF_NAME + name.len()].copy_from_slice(name.as_bytes());
    let _ = OFF_UUID;
    buf[DM_IOCTL_SIZE..DM_IOCTL_SIZE + payload.len()].copy_from_slice(payload);
    Ok(buf)
}

/// Encode target specs (struct dm_target_spec + NUL-terminated params, 8-aligned,
/// `next` = offset from this spec to the following one).
pub fn encode_targets(targets: &[Target]) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    for t in targets {
        if t.target_type.is_empty() || t.target_type.len() >= 16 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "bad dm target type"));
        }
        let start = out.len();
        let mut rec_len = DM_TARGET_SPEC_SIZE + t.params.len() + 1;
        rec_len = (rec_len + 7) & !7;
        out.resize(start + rec_len, 0);
        out[start..start + 8].copy_from_slice(&t.start.to_ne_bytes());
        out[start + 8..start + 16].copy_from_slice(&t.length.to_ne_bytes());
        // status (i32) stays 0
        out[start + 20..start + 24].copy_from_slice(&(rec_len as u32).to_ne_bytes());
        out[start + 24..start + 24 + t.target_type.len()].copy_from_slice(t.target_type.as_bytes());
        let p = start + DM_TARGET_SPEC_SIZE;
        out[p..p + t.params.len()].copy_from_slice(t.params.as_bytes());
    }
    Ok(out)
}

fn put_u32(buf: &mut [u8], off: usize, v: u32) {
    buf[off..off + 4].copy_from_slice(&v.to_ne_bytes());
}

/// Read the `dev` field (kernel huge_encode_dev, compatible with glibc dev_t).
pub fn decode_dev(buf: &[u8]) -> u64 {
    u64::from_ne_bytes(buf[OFF_DEV..OFF_DEV + 8].try_into().unwrap())
}

fn dm_ioctl(ctl: &File, cmd: u64, buf: &mut [u8]) -> io::Result<()> {
    // SAFETY: buf is at least DM_IOCTL_SIZE bytes and data_size says how big it is.
    let r = unsafe { libc::ioctl(ctl.as_raw_fd(), ioctl_nr(cmd) as _, buf.as_mut_ptr()) };
    if r < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

/// Create `name`, load `targets`, resume it. Returns the device number.
pub fn create_device(name: &str, targets: &[Target]) -> io::Result<u64> {
    let ctl = File::options().read(true).write(true).open("/dev/mapper/control")?;
    let mut b = encode_header(name, 0, 0, &[])?;
    dm_ioctl(&ctl, DM_DEV_CREATE_CMD, &mut b).map_err(|e| ctx(e, "DM_DEV_CREATE"))?;
    let dev = decode_dev(&b);
    let payload = encode_targets(targets)?;
    let mut b = encode_header(name, 0, targets.len() as u32, &payload)?;
    dm_ioctl(&ctl, DM_TABLE_LOAD_CMD, &mut b).map_err(|e| ctx(e, "DM_TABLE_LOAD"))?;
    let mut b = encode_header(name, 0, 0, &[])?;
    dm_ioctl(&ctl, DM_DEV_SUSPEND_CMD, &mut b).map_err(|e| ctx(e, "DM_DEV_SUSPEND (resume)"))?;
    Ok(dev)
}

fn ctx(e: io::Error, what: &str) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_matches_kernel_header() {
        // Values computed from include/uapi/linux/dm-ioctl.h on x86_64.
        assert_eq!(DM_IOCTL_SIZE, 4 * 3 + 4 * 7 + 8 + 128 + 129 + 7);
        assert_eq!(OFF_UUID, 176);
        assert_eq!(OFF_UUID + DM_UUID_LEN + 7, DM_IOCTL_SIZE);
        assert_eq!(ioctl_nr(DM_DEV_CREATE_CMD), 0xC138_FD03);
        assert_eq!(ioctl_nr(DM_TABLE_LOAD_CMD), 0xC138_FD09);
        assert_eq!(ioctl_nr(DM_DEV_SUSPEND_CMD), 0xC138_FD06);
    }

    #[test]
    fn header_fields() {
        let b = encode_header("root", 0, 1, &[1, 2, 3, 4, 5, 6, 7, 8]).unwrap();
        assert_eq!(u32::from_ne_bytes(b[0..4].try_into().unwrap()), 4);
        assert_eq!(u32::from_ne_bytes(b[12..16].try_into().unwrap()) as usize, b.len());
        assert_eq!(u32::from_ne_bytes(b[16..20].try_into().unwrap()), 312);
        assert_eq!(u32::from_ne_bytes(b[20..24].try_into().unwrap()), 1);
        assert_eq!(&b[48..52], b"root");
        assert_eq!(b[52], 0);
        assert_eq!(&b[312..320], &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert!(encode_header("", 0, 0, &[]).is_err());
        assert!(encode_header(&"x".repeat(128), 0, 0, &[]).is_err());
    }

    #[test]
    fn target_encoding() {
        let t = snapshot_target(8388608, "/dev/vda", "/dev/vdb");
        assert_eq!(t.params, "/dev/vda /dev/vdb P 8");
        let enc = encode_targets(&[t.clone(), t]).unwrap();
        // 40 + 21 + 1 = 62 -> 64
        assert_eq!(enc.len(), 128);
        assert_eq!(u64::from_ne_bytes(enc[0..8].try_into().unwrap()), 0);
        assert_eq!(u64::from_ne_bytes(enc[8..16].try_into().unwrap()), 8388608);
        assert_eq!(u32::from_ne_bytes(enc[20..24].try_into().unwrap()), 64);
        assert_eq!(&enc[24..32], b"snapshot");
        assert_eq!(enc[32], 0);
        assert_eq!(&enc[40..61], b"/dev/vda /dev/vdb P 8");
        assert_eq!(enc[61], 0);
        assert_eq!(&enc[64 + 24..64 + 32], b"snapshot");
    }
}
