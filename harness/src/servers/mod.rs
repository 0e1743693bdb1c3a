//! The bundled example servers: correct implementations of three small protocols, available to
//! scenarios as `target T builtin NAME`. They run as tasks of the scenario's own runtime.

mod chat;
mod echo;
mod http;
mod zoo;

pub use echo::serve as echo;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

/// Serves `name` (`echo`, `chat` or `http`, or one of the bug zoo's broken variants of them, such
/// as `echo-one-read`) on `listener` until the task is dropped; every connection's task is dropped
/// with it.
pub async fn serve(name: &str, listener: TcpListener) {
    // The bug zoo's servers bring their own accept loops: some of their bugs live there.
    match name {
        "echo-one-read" => return zoo::echo::one_read(listener).await,
        "echo-short-write" => return zoo::echo::short_write(listener).await,
        "echo-one-at-a-time" => return zoo::echo::one_at_a_time(listener).await,
        "echo-exit-on-reset" => return zoo::echo::exit_on_reset(listener).await,
        "echo-leak-closed" => return zoo::echo::leak_closed(listener).await,
        "http-one-read" => return zoo::http::one_read(listener).await,
        "http-first-pipelined" => return zoo::http::first_pipelined(listener).await,
        "http-body-as-request" => return zoo::http::body_as_request(listener).await,
        "http-half-close-drop" => return zoo::http::half_close_drop(listener).await,
        "http-stop-accepting" => return zoo::http::stop_accepting(listener).await,
        "chat-echo-sender" => return zoo::chat::echo_sender(listener).await,
        "chat-one-read" => return zoo::chat::one_read(listener).await,
        "chat-slow-blocks" => return zoo::chat::slow_blocks(listener).await,
        "chat-leak-closed" => return zoo::chat::leak_closed(listener).await,
        _ => {}
    }
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
