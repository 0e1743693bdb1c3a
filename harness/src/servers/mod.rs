//! The bundled example servers: correct implementations of three small protocols, available to
//! scenarios as `target T builtin NAME`. They run as tasks of the scenario's own runtime.

mod chat;
mod echo;
mod http;

use tokio::net::TcpListener;
use tokio::task::JoinSet;

/// Serves `name` (`echo`, `chat` or `http`) on `listener` until the task is dropped; every
/// connection's task is dropped with it.
pub async fn serve(name: &str, listener: TcpListener) {
    let mut connections = JoinSet::new();
    let room = chat::Room::default();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        match name {
            "echo" => connections.spawn_local(echo::serve(stream)),
            "chat" => connections.spawn_local(room.clone().serve(stream)),
            _ => connections.spawn_local(http::serve(stream)),
        };
        // Reap finished connections so a long scenario does not accumulate them.
        while connections.try_join_next().is_some() {}
    }
}
