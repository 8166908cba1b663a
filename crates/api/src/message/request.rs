//! Request bodies sent by the CLI.
//!
//! Every body refuses fields it does not know (`deny_unknown_fields`): a CLI newer than the
//! daemon that asks for something the daemon cannot do gets an error, not a request quietly done
//! without it. So that an older daemon still accepts what a newer CLI sends when no new feature is
//! used, an optional field is left out of the JSON at its default (`None`, `false`, empty) and
//! read back as that default when absent. A field added later must be optional in this way.

use serde::{Deserialize, Serialize};

fn is_false(b: &bool) -> bool {
    !*b
}

/// `POST /v1/daemon/shutdown`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Shutdown {}

/// `POST /v1/vms`. Unset fields take the config defaults.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CreateVm {
    /// A DNS label; generated (`adjective-animal`) when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `base`, `default`, or a path to an ext4 image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mib: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vcpus: Option<u32>,
    /// Work disk size in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_size: Option<u64>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub nat: bool,
    /// Register and create disks, but do not boot.
    #[serde(default, skip_serializing_if = "is_false")]
    pub no_start: bool,
    /// Host ports forwarded to the guest whenever it runs (`--publish`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub publish: Vec<crate::PortSpec>,
    /// Host directories mounted in the guest at every boot (`--mount`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mounts: Vec<crate::MountSpec>,
}

/// `POST /v1/vms/{name}/stop` and `/restart`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct StopVm {
    /// Seconds to wait for a clean shutdown before the VMM is killed.
    pub timeout_secs: u64,
}

impl Default for StopVm {
    fn default() -> Self {
        StopVm { timeout_secs: 30 }
    }
}

/// `POST /v1/vms/{name}/kill`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct KillVm {
    /// Signal name (`KILL`, `SIGTERM`, `9`…).
    pub signal: String,
}

/// `PATCH /v1/vms/{name}`: change a VM's settings. Memory, vCPUs and disk size only while it is
/// not running; NAT and published ports at any time (at once on a running VM); host folders
/// while it is stopped. Unset fields stay as they are.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SetVm {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mib: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vcpus: Option<u32>,
    /// New work disk size in bytes; it only grows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_size: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nat: Option<bool>,
    /// Forwards to add (at once on a running VM).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub publish: Vec<crate::PortSpec>,
    /// Forwards to remove, each named as `[HOSTIP:]HOSTPORT[/PROTO]` or by its whole spec.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unpublish: Vec<String>,
    /// Host folders to add (while stopped).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mounts: Vec<crate::MountSpec>,
    /// Host folders to remove, named by their guest directory (while stopped).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unmount: Vec<std::path::PathBuf>,
}

/// `POST /v1/vms/{name}/forward`: forward host ports to a running VM for as long as the
/// response stream is read (`vm port-forward`). A progress line names the bound host addresses;
/// the stream ends with an error when the VM stops.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ForwardPorts {
    pub ports: Vec<crate::PortSpec>,
}

impl SetVm {
    pub fn is_empty(&self) -> bool {
        self == &SetVm::default()
    }
}

/// `POST /v1/images`: build an image (a progress stream; the script's output comes as `output`
/// progress lines). Paths are the host's: the daemon runs as the same user and reads them.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct BuildImage {
    /// A DNS label, not `default` or `base`, not taken.
    pub name: String,
    /// The image to build on (any `image list` name or a path); default `base`, or `default`
    /// when the bundle has no base image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<String>,
    /// The customize script (an absolute path), copied into the builder and run there as root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub script: Option<std::path::PathBuf>,
    /// A package list (packages.apt format: one name a line, `#` comments).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub packages: Option<String>,
    /// Local .deb files (absolute paths) installed with the packages.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub debs: Vec<std::path::PathBuf>,
    /// Install and enable Docker.
    #[serde(default, skip_serializing_if = "is_false")]
    pub docker: bool,
    /// Grow the result to this many bytes (it never shrinks below the base's size).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// NAT for the builder, so the script may use the network directly (packages still come
    /// from the host's repository).
    #[serde(default, skip_serializing_if = "is_false")]
    pub nat: bool,
    /// Before the image is taken, stop and wait: the progress stream sends a `shell` line naming
    /// the builder VM, the client opens a shell in it, then answers with
    /// [`ContinueBuild`] on [`crate::routes::IMAGE_CONTINUE`].
    #[serde(default, skip_serializing_if = "is_false")]
    pub interactive: bool,
}

/// `POST /v1/images/{name}/continue`: an interactive build's shell ended; take the image
/// (`finish`) or abandon the build.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ContinueBuild {
    pub finish: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::de::DeserializeOwned;

    fn json<T: Serialize>(v: &T) -> String {
        serde_json::to_string(v).unwrap()
    }

    /// The serde message a daemon answers a body with a field it does not know.
    fn refusal<T: DeserializeOwned + std::fmt::Debug>(body: &str) -> String {
        serde_json::from_str::<T>(body).unwrap_err().to_string()
    }

    #[test]
    fn a_request_using_no_optional_feature_sends_only_its_required_fields() {
        assert_eq!(json(&CreateVm::default()), "{}");
        assert_eq!(json(&SetVm::default()), "{}");
        assert_eq!(json(&Shutdown::default()), "{}");
        assert_eq!(json(&BuildImage { name: "web".into(), ..Default::default() }), r#"{"name":"web"}"#);
        // Required fields are always there, whatever their value.
        assert_eq!(json(&StopVm::default()), r#"{"timeout_secs":30}"#);
        assert_eq!(json(&ContinueBuild { finish: false }), r#"{"finish":false}"#);
        assert_eq!(json(&KillVm { signal: "KILL".into() }), r#"{"signal":"KILL"}"#);
    }

    #[test]
    fn set_fields_are_sent_and_read_back_unchanged() {
        let create = CreateVm {
            name: Some("calm-otter".into()),
            image: Some("base".into()),
            memory_mib: Some(1024),
            vcpus: Some(2),
            disk_size: Some(8 << 30),
            nat: true,
            no_start: true,
            publish: vec!["8080:80".parse().unwrap()],
            mounts: vec!["/src:/work:ro".parse().unwrap()],
        };
        assert_eq!(
            json(&create),
            r#"{"name":"calm-otter","image":"base","memory_mib":1024,"vcpus":2,"disk_size":8589934592,"nat":true,"no_start":true,"publish":["127.0.0.1:8080:80/tcp"],"mounts":["/src:/work:ro"]}"#
        );
        assert_eq!(serde_json::from_str::<CreateVm>(&json(&create)).unwrap(), create);
        // `nat: false` is a change in `vm set`, so it is sent.
        let set = SetVm { nat: Some(false), ..Default::default() };
        assert_eq!(json(&set), r#"{"nat":false}"#);
        assert_eq!(serde_json::from_str::<SetVm>(&json(&set)).unwrap(), set);
        let build = BuildImage {
            name: "web".into(),
            base: Some("base".into()),
            script: Some("/tmp/s.sh".into()),
            packages: Some("curl\n".into()),
            debs: vec!["/tmp/a.deb".into()],
            docker: true,
            size: Some(1 << 30),
            nat: true,
            interactive: true,
        };
        assert_eq!(
            json(&build),
            r#"{"name":"web","base":"base","script":"/tmp/s.sh","packages":"curl\n","debs":["/tmp/a.deb"],"docker":true,"size":1073741824,"nat":true,"interactive":true}"#
        );
        assert_eq!(serde_json::from_str::<BuildImage>(&json(&build)).unwrap(), build);
    }

    #[test]
    fn bodies_of_older_clients_are_still_read() {
        // Explicit nulls and `false`s, as clients before the fields were left out sent them.
        let old = r#"{"name":null,"image":null,"memory_mib":null,"vcpus":null,"disk_size":null,"nat":false,"no_start":false}"#;
        assert_eq!(serde_json::from_str::<CreateVm>(old).unwrap(), CreateVm::default());
        let old = r#"{"memory_mib":null,"vcpus":null,"disk_size":null,"nat":null}"#;
        assert_eq!(serde_json::from_str::<SetVm>(old).unwrap(), SetVm::default());
        let old = r#"{"name":"web","base":null,"script":null,"packages":null,"debs":[],"docker":false,"size":null,"nat":false,"interactive":false}"#;
        assert_eq!(serde_json::from_str::<BuildImage>(old).unwrap().name, "web");
    }

    #[test]
    fn every_request_refuses_a_field_it_does_not_know() {
        let unknown = "unknown field `from_the_future`";
        for message in [
            refusal::<Shutdown>(r#"{"from_the_future":1}"#),
            refusal::<CreateVm>(r#"{"nat":true,"from_the_future":true}"#),
            refusal::<StopVm>(r#"{"timeout_secs":3,"from_the_future":true}"#),
            refusal::<KillVm>(r#"{"signal":"KILL","from_the_future":true}"#),
            refusal::<SetVm>(r#"{"from_the_future":true}"#),
            refusal::<BuildImage>(r#"{"name":"web","from_the_future":true}"#),
            refusal::<ContinueBuild>(r#"{"finish":true,"from_the_future":true}"#),
        ] {
            assert!(message.starts_with(unknown), "{message}");
        }
        banger_testkit::report(
            "Version skew",
            "a request body with a field the daemon's types do not know, for each of the 7 request types",
            "refused by serde with `unknown field` naming the field (the daemon turns it into a 400)",
        );
    }
}
