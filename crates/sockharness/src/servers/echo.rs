//! Echo: every byte comes back, in order; a half-close is answered with a half-close.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Serves one connection, or any stream (the fuzz rigs run it over in-memory pipes).
pub async fn serve<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                // A short write is finished by write_all, not dropped.
                if stream.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
        }
    }
    let _ = stream.shutdown().await;
}
