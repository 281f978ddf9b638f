//! The echo application: every text or binary message goes back to its sender unchanged.

use super::{App, ConnId, Outbox};
use crate::proto::connection::AppClose;
use crate::proto::frame::Message;

/// Sends each message back as it came; what Autobahn and the load tests run against. A message
/// discarded for its size (`PAYLOAD_LIMIT_POLICY=send`) gets no answer: there is nothing to echo,
/// and echo has no envelope to report it in.
#[derive(Debug, Default)]
pub struct Echo;

impl App for Echo {
    fn on_message(
        &mut self,
        _conn: ConnId,
        msg: Message<'_>,
        out: &mut Outbox<'_>,
    ) -> Result<(), AppClose> {
        out.send(msg.kind, msg.data);
        Ok(())
    }
}
