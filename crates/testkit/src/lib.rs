//! Fixtures for fluke's integration tests (a dev-dependency only): a real local registry with
//! anonymous, basic or Bearer-token auth; peer tools (skopeo, umoci, busybox) found and run
//! loudly; awkward root filesystems; a comparable digest of directory trees; a fault-injecting
//! proxy in front of a registry; a TLS (or plain) registry on a non-loopback address in a
//! network namespace of its own. Failures panic.

#![forbid(unsafe_code)]

mod fault;
mod netns;
mod registry;
mod rootfs;
mod token;
mod tools;
mod tree;

pub use fault::{Fault, FaultProxy, Rule, Seen};
pub use netns::NetnsRegistry;
pub use registry::{Registry, TOKEN_SERVICE};
pub use rootfs::{
    busybox_rootfs, long_name, pseudo_random, skopeo_copy, skopeo_copy_with, skopeo_inspect,
    subdir, temp_dir, tricky_rootfs, umoci_image, umoci_set_cmd, SPARSE_SIZE,
};
pub use token::ISSUER as TOKEN_ISSUER;
pub use tools::{
    command_line, debian_package, describe_failure, find_tool, require_tool, run, run_output,
};
pub use tree::{
    assert_same_dirs, assert_same_tree, file_sha256, tree_diff, tree_digest, tree_digest_with,
    EntryInfo, Kind, Tree, TreeOptions,
};
