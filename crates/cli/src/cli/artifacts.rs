//! Files a run leaves behind: pcaps and ladder diagrams.

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};

use sockharness::capture::svg;
use sockharness::run::{ScenarioRun, Status};
use sockharness::suite::Source;

/// Where failed scenarios' captures are kept when no `--pcap-dir` is given.
const FAILED_DIR: &str = "target/sockharness";

/// What was written for one scenario.
#[derive(Default)]
pub struct Saved {
    pub pcap: Option<PathBuf>,
    pub error: Option<String>,
}

/// A file name for each scenario: its name with `/` as `__`, and where two names flatten to one
/// (`a/x` and `a__x`), `-2`, `-3`, ... after the later ones, so that no capture overwrites another.
fn file_names(sources: &[Source]) -> Vec<String> {
    let mut taken = HashSet::new();
    sources
        .iter()
        .map(|source| {
            let flat = source.name.replace(['/', '\\'], "__");
            let mut name = flat.clone();
            let mut n = 1;
            while !taken.insert(name.clone()) {
                n += 1;
                name = format!("{flat}-{n}");
            }
            name
        })
        .collect()
}

/// Writes the captures and diagrams asked for; one entry per scenario, in order.
pub fn save(
    sources: &[Source],
    results: &[ScenarioRun],
    pcap_dir: Option<&Path>,
    svg_dir: Option<&Path>,
) -> Vec<Saved> {
    file_names(sources)
        .into_iter()
        .zip(results)
        .map(|(file, run)| {
            let mut saved = Saved::default();
            if run.capture.is_none() {
                return saved;
            }
            let failed = matches!(run.status, Status::Failed(_));
            let dir = pcap_dir.or_else(|| failed.then_some(Path::new(FAILED_DIR)));
            if let Some(dir) = dir {
                let path = dir.join(format!("{file}.pcap"));
                let written = fs::create_dir_all(dir).and_then(|()| run.save_capture(&path));
                match written {
                    Ok(_) => saved.pcap = Some(path),
                    Err(e) => saved.error = Some(format!("cannot write {}: {e}", path.display())),
                }
            }
            if let Some(dir) = svg_dir {
                let path = dir.join(format!("{file}.svg"));
                let names = |a| run.names.get(&a).cloned();
                let drawing = run.wire().map(|w| svg::svg(&w, &names)).unwrap_or_default();
                if let Err(e) = fs::create_dir_all(dir).and_then(|()| fs::write(&path, drawing)) {
                    saved.error = Some(format!("cannot write {}: {e}", path.display()));
                }
            }
            saved
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_flatten_alike_get_files_of_their_own() {
        let source = |name: &str| Source {
            path: format!("{name}.scenario"),
            name: name.into(),
            bytes: Vec::new(),
        };
        let sources = ["a/x", "a__x", "b", "a/x"].map(source);
        assert_eq!(file_names(&sources), ["a__x", "a__x-2", "b", "a__x-3"]);
    }
}
