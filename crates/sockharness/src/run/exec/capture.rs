//! The live capture while a scenario runs: draining it, settling it at the end, and `expect
//! wire`.

use super::*;

impl Exec<'_> {
    pub(super) async fn expect_wire(
        &mut self,
        step: &Step,
        from: &str,
        to: &str,
        measure: &WireMeasure,
        op: CompareOp,
        value: u64,
    ) -> Result<(), Failure> {
        let at = Instant::now();
        let what = match measure {
            WireMeasure::Count(flags) if flags.is_empty() => "segments".to_string(),
            WireMeasure::Count(flags) => format!("{flags} segments"),
            WireMeasure::Bytes => "payload bytes".to_string(),
        };
        let (src, dst) = {
            let st = self.state.borrow();
            (st.addr_of.get(from).copied(), st.addr_of.get(to).copied())
        };
        let (Some(src), Some(dst), Some(cap)) = (src, dst, self.capture.clone()) else {
            return Err(self.fail(
                step,
                Mismatch {
                    kind: FailureKind::Wire,
                    expected: format!("{what} from {from} to {to}"),
                    actual: "no capture, or one of the names has no address yet".into(),
                    detail: None,
                },
            ));
        };
        // Segments are captured as they cross loopback, but retransmissions and delayed ACKs
        // come later: the count gets until the tolerance to reach the expected value.
        let settle = self.tolerance.slack(Duration::ZERO).min(self.timeout);
        loop {
            let got = {
                let mut c = cap.borrow_mut();
                let _ = c.drain();
                let wire = decode(&Capture {
                    link: LinkType::Ethernet,
                    packets: c.packets().to_vec(),
                    interfaces: c.interfaces().to_vec(),
                });
                match measure {
                    WireMeasure::Count(flags) => wire.count(src, dst, flags),
                    WireMeasure::Bytes => wire.bytes(src, dst),
                }
            };
            let holds = op.holds(&got, &value);
            if holds || at.elapsed() >= settle {
                let observed = format!("{got} {what} {from} -> {to}");
                let shown = held_as(holds, op, value, &observed, || {
                    format!("{what} {from} -> {to}")
                });
                self.record(step, Outcome::Observed { value: shown }, at, at.elapsed());
                if holds {
                    return Ok(());
                }
                return Err(self.fail(
                    step,
                    Mismatch {
                        kind: FailureKind::Wire,
                        expected: format!("{what} {from} -> {to} {} {value}", op.symbol()),
                        actual: format!("{observed} captured"),
                        detail: None,
                    },
                ));
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}

/// What the trace shows of a count check: the count, or for a range that held (`>= 1`) the
/// range. How many packets TCP sends depends on timing (over an impaired link above all), and
/// the trace is a snapshot: a check that held says so in words that are the same every run.
pub(super) fn held_as(
    holds: bool,
    op: CompareOp,
    value: u64,
    observed: &str,
    what: impl FnOnce() -> String,
) -> String {
    if holds && op != CompareOp::Eq {
        format!("{} {} {value}", what(), op.symbol())
    } else {
        observed.to_string()
    }
}

/// Drains the capture until every frame sent on `lo` has arrived and then none has come for
/// [`CLOSE_QUIET`] (at most [`CLOSE_SETTLE_MAX`]). The closing segments are sent at once, but
/// they arrive, and are answered (a FIN's ACK, a RST), when the receiving CPU gets to them: as a
/// rule within microseconds, later under load. Waiting for that rather than a fixed pause costs
/// little where nothing is late. Between looks the runtime's other tasks (a bundled server, a
/// proxy, an in-process service) run, so their own answers to the closes are captured too; the
/// thread then sleeps briefly rather than on the runtime's timer, which counts whole
/// milliseconds.
pub(super) async fn settle(cap: &RefCell<LiveCapture>) {
    let deadline = Instant::now() + CLOSE_SETTLE_MAX;
    let _ = cap.borrow_mut().drain();
    let mut seen = cap.borrow().packets().len();
    let mut quiet_since = Instant::now();
    loop {
        tokio::task::yield_now().await;
        std::thread::sleep(CLOSE_POLL);
        let _ = cap.borrow_mut().drain();
        let (now, delivered) = {
            let c = cap.borrow();
            (c.packets().len(), c.delivered().unwrap_or(true))
        };
        if now != seen || !delivered {
            seen = now;
            quiet_since = Instant::now();
        }
        if quiet_since.elapsed() >= CLOSE_QUIET || Instant::now() >= deadline {
            return;
        }
    }
}

/// Moves captured frames out of the kernel's buffer as they arrive, so a long transfer cannot
/// overflow it between checks.
pub(super) async fn drain_continuously(cap: Rc<RefCell<LiveCapture>>) {
    let fd = BorrowedRaw(cap.borrow().raw_fd());
    // SAFETY: the descriptor belongs to the LiveCapture, which `cap` keeps alive for as long as
    // this future (and so the AsyncFd inside it) exists.
    let Ok(io) = (unsafe {
        tokio::io::unix::AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE)
    }) else {
        return;
    };
    loop {
        let Ok(mut guard) = io.readable().await else {
            return;
        };
        if cap.borrow_mut().drain().is_err() {
            return;
        }
        guard.clear_ready();
    }
}

/// A descriptor owned elsewhere, for registering with the runtime.
pub(super) struct BorrowedRaw(std::os::fd::RawFd);

impl std::os::fd::AsRawFd for BorrowedRaw {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.0
    }
}
