//! Embeds the scenario library (`scenarios/**/*.scenario`, a link to the workspace's
//! `scenarios/` that `cargo package` follows) into the binary, so that `sockharness run`
//! teaches something on any machine.

use std::path::{Path, PathBuf};

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            if path
                .file_name()
                .is_some_and(|n| n != "snapshots" && n != "tests" && n != "src")
            {
                walk(&path, out);
            }
        } else if path.extension().is_some_and(|e| e == "scenario") {
            out.push(path);
        }
    }
}

fn main() {
    let root = root_dir();
    // A directory is watched recursively, so new topic folders and files are noticed too.
    println!("cargo:rerun-if-changed={}", root.display());
    let mut files = Vec::new();
    walk(&root, &mut files);
    files.sort();
    let mut code = String::from("&[\n");
    for f in &files {
        let rel = f
            .strip_prefix(&root)
            .unwrap_or(f)
            .to_string_lossy()
            .replace('\\', "/");
        let abs = f.canonicalize().unwrap_or_else(|_| f.clone());
        code.push_str(&format!(
            "    ({rel:?}, include_bytes!({:?}) as &[u8]),\n",
            abs.display().to_string()
        ));
    }
    code.push(']');
    let out =
        PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("library.rs");
    std::fs::write(out, code).expect("OUT_DIR is writable");
}

fn root_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios")
}
