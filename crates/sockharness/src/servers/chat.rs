//! Chat: every complete line a client sends goes to every other client.

use std::cell::RefCell;
use std::rc::Rc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

/// Lines waiting to be written to one client.
type Outbox = mpsc::UnboundedSender<Vec<u8>>;

/// The connected clients, each with its outbox.
#[derive(Clone, Default)]
pub(super) struct Room {
    members: Rc<RefCell<Vec<(u64, Outbox)>>>,
    next_id: Rc<RefCell<u64>>,
}

impl Room {
    pub(super) async fn serve(self, stream: TcpStream) {
        let id = {
            let mut n = self.next_id.borrow_mut();
            *n += 1;
            *n
        };
        let (tx, mut rx) = mpsc::unbounded_channel::<Vec<u8>>();
        self.members.borrow_mut().push((id, tx));
        let (mut reader, mut writer) = stream.into_split();
        // A slow reader gets its own queue: it never holds up the others.
        let writing = tokio::task::spawn_local(async move {
            while let Some(line) = rx.recv().await {
                if writer.write_all(&line).await.is_err() {
                    break;
                }
            }
        });
        let mut pending = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = match reader.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            pending.extend_from_slice(&buf[..n]);
            // One read may hold half a line or several lines.
            while let Some(end) = pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = pending.drain(..=end).collect();
                for (other, tx) in self.members.borrow().iter() {
                    if *other != id {
                        let _ = tx.send(line.clone());
                    }
                }
            }
        }
        self.members.borrow_mut().retain(|(other, _)| *other != id);
        writing.abort();
    }
}
