//! Sample VMs, images and figures for the TUI's tests.
#![allow(dead_code)]

use banger_api::response::{DiskInfo, GuestStats, Image, Phase, ProcessStats, SshInfo, Vm, VmStats};
use banger_tui::app::{App, Effect, Msg};
use ratatui::crossterm::event::{KeyCode, KeyEvent};
use std::path::PathBuf;

pub const NOW: u64 = 1_796_000_000;

pub fn vm(name: &str, state: Phase, ip: &str) -> Vm {
    let running = state == Phase::Running;
    Vm {
        name: name.into(),
        state,
        image: "default".into(),
        memory_mib: 1024,
        vcpus: 2,
        disk_size: 8 << 30,
        nat: false,
        ip: ip.into(),
        host_ip: "172.30.0.1".into(),
        mac: "02:42:ac:1e:00:02".into(),
        tap: "bgr1234-0".into(),
        backend: running.then(|| "qemu-tcg".into()),
        accel: running.then(|| "tcg".into()),
        pid: running.then_some(4242),
        created_at: NOW - 7200,
        started_at: running.then_some(NOW - 3725),
        uptime_secs: running.then_some(3725),
        disks: vec![
            DiskInfo { role: "base".into(), path: "/b".into(), size: 4 << 30, allocated: 300 << 20, read_only: true },
            DiskInfo { role: "overlay".into(), path: "/o".into(), size: 4 << 30, allocated: 5 << 20, read_only: false },
            DiskInfo { role: "work".into(), path: "/w".into(), size: 8 << 30, allocated: 140 << 20, read_only: false },
        ],
        dir: PathBuf::from("/state/vms").join(name),
        console_log: PathBuf::from("/state/vms").join(name).join("console.log"),
        ssh: SshInfo {
            user: "root".into(),
            host: ip.into(),
            port: 22,
            key: "/state/ssh/id_ed25519".into(),
            known_hosts: "/kh".into(),
            host_key_alias: format!("banger-{name}"),
            pinned: running,
        },
        last_error: None,
        process: running.then_some(ProcessStats { pid: 4242, cpu_percent: Some(12.5), rss_bytes: 310 << 20 }),
        ports: vec![],
        mounts: vec![],
        jailed: None,
        jail: None,
    }
}

pub fn image(name: &str, kind: &str, base: Option<&str>, vms: &[&str]) -> Image {
    Image {
        name: name.into(),
        kind: kind.into(),
        path: format!("/images/{name}.ext4").into(),
        present: true,
        size: 4 << 30,
        allocated: 306 << 20,
        base: base.map(String::from),
        kernel: None,
        packages_sha256: None,
        script: None,
        script_sha256: None,
        docker: false,
        build_log: None,
        created_at: (kind == "built").then_some(NOW - 90_000),
        vms: vms.iter().map(|s| s.to_string()).collect(),
    }
}

pub fn stats(cpu: f64, mem_used: u64) -> VmStats {
    VmStats {
        name: "calm-otter".into(),
        state: Phase::Running,
        time: NOW as f64,
        vcpus: 2,
        memory_mib: 1024,
        uptime_secs: Some(3725),
        process: Some(ProcessStats { pid: 4242, cpu_percent: Some(cpu), rss_bytes: 310 << 20 }),
        guest: Some(GuestStats {
            sampled_at: NOW as f64,
            mem_total: 1000 << 20,
            mem_available: (1000 << 20) - mem_used,
            mem_used,
            load: [0.42, 0.3, 0.1],
            uptime_secs: 3720.0,
            filesystems: vec![],
        }),
        guest_error: None,
        network: None,
        disks: vec![],
        vmm_io: None,
    }
}

pub fn key(app: &mut App, code: KeyCode) -> Vec<Effect> {
    app.update(Msg::Key(KeyEvent::from(code)))
}

pub fn typed(app: &mut App, text: &str) {
    for c in text.chars() {
        key(app, KeyCode::Char(c));
    }
}
