//! `--info-port`: the seed's own info service. Each connection gets the server's description as
//! one line of JSON, with the `--meta` fields also at the top level (where the seed's desks put
//! them), and is closed; nothing is read. The seed's classroom client (connect, one `recv`, parse)
//! works against it unchanged.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::hub::Hub;
use crate::transport::tcp;

/// How long a peer may take to accept the document before it is dropped.
const WRITE_TIMEOUT: Duration = Duration::from_secs(2);

/// Serves the description on `listener` until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    hub: Hub,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    tcp::accept_members(listener, hub, shutdown, tracker, "info", describe).await
}

async fn describe(
    mut stream: TcpStream,
    _addr: SocketAddr,
    hub: Hub,
    _shutdown: CancellationToken,
) -> std::io::Result<()> {
    let mut text = document(&hub);
    text.push('\n');
    let send = async {
        stream.write_all(text.as_bytes()).await?;
        stream.shutdown().await
    };
    match tokio::time::timeout(WRITE_TIMEOUT, send).await {
        Ok(sent) => sent,
        Err(_) => Err(std::io::ErrorKind::TimedOut.into()),
    }
}

/// The description with every `--meta` field also at the top level; where a field has the name of
/// one of the description's own, the `--meta` value wins (it is what the seed's clients read).
pub fn document(hub: &Hub) -> String {
    let config = hub.config();
    let mut doc = match serde_json::to_value(crate::info::info(hub, &config)) {
        Ok(Value::Object(doc)) => doc,
        _ => serde_json::Map::new(),
    };
    for (key, value) in &config.meta {
        doc.insert(key.clone(), value.clone());
    }
    Value::Object(doc).to_string()
}
