//! Files a run leaves behind: pcaps and ladder diagrams.

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

/// Writes the captures and diagrams asked for; one entry per scenario, in order.
pub fn save(
    sources: &[Source],
    results: &[ScenarioRun],
    pcap_dir: Option<&Path>,
    svg_dir: Option<&Path>,
) -> Vec<Saved> {
    sources
        .iter()
        .zip(results)
        .map(|(source, run)| {
            let mut saved = Saved::default();
            if run.capture.is_none() {
                return saved;
            }
            let file = source.name.replace(['/', '\\'], "__");
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
