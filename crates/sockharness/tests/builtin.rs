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

#[test]
fn a_builtin_this_build_lacks_is_an_error() {
    // The bug zoo is behind the `zoo` feature, which this crate's own tests leave off. Its
    // names are not words of the language, so the target is given in Rust.
    let mut scenario = util::scenario("target t builtin echo\nconnect c to t\n");
    let Statement::Target { source, .. } = &mut scenario.steps[0].statement else {
        panic!("the first statement is the target");
    };
    *source = TargetSource::Builtin("echo-one-read".into());
    let r = sockharness::run::run(&scenario);
    let Status::Failed(f) = r.status else {
        panic!("expected a failure: {:?}", r.status);
    };
    assert_eq!(f.line, 1, "{f:?}");
    assert!(
        f.actual.contains("no bundled server `echo-one-read`"),
        "{f:?}"
    );
}
