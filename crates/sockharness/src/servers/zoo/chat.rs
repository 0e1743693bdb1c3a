//! Broken chat servers. The correct one (`servers/chat.rs`) sends every complete line a client
//! writes to every *other* client, gives each client its own queue so that a slow reader holds up
//! nobody, and closes a client's connection when it leaves.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use super::spawn_each;

/// Lines waiting to be written to one client.
type Outbox = mpsc::UnboundedSender<Vec<u8>>;

/// The connected clients, each with its outbox, as in the correct server.
#[derive(Clone, Default)]
struct Room {
    members: Rc<RefCell<Vec<(u64, Outbox)>>>,
    next_id: Rc<Cell<u64>>,
}

impl Room {
    /// Adds a client; its lines are written by a task of its own, so a slow reader waits alone.
    fn join(&self, mut writer: OwnedWriteHalf) -> (u64, tokio::task::JoinHandle<()>) {
        let id = self.next_id.get() + 1;
        self.next_id.set(id);
        let (tx, mut rx) = mpsc::unbounded_channel::<Vec<u8>>();
        self.members.borrow_mut().push((id, tx));
        let writing = tokio::task::spawn_local(async move {
            while let Some(line) = rx.recv().await {
                if writer.write_all(&line).await.is_err() {
                    break;
                }
            }
        });
        (id, writing)
    }

    /// Queues `line` for every member but `from`.
    fn broadcast(&self, from: u64, line: &[u8]) {
        for (other, tx) in self.members.borrow().iter() {
            if *other != from {
                let _ = tx.send(line.to_vec());
            }
        }
    }

    fn leave(&self, id: u64) {
        self.members.borrow_mut().retain(|(other, _)| *other != id);
    }
}

/// Reads `reader` until end of stream (or an error), handing every complete line to `line`.
async fn read_lines(reader: &mut OwnedReadHalf, mut line: impl FnMut(&[u8])) {
    let mut pending = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = match reader.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        pending.extend_from_slice(&buf[..n]);
        // One read may hold half a line or several lines.
        while let Some(end) = pending.iter().position(|&b| b == b'\n') {
            let complete: Vec<u8> = pending.drain(..=end).collect();
            line(&complete);
        }
    }
}

/// `chat-echo-sender`: broadcasts each line to every client, its sender included.
///
/// The mistake: the broadcast loop forgets to skip the client the line came from, so every client
/// sees its own lines come back, interleaved with the others'. Caught by `chat-relay`.
pub(in crate::servers) async fn echo_sender(listener: TcpListener) {
    let room = Room::default();
    spawn_each(listener, move |stream: TcpStream| {
        let room = room.clone();
        async move {
            let (mut reader, writer) = stream.into_split();
            let (id, writing) = room.join(writer);
            read_lines(&mut reader, |line| {
                // BUG: no `if other != id`: the sender gets its own line back.
                for (_, tx) in room.members.borrow().iter() {
                    let _ = tx.send(line.to_vec());
                }
            })
            .await;
            room.leave(id);
            writing.abort();
        }
    })
    .await;
}

/// `chat-one-read`: forwards what each read returned as one line.
///
/// The mistake: taking one read for one message, and normalising its line ending on the way
/// ("trim it and add a newline"). A line that arrives in pieces is forwarded as several lines,
/// each piece with a newline of its own; it looks right in a test where each line is written at
/// once and read at once. Caught by `chat-relay`.
pub(in crate::servers) async fn one_read(listener: TcpListener) {
    let room = Room::default();
    spawn_each(listener, move |stream: TcpStream| {
        let room = room.clone();
        async move {
            let (mut reader, writer) = stream.into_split();
            let (id, writing) = room.join(writer);
            let mut buf = [0u8; 4096];
            loop {
                let n = match reader.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                // BUG: one read is taken for one line.
                let text = String::from_utf8_lossy(&buf[..n]);
                let line = format!("{}\n", text.trim_end_matches(['\r', '\n']));
                room.broadcast(id, line.as_bytes());
            }
            room.leave(id);
            writing.abort();
        }
    })
    .await;
}

/// The members of `chat-slow-blocks`: each one's sending half, shared behind an async lock.
type Writers = Rc<tokio::sync::Mutex<Vec<(u64, OwnedWriteHalf)>>>;

/// `chat-slow-blocks`: writes each line to every member in turn, from the sender's task.
///
/// The mistake: broadcasting with `write_all` to each member, in the loop that read the line,
/// with the room locked. It is simple and works while everyone reads; but a member that stops
/// reading (a stalled phone, a suspended laptop) fills its socket's buffers, that write waits
/// forever, and with it the sender, the room lock, and so every other client. Caught by
/// `chat-slow-reader`.
pub(in crate::servers) async fn slow_blocks(listener: TcpListener) {
    let writers: Writers = Rc::default();
    let next_id = Rc::new(Cell::new(0u64));
    spawn_each(listener, move |stream: TcpStream| {
        let (writers, next_id) = (writers.clone(), next_id.clone());
        async move {
            let id = next_id.get() + 1;
            next_id.set(id);
            let (mut reader, writer) = stream.into_split();
            writers.lock().await.push((id, writer));
            let mut pending = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                let n = match reader.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                pending.extend_from_slice(&buf[..n]);
                while let Some(end) = pending.iter().position(|&b| b == b'\n') {
                    let line: Vec<u8> = pending.drain(..=end).collect();
                    let mut members = writers.lock().await;
                    for (other, w) in members.iter_mut() {
                        if *other != id {
                            // BUG: waits until this member's socket takes the line, holding the
                            // room (and this sender) up as long as the member does not read.
                            let _ = w.write_all(&line).await;
                        }
                    }
                }
            }
            writers.lock().await.retain(|(other, _)| *other != id);
        }
    })
    .await;
}

/// `chat-leak-closed`: a client that leaves stays in the room, its connection open.
///
/// The mistake: members are removed only when a write to them fails ("dead clients show up as
/// write errors"), not when they leave. A client that closes its sending side is never told
/// goodbye (it never reads end of stream), and each departed client costs the server a socket,
/// a queue and a task for as long as nobody's write to it fails. Caught by `chat-leave`.
pub(in crate::servers) async fn leak_closed(listener: TcpListener) {
    let room = Room::default();
    spawn_each(listener, move |stream: TcpStream| {
        let room = room.clone();
        async move {
            let (mut reader, mut writer) = stream.into_split();
            let id = room.next_id.get() + 1;
            room.next_id.set(id);
            let (tx, mut rx) = mpsc::unbounded_channel::<Vec<u8>>();
            room.members.borrow_mut().push((id, tx));
            let members = room.clone();
            tokio::task::spawn_local(async move {
                while let Some(line) = rx.recv().await {
                    if writer.write_all(&line).await.is_err() {
                        members.leave(id);
                        break;
                    }
                }
            });
            read_lines(&mut reader, |line| room.broadcast(id, line)).await;
            // BUG: the client has left, but it stays in the room: its writing task (and with it
            // the socket) lives on until a write to it fails.
        }
    })
    .await;
}
