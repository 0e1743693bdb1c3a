//! A seed scenario from a capture of a real client and server (`sockharness
//! scenario-from-pcap`): each captured connection to the server becomes a client that sends
//! what the captured client sent, turn by turn, and expects what the server answered, so that a
//! tcpdump goes straight into `sockharness fuzz --seed-scenario` without cutting requests by
//! hand.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use sockharness::capture::conversation::{conversations, Conversation, End};
use sockharness::capture::Capture;
use sockharness::script::escape;

/// Why no scenario could be made.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FromCaptureError {
    /// The capture holds no TCP connection with data.
    #[error("the capture holds no TCP connection that carried data")]
    NoConnections,
    /// `--port` names a port no captured connection went to.
    #[error("no captured connection went to port {port}; servers seen: {seen}")]
    NoSuchServer {
        /// The port asked for.
        port: u16,
        /// The servers the capture has, with their connections.
        seen: String,
    },
}

/// Turns longer than this are cut: a seed is for mutating, and a megabyte-long literal helps
/// no one read the scenario.
pub const MAX_TURN: usize = 64 * 1024;

/// The scenario for the connections to one server of `cap`: the one on `port`, or else the
/// one most connections went to. `name` is how the capture is named in the opening comment.
pub fn scenario(cap: &Capture, name: &str, port: Option<u16>) -> Result<String, FromCaptureError> {
    let all: Vec<Conversation> = conversations(cap)
        .into_iter()
        .filter(|c| !c.turns.is_empty())
        .collect();
    if all.is_empty() {
        return Err(FromCaptureError::NoConnections);
    }
    let mut servers: BTreeMap<SocketAddr, usize> = BTreeMap::new();
    for c in &all {
        *servers.entry(c.server).or_default() += 1;
    }
    let server = match port {
        Some(p) => servers
            .keys()
            .find(|s| s.port() == p)
            .copied()
            .ok_or_else(|| FromCaptureError::NoSuchServer {
                port: p,
                seen: servers
                    .iter()
                    .map(|(s, n)| format!("{s} ({n})"))
                    .collect::<Vec<_>>()
                    .join(", "),
            })?,
        // The most connections; of those, the first seen.
        None => {
            let most = servers.values().copied().max().unwrap_or(0);
            all.iter()
                .map(|c| c.server)
                .find(|s| servers[s] == most)
                .unwrap_or(all[0].server)
        }
    };
    let chosen: Vec<&Conversation> = all.iter().filter(|c| c.server == server).collect();
    let mut out = format!(
        "# A seed scenario made by `sockharness scenario-from-pcap` from {name}: {n} connection{s}\n\
         # to the server at {server}, replayed one after another, each client sending what the\n\
         # captured one sent, turn by turn, and expecting what the server answered then.\n\
         # `sockharness fuzz --seed-scenario THIS --cmd ...` fuzzes a server with it (the target\n\
         # below is replaced by the server under test); `sockharness run --target srv=...` checks\n\
         # that a server still answers as the captured one did.\n",
        n = chosen.len(),
        s = if chosen.len() == 1 { "" } else { "s" },
    );
    let others = servers.len() - 1;
    if others > 0 {
        out.push_str(&format!(
            "# The capture has {others} other server{}: --port picks one.\n",
            if others == 1 { "" } else { "s" }
        ));
    }
    let target = if server.ip().is_loopback() {
        server
    } else {
        SocketAddr::new([127, 0, 0, 1].into(), server.port())
    };
    out.push_str(&format!("timeout 5s\ntarget srv at {target}\n"));
    for (i, c) in chosen.iter().enumerate() {
        let name = format!("c{}", i + 1);
        out.push_str(&format!("\n# {} -> {}\n", c.client, c.server));
        if c.gap {
            out.push_str(
                "# The capture missed some of this connection's bytes: it stops at the gap.\n",
            );
        }
        out.push_str(&format!("connect {name} to srv\n"));
        let mut cut = false;
        let mut shut = false;
        for (k, t) in c.turns.iter().enumerate() {
            // The client half-closed here, before the server's last answers.
            if c.client_fin == Some(k) {
                out.push_str(&format!("shutdown {name} write\n"));
                shut = true;
            }
            let bytes = &t.bytes[..t.bytes.len().min(MAX_TURN)];
            cut |= bytes.len() < t.bytes.len();
            if t.from_client {
                out.push_str(&format!("send {name} \"{}\"\n", escape(bytes)));
            } else {
                out.push_str(&format!(
                    "recv {name} exact {} == \"{}\"\n",
                    bytes.len(),
                    escape(bytes)
                ));
            }
            if cut {
                out.push_str(&format!(
                    "# This turn had {} bytes, cut to {MAX_TURN}: the rest of the connection is left out.\n",
                    t.bytes.len()
                ));
                break;
            }
        }
        let ending = match (c.end, cut || c.gap) {
            (End::ServerClosed | End::ClientClosed, false) if shut => {
                format!("recv {name} 16 == EOF\nclose {name}\n")
            }
            (_, true) | (End::Open, _) | (End::ClientClosed, _) | (End::ClientReset, _) => {
                format!("close {name}\n")
            }
            (End::ServerClosed, false) => format!("recv {name} 16 == EOF\nclose {name}\n"),
            (End::ServerReset, false) => format!("recv {name} 16 == ECONNRESET\n"),
        };
        out.push_str(&ending);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sockharness::capture::pcap;

    fn mixed() -> Capture {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../wire/tests/data/lo-mixed.pcap"
        );
        pcap::read(&std::fs::read(path).expect("the test capture")).expect("reads")
    }

    #[test]
    fn the_server_most_connections_went_to_is_chosen_and_each_connection_replayed() {
        let text = scenario(&mixed(), "lo-mixed.pcap", None).unwrap();
        // Two connections reusing one 4-tuple, each a client that sent and then reset.
        assert!(text.contains("from lo-mixed.pcap: 2 connections"), "{text}");
        assert!(text.contains("target srv at 127.0.0.1:41807\n"), "{text}");
        assert!(text.contains("send c1 \"ping 0\"\nclose c1\n"), "{text}");
        assert!(text.contains("send c2 \"ping 1\"\nclose c2\n"), "{text}");
        assert!(text.contains("2 other servers: --port picks one"), "{text}");
        sockharness::script::parse("x", text.as_bytes()).expect("parses");
    }

    #[test]
    fn a_port_picks_the_server_and_its_answers_become_expectations() {
        let text = scenario(&mixed(), "lo-mixed.pcap", Some(39165)).unwrap();
        assert!(
            text.contains("send c1 \"GET /index.html HTTP/1.0\\r\\n\\r\\n\"\n"),
            "{text}"
        );
        assert!(
            text.contains("recv c1 exact 1043 == \"HTTP/1.0 200 OK\\r\\n\\r\\n\\0\\x01"),
            "{text}"
        );
        sockharness::script::parse("x", text.as_bytes()).expect("parses");
        assert!(matches!(
            scenario(&mixed(), "lo-mixed.pcap", Some(9)),
            Err(FromCaptureError::NoSuchServer { port: 9, .. })
        ));
    }
}
