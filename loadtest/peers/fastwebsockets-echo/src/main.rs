//! Comparison peer for wsd-loadtest: a single-threaded tokio + hyper + fastwebsockets server that echoes every text and binary message (the fastwebsockets echo example).

use fastwebsockets::{FragmentCollector, OpCode, WebSocketError, upgrade};
use http_body_util::Empty;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

const MAX_MESSAGE: usize = 16 << 20;

async fn echo(fut: upgrade::UpgradeFut) -> Result<(), WebSocketError> {
    let mut ws = fut.await?;
    ws.set_auto_close(true);
    ws.set_auto_pong(true);
    ws.set_max_message_size(MAX_MESSAGE);
    let mut ws = FragmentCollector::new(ws);
    loop {
        let frame = ws.read_frame().await?;
        match frame.opcode {
            OpCode::Close => return Ok(()),
            OpCode::Text | OpCode::Binary => ws.write_frame(frame).await?,
            _ => {}
        }
    }
}

async fn upgrade(mut req: Request<Incoming>) -> Result<Response<Empty<Bytes>>, WebSocketError> {
    let (response, fut) = upgrade::upgrade(&mut req)?;
    tokio::task::spawn(async move {
        if let Err(e) = tokio::task::unconstrained(echo(fut)).await {
            match e {
                // Load generators drop their connections at the end: resets are expected.
                WebSocketError::UnexpectedEOF
                | WebSocketError::ConnectionClosed
                | WebSocketError::IoError(_) => {}
                e => eprintln!("fastwebsockets-echo: connection error: {e}"),
            }
        }
    });
    Ok(response)
}

fn port() -> u16 {
    match std::env::var("PORT") {
        Ok(p) => p.parse().unwrap_or_else(|_| {
            eprintln!("fastwebsockets-echo: PORT={p:?} is not a port number");
            std::process::exit(2);
        }),
        Err(_) => 9003,
    }
}

fn main() {
    let port = port();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("fastwebsockets-echo: tokio runtime: {e}");
            std::process::exit(1);
        }
    };
    rt.block_on(async move {
        let listener = match TcpListener::bind(("127.0.0.1", port)).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("fastwebsockets-echo: bind 127.0.0.1:{port}: {e}");
                std::process::exit(1);
            }
        };
        eprintln!("fastwebsockets-echo: listening on ws://127.0.0.1:{port}/ (any path)");
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(e) => {
                    eprintln!("fastwebsockets-echo: accept: {e}");
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let conn = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service_fn(upgrade))
                    .with_upgrades();
                if let Err(e) = conn.await {
                    eprintln!("fastwebsockets-echo: http: {e}");
                }
            });
        }
    });
}
