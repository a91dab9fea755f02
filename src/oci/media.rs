//! Media types of layers and manifests, OCI and Docker v2s2.

use oci_spec::image::{MediaType, ToDockerV2S2};

/// How `layer` compresses what it writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    Gzip,
    Zstd,
    None,
}

/// How a layer blob is compressed, from its first bytes (not its file name).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerFormat {
    Tar,
    Gzip,
    Zstd,
}

impl LayerFormat {
    pub fn sniff(head: &[u8]) -> LayerFormat {
        if head.starts_with(&[0x1f, 0x8b]) {
            LayerFormat::Gzip
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd])
            // A skippable frame (magic 0x184D2A50..=0x184D2A5F, little endian) may come first.
            || (head.len() >= 4 && head[0] & 0xf0 == 0x50 && head[1..4] == [0x2a, 0x4d, 0x18])
        {
            LayerFormat::Zstd
        } else {
            LayerFormat::Tar
        }
    }

    fn oci(self) -> MediaType {
        match self {
            LayerFormat::Tar => MediaType::ImageLayer,
            LayerFormat::Gzip => MediaType::ImageLayerGzip,
            LayerFormat::Zstd => MediaType::ImageLayerZstd,
        }
    }

    /// The layer media type for an image whose manifest is `docker` (v2s2) or OCI.
    pub fn media_type(self, docker: bool) -> Result<String, String> {
        if !docker {
            return Ok(self.oci().to_string());
        }
        match self {
            LayerFormat::Gzip => self
                .oci()
                .to_docker_v2s2()
                .map(str::to_string)
                .map_err(|e| e.to_string()),
            LayerFormat::Tar => Ok(DOCKER_LAYER_TAR.to_string()),
            LayerFormat::Zstd => Err(
                "a Docker v2s2 image cannot hold a zstd layer; write the layer with --compression gzip"
                    .to_string(),
            ),
        }
    }
}

/// Docker's uncompressed layer type (oci-spec maps only the gzip one).
const DOCKER_LAYER_TAR: &str = "application/vnd.docker.image.rootfs.diff.tar";

pub fn oci_manifest() -> String {
    MediaType::ImageManifest.to_string()
}

pub fn oci_index() -> String {
    MediaType::ImageIndex.to_string()
}

pub fn docker_manifest() -> &'static str {
    // Infallible: the manifest type has a v2s2 twin.
    MediaType::ImageManifest
        .to_docker_v2s2()
        .unwrap_or("application/vnd.docker.distribution.manifest.v2+json")
}

pub fn docker_manifest_list() -> &'static str {
    MediaType::ImageIndex
        .to_docker_v2s2()
        .unwrap_or("application/vnd.docker.distribution.manifest.list.v2+json")
}
