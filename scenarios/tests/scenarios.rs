//! The scenario library as a test suite: every `*.scenario` under this crate's topic folders is
//! one test, named by its path (`backlog/overflow`), so `cargo test -p sockharness-scenarios
//! overflow` or nextest can pick one. A test passes when the scenario passes and its event trace
//! matches the snapshot in `snapshots/` (review changes with `cargo insta review`). Where the
//! scenario runs isolated with a capture, its decoded wire trace is a second snapshot
//! (`NAME.wire`).

use std::path::{Path, PathBuf};

use libtest_mimic::{Arguments, Completion, Failed, Trial};
use sockharness::capture::{pcap, RenderOptions};
use sockharness::run::{run, Status};
use sockharness::{report, script, suite};

fn main() {
    // First, while the process has one thread: without root this creates its user namespace.
    sockharness::sandbox::init();
    let args = Arguments::from_args();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let sources = match suite::load(&[root.to_path_buf()]) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("cannot read the scenario library: {e}");
            std::process::exit(2);
        }
    };
    let trials = sources
        .into_iter()
        .map(|source| {
            let name = source.name.clone();
            Trial::ignorable_test(name, move || check(root, source))
        })
        .collect();
    libtest_mimic::run(&args, trials).exit();
}

fn check(root: &Path, source: suite::Source) -> Result<Completion, Failed> {
    let scenario =
        script::parse(&source.path, &source.bytes).map_err(|d| Failed::from(d.to_string()))?;
    let result = run(&scenario);
    match &result.status {
        Status::Skipped(reason) => return Ok(Completion::ignored_with(reason)),
        Status::Failed(_) => {
            let mut report = report::render(&source.path, &result);
            if let Some(capture) = &result.capture {
                // Kept where `sockharness run` keeps failed scenarios' captures.
                let dir = root.join("../target/sockharness");
                let path = dir.join(format!("{}.pcap", source.name.replace(['/', '\\'], "__")));
                let written = std::fs::create_dir_all(&dir)
                    .and_then(|()| std::fs::File::create(&path))
                    .and_then(|f| pcap::write(std::io::BufWriter::new(f), capture));
                if written.is_ok() {
                    report.push_str(&format!("  capture: {}\n", path.display()));
                }
            }
            return Err(report.into());
        }
        Status::Passed => {}
    }
    // A scenario against an installed server (`require nginx`) sees that server's version and
    // the date in its responses: it must pass, but its trace is not a stable snapshot.
    if !scenario.settings.requires.is_empty() {
        return Ok(Completion::Completed);
    }
    let snapshot = result.trace.render();
    // A capture the kernel dropped frames from cannot match its snapshot; the event trace still
    // must.
    let complete = !result
        .capture_note
        .as_deref()
        .is_some_and(|n| n.starts_with("capture incomplete"));
    let wire = result
        .render_wire(&RenderOptions::default())
        .filter(|_| complete);
    if !complete {
        eprintln!(
            "{}: wire trace not compared: {}",
            source.name,
            result.capture_note.as_deref().unwrap_or("")
        );
    }
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path(root.join("snapshots"));
    settings.set_prepend_module_to_snapshot(false);
    settings.set_input_file(PathBuf::from(&source.path));
    settings.set_omit_expression(true);
    settings.set_description(format!("event trace of {}", source.name));
    // insta reports a mismatch by panicking; turn that into this test's failure message.
    let name = source.name.replace(['/', '\\'], "__");
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        settings.bind(|| insta::assert_snapshot!(name.clone(), snapshot));
        if let Some(wire) = wire {
            let mut settings = settings.clone();
            settings.set_description(format!("wire trace of {}", source.name));
            settings.bind(|| insta::assert_snapshot!(format!("{name}.wire"), wire));
        }
    }))
    .map(|()| Completion::Completed)
    .map_err(|_| {
        Failed::from(format!(
            "the event trace of {} differs from its snapshot",
            source.path
        ))
    })
}
