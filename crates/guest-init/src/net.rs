//! Apply a static `ip=` configuration with classic ioctls (no netlink, no NSS).

use crate::cmdline::IpConfig;
use std::io;
use std::net::Ipv4Addr;

#[repr(C)]
struct IfReqAddr {
    name: [u8; 16],
    addr: libc::sockaddr_in,
    _pad: [u8; 8],
}

#[repr(C)]
struct IfReqFlags {
    name: [u8; 16],
    flags: libc::c_short,
    _pad: [u8; 22],
}

#[repr(C)]
struct RtEntry {
    rt_pad1: libc::c_ulong,
    rt_dst: libc::sockaddr_in,
    rt_gateway: libc::sockaddr_in,
    rt_genmask: libc::sockaddr_in,
    rt_flags: libc::c_ushort,
    rt_pad2: libc::c_short,
    rt_pad3: libc::c_ulong,
    rt_pad4: *mut libc::c_void,
    rt_metric: libc::c_short,
    rt_dev: *mut libc::c_char,
    rt_mtu: libc::c_ulong,
    rt_window: libc::c_ulong,
    rt_irtt: libc::c_ushort,
}

fn sin(a: Ipv4Addr) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr { s_addr: u32::from_ne_bytes(a.octets()) },
        sin_zero: [0; 8],
    }
}

fn ifname(dev: &str) -> io::Result<[u8; 16]> {
    let mut n = [0u8; 16];
    if dev.is_empty() || dev.len() > 15 {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "bad interface name"));
    }
    n[..dev.len()].copy_from_slice(dev.as_bytes());
    Ok(n)
}

fn ioctl<T>(fd: i32, req: libc::c_ulong, arg: &mut T, what: &str) -> io::Result<()> {
    // SAFETY: arg points to a properly laid out request struct for `req`.
    let r = unsafe { libc::ioctl(fd, req as _, arg as *mut T) };
    if r < 0 {
        let e = io::Error::last_os_error();
        Err(io::Error::new(e.kind(), format!("{what}: {e}")))
    } else {
        Ok(())
    }
}

fn up(fd: i32, dev: &str) -> io::Result<()> {
    let mut fl = IfReqFlags { name: ifname(dev)?, flags: 0, _pad: [0; 22] };
    ioctl(fd, libc::SIOCGIFFLAGS, &mut fl, "SIOCGIFFLAGS")?;
    fl.flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
    ioctl(fd, libc::SIOCSIFFLAGS, &mut fl, "SIOCSIFFLAGS")
}

/// Bring up `lo` and the configured device with address, netmask and default route.
pub fn apply(ip: &IpConfig) -> io::Result<()> {
    let bad = |f: &str| io::Error::new(io::ErrorKind::InvalidInput, format!("bad {f} in ip="));
    let client: Ipv4Addr = ip.client.parse().map_err(|_| bad("client address"))?;
    let mask: Ipv4Addr = if ip.netmask.is_empty() {
        Ipv4Addr::new(255, 255, 255, 0)
    } else {
        ip.netmask.parse().map_err(|_| bad("netmask"))?
    };
    // SAFETY: plain socket call.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let res = (|| {
        let _ = up(fd, "lo");
        let mut a = IfReqAddr { name: ifname(&ip.device)?, addr: sin(client), _pad: [0; 8] };
        ioctl(fd, libc::SIOCSIFADDR, &mut a, "SIOCSIFADDR")?;
        let mut m = IfReqAddr { name: ifname(&ip.device)?, addr: sin(mask), _pad: [0; 8] };
        ioctl(fd, libc::SIOCSIFNETMASK, &mut m, "SIOCSIFNETMASK")?;
        up(fd, &ip.device)?;
        if !ip.gateway.is_empty() {
            let gw: Ipv4Addr = ip.gateway.parse().map_err(|_| bad("gateway"))?;
            let mut dev = ifname(&ip.device)?;
            let mut rt = RtEntry {
                rt_pad1: 0,
                rt_dst: sin(Ipv4Addr::UNSPECIFIED),
                rt_gateway: sin(gw),
                rt_genmask: sin(Ipv4Addr::UNSPECIFIED),
                rt_flags: (libc::RTF_UP | libc::RTF_GATEWAY) as libc::c_ushort,
                rt_pad2: 0,
                rt_pad3: 0,
                rt_pad4: std::ptr::null_mut(),
                rt_metric: 0,
                rt_dev: dev.as_mut_ptr() as *mut libc::c_char,
                rt_mtu: 0,
                rt_window: 0,
                rt_irtt: 0,
            };
            match ioctl(fd, libc::SIOCADDRT, &mut rt, "SIOCADDRT") {
                Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
                r => r?,
            }
        }
        Ok(())
    })();
    // SAFETY: fd is ours.
    unsafe { libc::close(fd) };
    res
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn struct_sizes() {
        assert_eq!(std::mem::size_of::<IfReqAddr>(), 40);
        assert_eq!(std::mem::size_of::<IfReqFlags>(), 40);
        assert_eq!(std::mem::size_of::<RtEntry>(), 120);
    }
}
