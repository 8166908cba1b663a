//! Property tests of what users hand the daemon: names, signals, sizes and request bodies. No
//! input panics; nothing accepted can leave the state directory or reach a shell (names are the
//! only user text that becomes paths and arguments, and only DNS labels get through).

use super::build::validate_image_name;
use super::layout::Layout;
use super::names;
use super::stop::parse_signal;
use proptest::prelude::*;
use std::path::{Component, Path};

/// `p` is exactly `parent/<one plain component>`.
fn one_level_below(p: &Path, parent: &Path) -> bool {
    p.parent() == Some(parent) && matches!(p.components().next_back(), Some(Component::Normal(_)))
}

/// Strings that are often (not always) DNS labels, and anything at all.
fn name_like() -> impl Strategy<Value = String> {
    prop_oneof!["[a-z0-9-]{1,70}", "[a-z0-9./ $;-]{0,20}", ".{0,80}"]
}

// Each property is a function run by a test below, which records its row of the reliability
// report once the whole property held.
proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    fn accepted_vm_names_are_dns_labels_and_stay_in_their_directories(name in name_like()) {
        let layout = Layout::new(Path::new("/state"), Path::new("/run"));
        if names::validate(&name).is_ok() {
            prop_assert!(name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'));
            prop_assert!(!name.starts_with('-') && name.len() <= 63);
            let p = layout.vm(&name);
            prop_assert!(one_level_below(&p.dir, Path::new("/state/vms")), "{:?}", p.dir);
            prop_assert!(one_level_below(&p.run_dir, Path::new("/run/vms")), "{:?}", p.run_dir);
        }
    }

    fn path_like_and_shell_like_names_are_refused(
        name in prop::sample::select(vec!["..", ".", "a/b", "../etc", "a;rm", "$(id)", "a b", "A", "-x", "x-", "ä", "a\n"])
    ) {
        prop_assert!(names::validate(name).is_err());
        prop_assert!(validate_image_name(name).is_err());
    }

    fn accepted_image_names_stay_under_built_images(name in name_like()) {
        let layout = Layout::new(Path::new("/state"), Path::new("/run"));
        if validate_image_name(&name).is_ok() {
            let p = layout.built_images().join(&name);
            prop_assert!(one_level_below(&p, &layout.built_images()), "{:?}", p);
            prop_assert!(name.len() <= 57);
        }
    }

    fn signals_never_panic_and_only_real_ones_pass(s in ".{0,20}", n in any::<i32>()) {
        let _ = parse_signal(&s);
        let by_number = parse_signal(&n.to_string());
        prop_assert_eq!(by_number.is_ok(), nix::sys::signal::Signal::try_from(n).is_ok());
    }

    fn sizes_never_panic_and_units_mean_binary_multiples(s in ".{0,24}", k in 1u64..4096, unit in 0usize..4) {
        let _ = banger_config::size::parse_size(&s);
        let (suffix, shift) = [("K", 10), ("M", 20), ("G", 30), ("T", 40)][unit];
        prop_assert_eq!(banger_config::size::parse_size(&format!("{k}{suffix}")), Ok(k << shift));
    }

    fn request_bodies_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = serde_json::from_slice::<banger_api::request::CreateVm>(&bytes);
        let _ = serde_json::from_slice::<banger_api::request::SetVm>(&bytes);
        let _ = serde_json::from_slice::<banger_api::request::BuildImage>(&bytes);
        let _ = serde_json::from_slice::<banger_api::request::StopVm>(&bytes);
        let _ = serde_json::from_slice::<banger_api::request::KillVm>(&bytes);
    }
}

#[test]
fn accepted_vm_names_are_dns_labels_and_stay_in_their_directories_holds() {
    accepted_vm_names_are_dns_labels_and_stay_in_their_directories();
    banger_testkit::report(
        "Hostile input (property tests)",
        "2000 random VM names (labels, paths, shell text, any Unicode)",
        "accepted only as DNS labels (a-z, 0-9, -; ≤ 63); their directories stay one level under vms/",
    );
}

#[test]
fn path_like_and_shell_like_names_are_refused_holds() {
    path_like_and_shell_like_names_are_refused();
    banger_testkit::report(
        "Hostile input (property tests)",
        "names such as `..`, `a/b`, `$(id)`, `a;rm`, `-x`, `ä`, a newline",
        "refused as VM and image names",
    );
}

#[test]
fn accepted_image_names_stay_under_built_images_holds() {
    accepted_image_names_stay_under_built_images();
    banger_testkit::report(
        "Hostile input (property tests)",
        "2000 random image names",
        "accepted ones stay one level under built-images/",
    );
}

#[test]
fn signals_never_panic_and_only_real_ones_pass_holds() {
    signals_never_panic_and_only_real_ones_pass();
    banger_testkit::report(
        "Hostile input (property tests)",
        "2000 random signal names and numbers",
        "no panic; a number passes only if it is a real signal",
    );
}

#[test]
fn sizes_never_panic_and_units_mean_binary_multiples_holds() {
    sizes_never_panic_and_units_mean_binary_multiples();
    banger_testkit::report(
        "Hostile input (property tests)",
        "2000 random size strings",
        "no panic; K/M/G/T are binary multiples",
    );
}

#[test]
fn request_bodies_never_panic_holds() {
    request_bodies_never_panic();
    banger_testkit::report(
        "Hostile input (property tests)",
        "2000 random request bodies (0–512 bytes) for create/set/build/stop/kill",
        "decoding never panics",
    );
}
