//! Builds the appliance kernel (a nested `cargo build` for x86_64-unknown-none) and puts
//! it in OUT_DIR, where src/kernel.rs embeds it with `include_bytes!`.
//!
//! `SKIFF_NO_APPLIANCE=1` embeds an empty kernel instead (host-only work; launching then
//! fails with a clear error unless `SKIFF_APPLIANCE` points at a kernel).

use std::path::{Path, PathBuf};
use std::process::Command;

const TARGET: &str = "x86_64-unknown-none";
const PROFILE: &str = "appliance";
const BIN: &str = "appliance-kernel";

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let root = manifest
        .parent()
        .expect("host-launcher lives in the workspace")
        .to_path_buf();
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets it"));
    let dest = out.join("appliance-kernel.elf");

    println!("cargo:rerun-if-env-changed=SKIFF_NO_APPLIANCE");
    for p in [
        "appliance-kernel",
        "wire",
        "linker",
        "Cargo.toml",
        "Cargo.lock",
        ".cargo/config.toml",
        "rust-toolchain.toml",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(p).display());
    }

    if std::env::var("SKIFF_NO_APPLIANCE").is_ok_and(|v| v == "1") {
        println!(
            "cargo:warning=SKIFF_NO_APPLIANCE=1: no appliance embedded; \
             launching needs SKIFF_APPLIANCE=/path/to/appliance-kernel"
        );
        std::fs::write(&dest, b"").expect("write OUT_DIR/appliance-kernel.elf");
        return;
    }

    let target_dir = root.join("target").join("appliance");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&root)
        .args([
            "build",
            "-p",
            BIN,
            "--bin",
            BIN,
            "--target",
            TARGET,
            "--profile",
            PROFILE,
        ])
        .arg("--target-dir")
        .arg(&target_dir);
    scrub_env(&mut cmd);
    let status = cmd.status();
    let built = target_dir.join(TARGET).join(PROFILE).join(BIN);
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => fail(&format!("the nested appliance build failed ({s})"), &root),
        Err(e) => fail(
            &format!("cannot run cargo for the appliance build: {e}"),
            &root,
        ),
    }
    copy(&built, &dest);
}

/// Keeps the outer build's settings out of the nested one: flags and wrappers meant for
/// host code, the outer target dir and target, and the build-script variables cargo set
/// for this package.
fn scrub_env(cmd: &mut Command) {
    for key in [
        "RUSTFLAGS",
        "RUSTDOCFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_ENCODED_RUSTDOCFLAGS",
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTC_WRAPPER",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "CARGO_BUILD_TARGET_DIR",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_BUILD_RUSTC_WRAPPER",
        "CARGO_BUILD_RUSTC_WORKSPACE_WRAPPER",
        "CARGO_PRIMARY_PACKAGE",
        "CARGO_MANIFEST_DIR",
        "CARGO_MANIFEST_PATH",
        "CARGO_MANIFEST_LINKS",
        "CARGO_CRATE_NAME",
        "CARGO_TARGET_TMPDIR",
        "OUT_DIR",
        "TARGET",
        "HOST",
        "PROFILE",
        "OPT_LEVEL",
        "DEBUG",
        "RUSTC_LINKER",
    ] {
        cmd.env_remove(key);
    }
    for (key, _) in std::env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        if ["CARGO_PKG_", "CARGO_CFG_", "CARGO_FEATURE_"]
            .iter()
            .any(|p| key.starts_with(p))
        {
            cmd.env_remove(key);
        }
    }
}

fn copy(from: &Path, to: &Path) {
    if let Err(e) = std::fs::copy(from, to) {
        fail(
            &format!("the appliance build produced no {}: {e}", from.display()),
            from,
        );
    }
}

fn fail(msg: &str, root: &Path) -> ! {
    eprintln!(
        "\nerror: {msg}\n\
         \n  The skiff binary embeds the appliance kernel, built by:\n\
         \n    cd {} && cargo build -p {BIN} --bin {BIN} --target {TARGET} --profile {PROFILE}\n\
         \n  Fix that build (its errors are above), or set SKIFF_NO_APPLIANCE=1 to build the\n  \
         host side without a kernel (launching then needs SKIFF_APPLIANCE=/path).\n",
        root.display()
    );
    println!("cargo:warning={msg}; set SKIFF_NO_APPLIANCE=1 to build without the appliance");
    std::process::exit(1);
}
