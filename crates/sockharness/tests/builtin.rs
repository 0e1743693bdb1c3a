//! Bundled servers as targets: their descriptors, and a name that is not bundled.

mod util;

use sockharness::run::{FailureKind, Status};
use sockharness::script::{Statement, TargetSource};

#[test]
fn fds_of_a_builtin_counts_the_sockets_it_holds() {
    let r = util::run_text(
        "target t builtin echo\n\
         connect c[1..3] to t\n\
         send c[1..3] \"x\"\n\
         recv c[1..3] exact 1 == \"x\"\n\
         expect t.fds == 4\n\
         close c[1..3]\n\
         sleep 200ms\n\
         expect t.fds == 1\n",
    );
    assert_eq!(r.status, Status::Passed, "{}", r.trace.render());
}

#[test]
fn a_wrong_fds_count_fails_as_a_property() {
    let r = util::run_text("target t builtin echo\nconnect c to t\nexpect t.fds == 9\n");
    let Status::Failed(f) = r.status else {
        panic!("expected a failure: {:?}", r.status);
    };
    assert_eq!(f.kind, FailureKind::Property, "{f:?}");
    assert_eq!(f.line, 3);
}

/// `target t builtin NAME` given in Rust: the bug zoo's names are not words of the language.
fn builtin(name: &str) -> sockharness::run::ScenarioRun {
    let mut scenario =
        util::scenario("target t builtin echo\nconnect c to t\nsend c \"x\"\nrecv c 1\n");
    let Statement::Target { source, .. } = &mut scenario.steps[0].statement else {
        panic!("the first statement is the target");
    };
    *source = TargetSource::Builtin(name.into());
    sockharness::run::run(&scenario)
}

#[test]
fn a_builtin_the_build_lacks_is_an_error_never_another_server() {
    let r = builtin("no-such-server");
    let Status::Failed(f) = r.status else {
        panic!("expected a failure: {:?}", r.status);
    };
    assert_eq!((f.line, &f.kind), (1, &FailureKind::Setup), "{f:?}");
    assert!(
        f.actual.contains("no bundled server `no-such-server`"),
        "{f:?}"
    );
}

/// The bug zoo is in the build only with the `zoo` feature (a workspace build has it, as the
/// command line enables it).
#[test]
fn the_zoo_is_there_exactly_with_its_feature() {
    let r = builtin("echo-one-read");
    if cfg!(feature = "zoo") {
        assert_eq!(r.status, Status::Passed, "{}", r.trace.render());
    } else {
        let Status::Failed(f) = r.status else {
            panic!("expected a failure: {:?}", r.status);
        };
        assert!(
            f.actual
                .contains("the bug zoo's servers need the `zoo` feature"),
            "{f:?}"
        );
    }
}

/// Every server name the language accepts is one this build serves (the zoo's with its
/// feature): none falls through to another server or to an error.
#[test]
fn every_builtin_name_of_the_language_is_served() {
    let names: &[&str] = if cfg!(feature = "zoo") {
        &sockharness::script::BUILTINS
    } else {
        sockharness::script::CORRECT_BUILTINS
    };
    for name in names {
        assert!(
            sockharness::servers::is_bundled(name),
            "{name} is not bundled"
        );
        let mut scenario = util::scenario("target t builtin echo\nconnect c to t\n");
        let Statement::Target { source, .. } = &mut scenario.steps[0].statement else {
            panic!("the first statement is the target");
        };
        *source = TargetSource::Builtin(name.to_string());
        let r = sockharness::run::run(&scenario);
        assert_eq!(r.status, Status::Passed, "{name}: {}", r.trace.render());
    }
}
