//! The bundled example servers: correct implementations of three small protocols, available to
//! scenarios as `target T builtin NAME`. They run as tasks of the scenario's own runtime.

mod chat;
mod echo;
mod http;
#[cfg(feature = "zoo")]
mod zoo;

pub use echo::serve as echo;
use thiserror::Error;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

/// The correct servers, always built.
pub const CORRECT: &[&str] = crate::script::CORRECT_BUILTINS;

/// A server name this build does not bundle.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("no bundled server `{0}` in this build{hint}", hint = if cfg!(feature = "zoo") { "" } else { " (the bug zoo's servers need the `zoo` feature)" })]
pub struct UnknownServer(pub String);

/// Whether this build bundles a server called `name`.
pub fn is_bundled(name: &str) -> bool {
    #[cfg(feature = "zoo")]
    if zoo::NAMES.contains(&name) {
        return true;
    }
    CORRECT.contains(&name)
}

/// Serves `name` (`echo`, `chat` or `http`, or, with the `zoo` feature, one of the bug zoo's
/// broken variants of them, such as `echo-one-read`) on `listener` until the task is dropped;
/// every connection's task is dropped with it. A name this build does not bundle is an error at
/// once, never another server.
pub async fn serve(name: &str, listener: TcpListener) -> Result<(), UnknownServer> {
    if CORRECT.contains(&name) {
        serve_correct(name, listener).await;
        return Ok(());
    }
    #[cfg(feature = "zoo")]
    if zoo::serve(name, listener).await {
        return Ok(());
    }
    Err(UnknownServer(name.to_string()))
}

async fn serve_correct(name: &str, listener: TcpListener) {
    let mut connections = JoinSet::new();
    let room = chat::Room::default();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        match name {
            "echo" => connections.spawn_local(echo::serve(stream)),
            "chat" => connections.spawn_local(room.clone().serve(stream)),
            "http" => connections.spawn_local(http::serve(stream)),
            other => unreachable!("{other} is not one of the correct servers"),
        };
        // Reap finished connections so a long scenario does not accumulate them.
        while connections.try_join_next().is_some() {}
    }
}
