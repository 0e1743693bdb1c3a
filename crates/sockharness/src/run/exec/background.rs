//! Background statements (`&H`): waiting for them, checking they are pending, and the
//! check at the end that none was forgotten.

use super::*;

impl Exec<'_> {
    pub(super) async fn wait(&mut self, step: &Step, handle: &str) -> Result<(), Failure> {
        let at = Instant::now();
        let Some(bg) = self.handles.get_mut(handle) else {
            return Err(self.fail(
                step,
                Mismatch {
                    kind: FailureKind::Background,
                    expected: format!("background statement `{handle}`"),
                    actual: "it never started (an earlier statement failed to start it)".into(),
                    detail: None,
                },
            ));
        };
        bg.waited = true;
        // The task enforces its own deadline; this bound only guards against a bug in that.
        let guard = self.timeout + Duration::from_secs(1);
        let (actual, elapsed) = match tokio::time::timeout(guard, &mut bg.task).await {
            Ok(Ok(done)) => done,
            Ok(Err(e)) => (Actual::Internal(e.to_string()), at.elapsed()),
            Err(_) => (Actual::TimedOut(guard), guard),
        };
        let started = bg.step.clone();
        self.conclude(step, &actual, at, elapsed)?;
        if started.expect.is_some() {
            // Already recorded by this `wait`; only the start statement's expectation is left.
            self.expect_again(&started, &actual, elapsed)?;
        }
        Ok(())
    }

    pub(super) async fn expect_pending(
        &mut self,
        step: &Step,
        handle: &str,
        d: Option<Duration>,
    ) -> Result<(), Failure> {
        let at = Instant::now();
        // Even "now" gives the runtime a moment to hear from the kernel, so a statement the
        // kernel has already finished (a refused connect) is not taken for pending.
        let wait = d.map_or(SETTLE, |d| self.tolerance.pending_wait(d).max(SETTLE));
        let Some(bg) = self.handles.get_mut(handle) else {
            return Err(self.fail(
                step,
                Mismatch {
                    kind: FailureKind::Background,
                    expected: "pending".into(),
                    actual: format!("`{handle}` never started"),
                    detail: None,
                },
            ));
        };
        if bg.waited {
            return Err(self.fail(
                step,
                Mismatch {
                    kind: FailureKind::Timing,
                    expected: format!("`{handle}` still pending"),
                    actual: "it already finished: it was waited for earlier".into(),
                    detail: None,
                },
            ));
        }
        // One that finishes during the wait fails the check then, not when the wait is over.
        let Ok(joined) = tokio::time::timeout(wait, &mut bg.task).await else {
            bg.checked_pending = true;
            self.record(step, Outcome::Pending, at, at.elapsed());
            return Ok(());
        };
        bg.waited = true;
        let elapsed = at.elapsed();
        let (actual, took) = joined.unwrap_or_else(|e| (Actual::Internal(e.to_string()), elapsed));
        let value = format!("finished: {}", outcome_of(&actual).render());
        self.record(step, Outcome::Observed { value }, at, elapsed);
        Err(self.fail(
            step,
            Mismatch {
                kind: FailureKind::Timing,
                expected: format!("`{handle}` still pending"),
                actual: format!("finished after {}: {}", fmt_ms(took), actual.describe()),
                detail: None,
            },
        ))
    }

    /// Checks, at the end, that no background statement was forgotten.
    pub(super) async fn finish(&mut self) -> Result<(), Failure> {
        if self.handles.values().any(|b| !b.waited) {
            tokio::time::sleep(SETTLE).await;
        }
        let mut pending: Vec<_> = self.handles.iter_mut().filter(|(_, b)| !b.waited).collect();
        pending.sort_by_key(|(_, b)| b.line);
        for (name, bg) in pending {
            let failure = |actual: String| Failure {
                kind: FailureKind::Background,
                line: bg.line,
                statement: bg.statement.clone(),
                expected: format!(
                    "`{name}` finished successfully or checked with `expect {name} pending`"
                ),
                actual,
                detail: None,
            };
            if !bg.task.is_finished() {
                if !bg.checked_pending {
                    return Err(failure("still running at the end of the scenario".into()));
                }
                continue;
            }
            if let Ok((actual, _)) = (&mut bg.task).await {
                if !actual.succeeded() {
                    return Err(failure(format!("{} (never waited for)", actual.describe())));
                }
            }
        }
        Ok(())
    }
}
