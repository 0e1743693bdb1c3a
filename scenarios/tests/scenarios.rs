//! The scenario library as a test suite: every `*.scenario` under this crate's topic folders is
//! one test, named by its path (`backlog/overflow`), so `cargo test -p sockharness-scenarios
//! overflow` or nextest can pick one. A test passes when the scenario passes and its event trace
//! matches the snapshot in `snapshots/` (review changes with `cargo insta review`). Where the
//! scenario runs isolated with a capture, its decoded wire trace is a second snapshot
//! (`NAME.wire`).

use std::path::{Path, PathBuf};

use libtest_mimic::{Arguments, Completion, Failed, Trial};
use sockharness::sandbox::Isolation;
use sockharness::suite::{self, FileCheck};
use sockharness::Harness;

fn main() {
    let args = Arguments::from_args();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    // Without it insta runs `cargo metadata` at its first snapshot, and a child forked while
    // other scenarios run holds their sockets open until it execs, which delays their closes
    // on the wire. Set before any thread starts.
    if std::env::var_os("INSTA_WORKSPACE_ROOT").is_none() {
        if let Some(workspace) = root.parent() {
            std::env::set_var("INSTA_WORKSPACE_ROOT", workspace);
        }
    }
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
    // Isolated where possible; where not, what needs isolation is skipped with the reason.
    let harness = Harness::new().isolation(Isolation::Auto);
    let (snapshot, wire) = match suite::check(&source, &harness) {
        FileCheck::Failed(report) => return Err(report.into()),
        FileCheck::Skipped(reason) => return Ok(Completion::ignored_with(reason)),
        // A scenario against an installed server (`require nginx`) sees that server's version
        // and the date in its responses: it must pass, but its trace is not a stable snapshot.
        FileCheck::Passed { trace: None, .. } => return Ok(Completion::Completed),
        FileCheck::Passed {
            trace: Some(trace),
            wire,
            wire_note,
        } => {
            if let Some(note) = wire_note {
                eprintln!("{}: wire trace not compared: {note}", source.name);
            }
            (trace, wire)
        }
    };
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path(root.join("snapshots"));
    settings.set_prepend_module_to_snapshot(false);
    settings.set_input_file(PathBuf::from(&source.path));
    settings.set_omit_expression(true);
    settings.set_description(format!("event trace of {}", source.name));
    // insta reports a mismatch by panicking; turn that into this test's failure message.
    let name = source.name.replace(['/', '\\'], "__");
    let differs = |what: &str| {
        Failed::from(format!(
            "the {what} of {} differs from its snapshot (the difference is printed above)",
            source.path
        ))
    };
    let event = std::panic::AssertUnwindSafe(|| {
        settings.bind(|| insta::assert_snapshot!(name.clone(), snapshot));
    });
    std::panic::catch_unwind(event).map_err(|_| differs("event trace"))?;
    if let Some(wire) = wire {
        settings.set_description(format!("wire trace of {}", source.name));
        let wire = std::panic::AssertUnwindSafe(|| {
            settings.bind(|| insta::assert_snapshot!(format!("{name}.wire"), wire));
        });
        std::panic::catch_unwind(wire).map_err(|_| differs("wire trace"))?;
    }
    Ok(Completion::Completed)
}
