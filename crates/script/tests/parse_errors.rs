//! Bad input: every problem is reported at `path:line:column` with a caret and a hint, and no
//! input makes the parser panic.

use sockharness_script::{parse, random_bytes, Diagnostics};

#[track_caller]
fn problems(text: &[u8]) -> Diagnostics {
    match parse("bad.scenario", text) {
        Ok(s) => panic!("expected problems, parsed as {s:?}"),
        Err(d) => d,
    }
}

/// The `line:column` of every problem.
fn positions(d: &Diagnostics) -> Vec<(usize, usize)> {
    d.problems
        .iter()
        .map(|p| {
            let pos = d.position(p);
            (pos.line, pos.column)
        })
        .collect()
}

#[test]
fn typo_in_a_statement_gets_a_suggestion() {
    let d = problems(b"# demo\nlisten srv\nconect cli to srv\n");
    insta::assert_snapshot!(d.to_string(), @r"
    bad.scenario:3:1: error: unknown statement `conect`
      ┌─ bad.scenario:3:1
      │
    3 │ conect cli to srv
      │ ^^^^^^ did you mean `connect`?
    ");
}

#[test]
fn every_problem_of_a_file_is_reported() {
    let text = "\
listen srv backlog=two
connect cli to nowhere
accept srv as conn
recv conn 5 == ECONNRESTE
sleep 10
send cli \"unterminated
expect conn.state == ESTABLISH
send cli \"x\" == \"y\"
sleep 10ms &h
wait h
wait h
";
    let d = problems(text.as_bytes());
    assert_eq!(
        positions(&d),
        vec![
            (1, 20),
            (2, 16),
            (4, 16),
            (5, 7),
            (6, 10),
            (7, 22),
            (8, 14),
            (9, 13),
            (11, 6)
        ]
    );
    insta::assert_snapshot!(d.to_string());
}

#[test]
fn names_must_be_defined_once_and_of_the_right_kind() {
    let d = problems(b"listen srv\nconnect srv to srv\nsend srv \"x\"\nwait srv\n");
    let messages: Vec<_> = d.problems.iter().map(|p| p.message.as_str()).collect();
    assert_eq!(
        messages,
        [
            "`srv` is already defined, as a listener",
            "`srv` is a listener, expected a socket",
            "`srv` is a listener, expected a background handle",
        ]
    );
}

#[test]
fn literals_are_checked() {
    for (text, message, column) in [
        ("send c \"a\\q\"", "unknown escape", 10),
        ("send c \"\\x4\"", "`\\x` needs two hex digits", 9),
        ("send c hex\"4 8\"", "hex byte cut in half", 12),
        ("send c hex\"abc\"", "odd number of hex digits", 14),
        ("send c hex\"zz\"", "`z` is not a hex digit", 12),
        ("sleep 1.5", "`1.5` needs a unit", 7),
        ("sleep 5m", "unknown duration unit `m`", 7),
        ("recv c 64KB", "unknown size unit `KB`", 8),
        ("recv c 0", "a read buffer must hold at least 1 byte", 8),
        (
            "connect c to 300.1.1.1:80",
            "`300.1.1.1:80` is not an address",
            14,
        ),
        (
            "sysctl kernel.panic=1",
            "only network sysctls (`net.*`) can be set",
            8,
        ),
        ("expect c.fd == cli", "expected a number, found `cli`", 16),
        (
            "expect c.state < LISTEN",
            "`<` compares numbers; `state` is not a number",
            16,
        ),
        (
            "timeout 1s extra",
            "unexpected `extra` at the end of the statement",
            12,
        ),
    ] {
        let text = format!("listen l\nconnect c to l\n{text}\n");
        let d = problems(text.as_bytes());
        let first = &d.problems[0];
        assert_eq!(first.message, message, "for {text:?}");
        assert_eq!(d.position(first).line, 3, "for {text:?}");
        assert_eq!(d.position(first).column, column, "for {text:?}");
    }
}

#[test]
fn invalid_utf8_is_reported_where_it_is() {
    let d = problems(b"listen srv\nsend cli \"caf\xe9\"\n");
    assert_eq!(positions(&d), vec![(2, 14)]);
    assert!(d
        .to_string()
        .starts_with("bad.scenario:2:14: error: invalid UTF-8"));
}

#[test]
fn binary_junk_never_panics_and_is_capped() {
    for seed in 0..200 {
        let junk = random_bytes(4096, seed);
        let d = problems(&junk);
        assert!(!d.problems.is_empty());
        assert!(d.problems.len() <= sockharness_script::MAX_PROBLEMS);
        // Rendering must not panic either, whatever the bytes.
        let _ = d.to_string();
    }
}

#[test]
fn a_ten_megabyte_line_is_reported_briefly() {
    let mut text = b"listen srv\nsend srv \"".to_vec();
    text.extend(std::iter::repeat_n(b'a', 10 << 20));
    text.extend_from_slice(b"\n");
    let d = problems(&text);
    assert_eq!(positions(&d), vec![(2, 10)]);
    assert!(
        d.to_string().len() < 2000,
        "the report shows a window, not the whole line"
    );
}

#[test]
fn nul_and_control_characters_are_named() {
    let d = problems(b"listen srv\x00\n");
    assert_eq!(d.problems[0].message, "unexpected character U+0000");
    assert_eq!(positions(&d), vec![(1, 11)]);
}

#[test]
fn token_soup_never_panics() {
    // Random sequences of real tokens reach deeper into the parser than random bytes do.
    const WORDS: &[&str] = &[
        "listen",
        "connect",
        "accept",
        "send",
        "recv",
        "read",
        "write",
        "shutdown",
        "close",
        "abort",
        "set",
        "sleep",
        "wait",
        "expect",
        "timeout",
        "tolerance",
        "sysctl",
        "srv",
        "cli",
        "to",
        "as",
        "on",
        "backlog",
        "=",
        "==",
        "!=",
        "<",
        ">=",
        "&",
        "|",
        "(",
        ")",
        ",",
        ".",
        "within",
        "pending",
        "for",
        "exact",
        "until",
        "all",
        "nowait",
        "chunk",
        "gap",
        "ok",
        "EOF",
        "ECONNRESET",
        "sent",
        "pattern",
        "random",
        "seed",
        "state",
        "peer",
        "queued",
        "\"x\"",
        "hex\"41\"",
        "5",
        "1.5s",
        "64KiB",
        "127.0.0.1:0",
        "[::1]:0",
        "\n",
        "#",
    ];
    for seed in 0..3000u64 {
        let picks = random_bytes(24, seed);
        let text: Vec<&str> = picks
            .iter()
            .map(|b| WORDS[usize::from(*b) % WORDS.len()])
            .collect();
        let text = text.join(" ");
        if let Err(d) = parse("soup.scenario", text.as_bytes()) {
            let _ = d.to_string();
        }
    }
}

#[test]
fn what_v1_allows_is_accepted() {
    for text in [
        "listen l\nconnect c to l == ENOTSUP|EPROTO|ETOOMANYREFS|EOPNOTSUPP\n",
        "sysctl net.ipv4.conf.br-lan.forwarding=1  # a comment\n",
        "sysctl net.ipv4.tcp_rmem=4096 87380 6291456\n",
        "listen l\nconnect c to l\nsend c \"x\" gap=1ms\n",
        "listen all\nconnect read to all\naccept all as write\nrecv write all\n",
    ] {
        let s = parse("ok.scenario", text.as_bytes()).unwrap_or_else(|d| panic!("{text}\n{d}"));
        let again = parse("again", s.to_string().as_bytes()).unwrap_or_else(|d| panic!("{s}\n{d}"));
        assert_eq!(again, s);
    }
    let s = parse(
        "x",
        b"sysctl net.ipv4.tcp_rmem = 4096 87380 6291456 # why\n",
    )
    .expect("parses");
    assert_eq!(
        s.settings.sysctls,
        [(
            "net.ipv4.tcp_rmem".to_string(),
            "4096 87380 6291456".to_string()
        )]
    );
}

#[test]
fn a_signed_hex_escape_is_rejected() {
    let d = problems(b"listen l\nconnect c to l\nsend c \"\\x+1\"\n");
    assert_eq!(d.problems[0].message, "`\\x` needs two hex digits");
}

#[test]
fn ranges_expand_into_one_statement_per_index() {
    let s = parse(
        "r.scenario",
        "target web builtin echo\nconnect c[1..3] to web &h[1..3]\nwait h[1..3] == ok within 2s\nsend c[2] \"[1..3] stays \\\"é\\\" text\"\n".as_bytes(),
    )
    .unwrap_or_else(|d| panic!("{d}"));
    let printed = s.to_string();
    assert!(
        printed.contains("connect c1 to web &h1\nconnect c2 to web &h2\nconnect c3 to web &h3\n"),
        "{printed}"
    );
    assert!(printed.contains("wait h3 == ok within 2s\n"), "{printed}");
    assert!(
        printed.contains("send c2 \"[1..3] stays \\\"\\xc3\\xa9\\\" text\"\n"),
        "{printed}"
    );
    // Every expanded statement keeps its source line.
    let lines: Vec<u32> = s
        .steps
        .iter()
        .map(|st| st.origin.as_ref().map_or(0, |o| o.line))
        .collect();
    assert_eq!(lines, [1, 2, 2, 2, 3, 3, 3, 4]);

    for (text, message) in [
        ("connect c[3..1] to l\n", "range `[3..1]` runs backwards"),
        (
            "connect c[1..3] to l &h[1..4]\n",
            "every range on a line must have the same bounds",
        ),
        (
            "connect c[1..20000] to l\n",
            "range `[1..20000]` has more than 10000 indexes",
        ),
    ] {
        let d = problems(format!("listen l\n{text}").as_bytes());
        assert_eq!(d.problems[0].message, message);
        assert_eq!(d.position(&d.problems[0]).line, 2);
    }
}

#[test]
fn targets_parse_and_print() {
    let text = "target web cmd \"./server --port {port}\" ready=2s\ntarget db at 127.0.0.1:6379\ntarget e builtin echo\n\
        connect c to web\nexpect web running\nexpect web.fds <= 12\nstop web\nexpect web exited\nkill e\n";
    let s = parse("t.scenario", text.as_bytes()).unwrap_or_else(|d| panic!("{d}"));
    assert_eq!(s.to_string(), text);
    let d = problems(b"target x at 10.0.0.1:80\n");
    assert_eq!(d.problems[0].message, "targets must be on the loopback");
    let d = problems(b"target x builtin ecoh\n");
    assert_eq!(d.problems[0].hint.as_deref(), Some("did you mean `echo`?"));
    let d = problems(b"listen l\nstop l\n");
    assert_eq!(
        d.problems[0].message,
        "`l` is a listener, expected a target"
    );
}

#[test]
fn ranges_that_expand_past_the_file_cap_are_an_error_at_their_line() {
    // 30 KB that would expand to ten million statements.
    let mut text = String::from("listen srv\n");
    for i in 0..1000 {
        text.push_str(&format!("connect a{i}_[1..10000] to srv\n"));
    }
    let d = parse("many.scenario", text.as_bytes()).expect_err("too many statements");
    let shown = d.to_string();
    assert_eq!(d.problems.len(), 1, "{shown}");
    // Line 11: `listen` and nine ranges of 10,000 fit, the tenth does not; nothing after it
    // is expanded.
    assert!(
        shown.contains(
            "many.scenario:11:1: error: the file expands to more than 100000 statements here"
        ),
        "{shown}"
    );
}

#[test]
fn a_fault_on_connection_zero_is_an_error() {
    let d = problems(b"listen srv\nproxy p to srv up rst after 1 on conn 0\n");
    assert_eq!(positions(&d), [(2, 39)]);
    assert!(d.problems[0].message.contains("numbered from 1"), "{d}");
    assert!(sockharness_script::parse_faults("up rst after 1 on conn 0").is_err());
}

#[test]
fn a_command_with_a_nul_byte_is_an_error() {
    let d = problems(b"target t cmd \"exec sleep\\0 100\"\nconnect c to t\n");
    assert_eq!(positions(&d), [(1, 14)]);
    assert!(d.problems[0].message.contains("NUL byte"), "{d}");
}

#[test]
fn hosts_and_links_are_checked_where_they_are_written() {
    let text = "\
host a
host b
link a a
link a c
link a b loss 101%
link a -> b
link a b delay 1ms jitter 2ms
link a b mtu 10
link a b rate 0/s
link a b losss 5%
link a b loss 5.12345%
listen srv
listen srv2 on b
connect cli to srv2
connect c2 from zz to srv2
expect link a -> b droped == 1
target t builtin echo
seed 1
seed 2
target t2 at 127.0.0.1:80
target t3 builtin echo on zz
proxy p to t3 up drop on conn 2 on a
proxy p2 to t3 down drop on conn
target t4 at 127.0.0.1:81 on a
";
    let d = problems(text.as_bytes());
    let messages: Vec<(usize, String)> = d
        .problems
        .iter()
        .map(|p| (d.position(p).line, p.message.clone()))
        .collect();
    let expect = [
        (3, "a link joins two different hosts"),
        (4, "`c` is not defined"),
        (5, "101% is more than 100%"),
        (6, "expected an impairment for the one direction"),
        (7, "the jitter is larger than the delay"),
        (8, "an MTU is from 68 to 65535 bytes"),
        (9, "a rate of 0 passes nothing"),
        (10, "unknown impairment `losss`"),
        (11, "a percentage has at most four decimals"),
        (12, "`srv` is on no host"),
        (14, "`cli` is on no host"),
        (15, "`zz` is not defined"),
        (16, "unknown counter `droped`"),
        (17, "`t` is on no host"),
        (19, "`seed` is set twice"),
        (20, "`t2` is at an address no host reaches"),
        (21, "`zz` is not defined"),
        (23, "expected a connection number"),
        (24, "a target `at` an address cannot run on host `a`"),
    ];
    for (line, message) in expect {
        assert!(
            messages
                .iter()
                .any(|(l, m)| *l == line && m.contains(message)),
            "line {line}: no `{message}` in {messages:#?}"
        );
    }
    assert_eq!(messages.len(), expect.len(), "{messages:#?}");
    // The hint says how to put a socket on a host.
    assert!(d.to_string().contains("`listen srv on HOST`"), "{d}");
    assert!(d.to_string().contains("`target t ... on HOST`"), "{d}");
}

#[test]
fn targets_and_proxies_on_hosts_print_as_they_parse() {
    let text = "host a\nhost b\nlink a b\ntarget t cmd \"serve {addr}\" ready=2s on b\n\
                target e builtin echo on b\nproxy p to t up slice 3 on conn 1 on a\n\
                proxy q to e on b\nconnect c from a to p\n";
    let scenario = sockharness_script::parse("t.scenario", text.as_bytes()).expect("parses");
    let printed = scenario.to_string();
    assert!(
        printed.contains("target t cmd \"serve {addr}\" ready=2s on b\n"),
        "{printed}"
    );
    assert!(
        printed.contains("proxy p to t up slice 3 on conn 1 on a\n"),
        "{printed}"
    );
    assert!(printed.contains("proxy q to e on b\n"), "{printed}");
    let again = sockharness_script::parse("t.scenario", printed.as_bytes()).expect("reparses");
    assert_eq!(again.steps.len(), scenario.steps.len());
    for (a, b) in again.steps.iter().zip(&scenario.steps) {
        assert_eq!(a.statement, b.statement);
    }
}

#[test]
fn hosts_only_name_hosts() {
    let d = problems(b"host a\nlisten srv on a\nlink a srv\n");
    assert!(
        d.to_string()
            .contains("`srv` is a listener, expected a host"),
        "{d}"
    );
    let d = problems(b"listen srv\nconnect c from srv to srv\n");
    assert!(
        d.to_string()
            .contains("`srv` is a listener, expected a host"),
        "{d}"
    );
}

#[test]
fn drop_hold_and_release_name_hosts_sockets_or_listeners() {
    let d = problems(
        b"host a\nhost b\nlisten srv on b\ndrop a -> srv X\ndrop a -> srv S count 0\n\
          hold a -> nowhere\nrelease a srv\nsleep 1ms &h\ndrop h -> a\n",
    );
    let messages: Vec<(usize, String)> = d
        .problems
        .iter()
        .map(|p| (d.position(p).line, p.message.clone()))
        .collect();
    let expect = [
        (4, "`X` is not a TCP flag"),
        (5, "`count 0` drops nothing"),
        (6, "`nowhere` is not defined"),
        (7, "expected `->`"),
        (9, "`h` is a background handle"),
    ];
    for (line, message) in expect {
        assert!(
            messages
                .iter()
                .any(|(l, m)| *l == line && m.contains(message)),
            "line {line}: no `{message}` in {messages:#?}"
        );
    }
}
