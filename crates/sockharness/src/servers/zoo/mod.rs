//! The bug zoo: deliberately broken variants of the example servers, each with exactly one
//! realistic bug, so that the scenarios under `scenarios/targets/` can be shown to catch real
//! mistakes (`crates/cli/tests/zoo.rs` runs every protocol's scenarios against its correct server and
//! against each of these, and prints which scenario catches which bug).
//!
//! Every variant is a self-contained copy of its correct server with one change, marked `BUG:`
//! in the code; the rest is kept correct on purpose, so that each bug is caught on its own merits
//! and not because of an unrelated difference. The variants are named `PROTOCOL-BUG`, so the
//! protocol whose scenarios apply is the part before the first `-`:
//!
//! | name | bug |
//! |---|---|
//! | `echo-one-read` | answers the first read and closes: one read taken for the whole message |
//! | `echo-short-write` | one `write` per read, its count ignored: a short write loses bytes |
//! | `echo-one-at-a-time` | serves each connection inline: a stalled client blocks everyone |
//! | `echo-exit-on-reset` | a client's ECONNRESET ends the whole server |
//! | `echo-leak-closed` | a registry keeps every socket, so a closed client's is never closed |
//! | `http-one-read` | parses each read as whole requests: a request in pieces gets 400 |
//! | `http-first-pipelined` | answers the first request of a read and drops the rest |
//! | `http-body-as-request` | leaves a Content-Length body in the buffer, to be parsed as a request |
//! | `http-half-close-drop` | takes a half-close for a client gone and drops its pending response |
//! | `http-stop-accepting` | the accept loop ends with the first failed connection |
//! | `chat-echo-sender` | broadcasts each line to its sender too |
//! | `chat-one-read` | forwards each read as one line, splitting and joining lines |
//! | `chat-slow-blocks` | writes to every member inline: one client that does not read stalls all |
//! | `chat-leak-closed` | never lets a member go when it leaves: its connection is never closed |

pub(super) mod chat;
pub(super) mod echo;
pub(super) mod http;

use std::future::Future;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

/// The bug zoo's servers, by name.
pub(super) const NAMES: &[&str] = crate::script::ZOO_BUILTINS;

/// Serves one of [`NAMES`]; they bring their own accept loops, as some of their bugs live
/// there. False, at once, for a name that is not one of them.
pub(super) async fn serve(name: &str, listener: TcpListener) -> bool {
    match name {
        "echo-one-read" => echo::one_read(listener).await,
        "echo-short-write" => echo::short_write(listener).await,
        "echo-one-at-a-time" => echo::one_at_a_time(listener).await,
        "echo-exit-on-reset" => echo::exit_on_reset(listener).await,
        "echo-leak-closed" => echo::leak_closed(listener).await,
        "http-one-read" => http::one_read(listener).await,
        "http-first-pipelined" => http::first_pipelined(listener).await,
        "http-body-as-request" => http::body_as_request(listener).await,
        "http-half-close-drop" => http::half_close_drop(listener).await,
        "http-stop-accepting" => http::stop_accepting(listener).await,
        "chat-echo-sender" => chat::echo_sender(listener).await,
        "chat-one-read" => chat::one_read(listener).await,
        "chat-slow-blocks" => chat::slow_blocks(listener).await,
        "chat-leak-closed" => chat::leak_closed(listener).await,
        _ => return false,
    }
    true
}

/// The correct accept loop of the example servers, for variants whose bug is elsewhere: every
/// connection gets a task of its own, and the tasks end with the server.
async fn spawn_each<F, Fut>(listener: TcpListener, mut handle: F)
where
    F: FnMut(TcpStream) -> Fut,
    Fut: Future<Output = ()> + 'static,
{
    let mut connections = JoinSet::new();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        connections.spawn_local(handle(stream));
        // Reap finished connections so a long scenario does not accumulate them.
        while connections.try_join_next().is_some() {}
    }
}
