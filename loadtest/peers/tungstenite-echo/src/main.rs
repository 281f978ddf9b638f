//! Comparison peer for wsd-loadtest: a single-threaded tokio + tokio-tungstenite server that echoes every text and binary message.

use std::net::SocketAddr;

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

const MAX_MESSAGE: usize = 16 << 20;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let port: u16 = match std::env::var("PORT") {
        Ok(p) => match p.parse() {
            Ok(p) => p,
            Err(_) => {
                eprintln!("tungstenite-echo: PORT={p:?} is not a port number");
                std::process::exit(2);
            }
        },
        Err(_) => 9002,
    };
    let listener = match TcpListener::bind(("127.0.0.1", port)).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("tungstenite-echo: bind 127.0.0.1:{port}: {e}");
            std::process::exit(1);
        }
    };
    eprintln!("tungstenite-echo: listening on ws://127.0.0.1:{port}/ (any path)");
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                tokio::spawn(serve(stream, peer));
            }
            Err(e) => eprintln!("tungstenite-echo: accept: {e}"),
        }
    }
}

async fn serve(stream: TcpStream, _peer: SocketAddr) {
    let _ = stream.set_nodelay(true);
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE))
        .max_frame_size(Some(MAX_MESSAGE));
    let Ok(mut ws) = tokio_tungstenite::accept_async_with_config(stream, Some(config)).await else {
        return;
    };
    // Pings are answered and close frames acknowledged by tungstenite itself.
    while let Some(Ok(msg)) = ws.next().await {
        if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
            return;
        }
    }
}
