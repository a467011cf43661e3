//! Media types of a published OS image: the artifact, its config, each
//! output file by kind, and the attestations attached to it.

/// `artifactType` of a kiln OS image manifest.
pub const ARTIFACT_TYPE: &str = "application/vnd.kiln.os-image.v1";
/// The config blob: what was built, from what, by which kiln.
pub const CONFIG: &str = "application/vnd.kiln.os-image.config.v1+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// The empty config of attestation manifests, `{}`.
pub const EMPTY: &str = "application/vnd.oci.empty.v1+json";
pub const DSSE_ENVELOPE: &str = "application/vnd.dsse.envelope.v1+json";
pub const TITLE: &str = "org.opencontainers.image.title";

/// An attestation kiln attaches to a release.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Attestation {
    Sbom,
    Provenance,
    Measurements,
}

impl Attestation {
    pub const ALL: [Attestation; 3] = [
        Attestation::Sbom,
        Attestation::Provenance,
        Attestation::Measurements,
    ];

    /// The referrer manifest's `artifactType`.
    pub fn artifact_type(self) -> &'static str {
        match self {
            Attestation::Sbom => "application/spdx+json",
            Attestation::Provenance => "application/vnd.in-toto+json",
            Attestation::Measurements => "application/vnd.kiln.measurements+json",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Attestation::Sbom => "SBOM",
            Attestation::Provenance => "SLSA provenance",
            Attestation::Measurements => "measurement manifest",
        }
    }
}

/// The media type of an output file, from its name as `kiln build` writes
/// it (`NAME-kernel`, `NAME-initrd.img`, `NAME.iso`, ...).
pub fn of_output(file_name: &str) -> &'static str {
    let suffixes: &[(&str, &str)] = &[
        ("-kernel", "application/vnd.kiln.kernel"),
        ("-initrd.img", "application/vnd.kiln.initrd.cpio+gzip"),
        ("-cmdline", "application/vnd.kiln.cmdline+text"),
        ("-oci.tar", "application/vnd.oci.image.layout.v1+tar"),
        ("-squashfs.img", "application/vnd.kiln.rootfs.squashfs"),
        (".efi", "application/vnd.kiln.uki+efi"),
        (".iso", "application/vnd.kiln.disk.iso9660"),
        (".raw", "application/vnd.kiln.disk.raw"),
        (".img", "application/vnd.kiln.disk.raw"),
        (".qcow2", "application/vnd.kiln.disk.qcow2"),
        (".vhd", "application/vnd.kiln.disk.vhd"),
        (".vmdk", "application/vnd.kiln.disk.vmdk"),
        (".tar", "application/x-tar"),
    ];
    suffixes
        .iter()
        .find(|(suffix, _)| file_name.ends_with(suffix))
        .map(|(_, media)| *media)
        .unwrap_or("application/octet-stream")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_get_their_media_types() {
        assert_eq!(of_output("x-kernel"), "application/vnd.kiln.kernel");
        assert_eq!(
            of_output("x-initrd.img"),
            "application/vnd.kiln.initrd.cpio+gzip"
        );
        assert_eq!(of_output("x.tar"), "application/x-tar");
        assert_eq!(
            of_output("x-oci.tar"),
            "application/vnd.oci.image.layout.v1+tar"
        );
        assert_eq!(of_output("x-efi.iso"), "application/vnd.kiln.disk.iso9660");
        assert_eq!(of_output("Dockerfile"), "application/octet-stream");
    }
}
