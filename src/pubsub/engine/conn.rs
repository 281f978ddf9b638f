//! The link's connection: one Redis node, or a Redis Cluster, behind one way of sending a batch.
//!
//! Cluster mode is chosen per connection attempt: with `REDIS_SHARDED=true` the link asks the
//! node in `REDIS_URL` for `INFO cluster`; a node that reports `cluster_enabled:1` is used as
//! the entry point of a cluster connection (the `redis` crate's `ClusterConnection`), which
//! learns the slot map, connects to every primary and routes each sharded command to the node
//! that owns its channel's slot. Anything else (not sharded, not a cluster) keeps the single
//! multiplexed connection.
//!
//! A batch keeps the queue order of its commands per channel: on one node it is one pipeline;
//! on a cluster it is one pipeline per slot (a pipeline may not cross slots), sent concurrently,
//! and the replies are put back in the order of the commands.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::Slot;
use redis::{
    AsyncConnectionConfig, Cmd, ErrorKind, PushInfo, RedisError, RedisResult, ServerErrorKind,
    Value,
};
use tokio::sync::mpsc::UnboundedSender;

/// A connection the link can send batches on.
#[derive(Clone)]
pub enum Conn {
    /// The node in `REDIS_URL`.
    Node(MultiplexedConnection),
    /// A Redis Cluster reached through the node in `REDIS_URL` (sharded mode only).
    Cluster(ClusterConnection),
}

/// One command and the channel it is about (to route it by slot on a cluster).
pub struct Command {
    pub channel: Vec<u8>,
    pub cmd: Cmd,
}

/// Timeouts for [`connect`].
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub connect: Duration,
    pub response: Duration,
}

/// Connects to the node in `client`, or to its cluster (see the module doc). Pushed messages
/// (and a `Disconnection` push when a connection is lost) go to `pushes`.
///
/// # Errors
/// The connection, the `INFO` query or the cluster's discovery failed.
pub async fn connect(
    client: &redis::Client,
    sharded: bool,
    timeouts: Timeouts,
    pushes: UnboundedSender<PushInfo>,
) -> RedisResult<Conn> {
    if sharded && is_cluster(client, timeouts).await? {
        let cluster = ClusterClientBuilder::new(vec![client.get_connection_info().clone()])
            .use_protocol(redis::ProtocolVersion::RESP3)
            .connection_timeout(timeouts.connect)
            .response_timeout(timeouts.response)
            // A node that does not answer ends the session (and reconnects) instead of being
            // retried for long behind the link's back.
            .overall_response_timeout(Some(timeouts.response))
            .retries(2)
            .push_sender(pushes)
            .build()?;
        let conn = tokio::time::timeout(
            timeouts.connect + timeouts.response,
            cluster.get_async_connection(),
        )
        .await
        .map_err(|_| {
            RedisError::from((ErrorKind::Io, "timed out discovering the Redis Cluster"))
        })??;
        return Ok(Conn::Cluster(conn));
    }
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(timeouts.connect))
        .set_response_timeout(Some(timeouts.response))
        .set_push_sender(pushes);
    Ok(Conn::Node(
        client
            .get_multiplexed_async_connection_with_config(&config)
            .await?,
    ))
}

/// Whether the node reports `cluster_enabled:1`. A node that refuses `INFO` (an ACL without
/// `+info`) is used as a single node, with a warning.
async fn is_cluster(client: &redis::Client, timeouts: Timeouts) -> RedisResult<bool> {
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(timeouts.connect))
        .set_response_timeout(Some(timeouts.response));
    let mut conn = client
        .get_multiplexed_async_connection_with_config(&config)
        .await?;
    let reply: Value = match redis::cmd("INFO")
        .arg("cluster")
        .query_async(&mut conn)
        .await
    {
        Ok(reply) => reply,
        Err(e) if e.is_io_error() || e.is_timeout() || e.is_connection_dropped() => return Err(e),
        Err(e) => {
            tracing::warn!(error = %e, "redis: INFO cluster refused; REDIS_SHARDED uses the node in REDIS_URL only");
            return Ok(false);
        }
    };
    let text = match reply {
        Value::BulkString(b) => String::from_utf8_lossy(&b).into_owned(),
        Value::VerbatimString { text, .. } => text,
        Value::SimpleString(s) => s,
        _ => return Ok(false),
    };
    Ok(text.lines().any(|l| l.trim() == "cluster_enabled:1"))
}

impl Conn {
    /// Sends `commands` and returns one reply per command, in their order. Commands Redis
    /// refuses come back as [`Value::ServerError`]; `Err` means the connection failed.
    pub fn send(
        &self,
        commands: Vec<Command>,
    ) -> impl Future<Output = RedisResult<Vec<Value>>> + 'static {
        let conn = self.clone();
        async move {
            match conn {
                Conn::Node(mut conn) => {
                    let mut pipe = redis::pipe();
                    pipe.ignore_errors();
                    for c in commands {
                        pipe.add_command(c.cmd);
                    }
                    pipe.query_async::<Vec<Value>>(&mut conn).await
                }
                Conn::Cluster(conn) => send_by_slot(conn, commands).await,
            }
        }
    }
}

/// One pipeline per slot, concurrently; replies back in command order.
async fn send_by_slot(conn: ClusterConnection, commands: Vec<Command>) -> RedisResult<Vec<Value>> {
    let total = commands.len();
    let mut groups: HashMap<Slot, (Vec<usize>, redis::Pipeline)> = HashMap::new();
    for (i, c) in commands.into_iter().enumerate() {
        let (indices, pipe) = groups.entry(Slot::for_key(&c.channel)).or_insert_with(|| {
            let mut p = redis::pipe();
            p.ignore_errors();
            (Vec::new(), p)
        });
        indices.push(i);
        pipe.add_command(c.cmd);
    }
    let mut tasks = tokio::task::JoinSet::new();
    for (_, (indices, pipe)) in groups {
        let mut conn = conn.clone();
        tasks.spawn(async move {
            let replies = pipe.query_async::<Vec<Value>>(&mut conn).await;
            (indices, replies)
        });
    }
    let mut out = vec![Value::Nil; total];
    while let Some(joined) = tasks.join_next().await {
        let (indices, replies) = joined
            .map_err(|_| RedisError::from((ErrorKind::Client, "cluster pipeline task failed")))?;
        let replies = replies?;
        for (i, reply) in indices.into_iter().zip(replies) {
            if let Some(slot) = out.get_mut(i) {
                *slot = reply;
            }
        }
    }
    Ok(out)
}

/// Whether a reply says the cluster's slot map changed or is unusable (`MOVED`, `ASK`,
/// `CLUSTERDOWN`, `TRYAGAIN`): the link then connects again and learns the new map.
pub fn is_topology_error(reply: &Value) -> bool {
    matches!(
        reply,
        Value::ServerError(e) if matches!(
            e.kind(),
            Some(ServerErrorKind::Moved | ServerErrorKind::Ask | ServerErrorKind::ClusterDown | ServerErrorKind::TryAgain)
        )
    )
}
